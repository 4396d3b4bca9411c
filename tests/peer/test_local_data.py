"""A peer's share of real Fashion-MNIST, and the union of all shares (the centralised baseline)."""

from __future__ import annotations

import numpy as np
import torch

from peer.config import config_from_dict
from peer.local_data import load_local_data, share_indices


def _cfg(index: int, union: bool = False, limit: int | None = 40):
    return config_from_dict(
        {
            "data": {
                "dataset": "fashion-mnist",
                "num_peers": 3,
                "peer_index": index,
                "partition": "dirichlet:0.1",
                "train_limit": limit,
                "union": union,
            }
        }
    )


def test_union_is_exactly_every_peers_capped_share():
    # prepare: the three peers' shares, each capped at 40 images
    shares = [load_local_data(_cfg(i), with_eval=False).train for i in range(3)]
    # execute
    union = load_local_data(_cfg(0, union=True), with_eval=False).train
    # assert: the same images in peer order, 3 x 40 of them
    assert len(union.labels) == 120
    assert torch.equal(union.images, torch.cat([s.images for s in shares]))
    assert torch.equal(union.labels, torch.cat([s.labels for s in shares]))


def test_a_cap_picks_the_same_images_as_before_and_no_cap_keeps_the_share():
    # prepare: a partition of 10 labels into 2 parts
    parts = [np.arange(0, 10, 2), np.arange(1, 10, 2)]
    capped = config_from_dict({"data": {"num_peers": 2, "peer_index": 1, "train_limit": 3, "seed": 5}})
    uncapped = config_from_dict({"data": {"num_peers": 2, "peer_index": 1}})
    # execute
    picked = share_indices(parts, capped)
    whole = share_indices(parts, uncapped)
    # assert: a seeded pick of 3 of peer 1's indices, in order; without a cap the share itself
    pick = np.sort(np.random.default_rng(5 + 1 + 1).choice(5, size=3, replace=False))
    assert np.array_equal(picked, parts[1][pick])
    assert np.array_equal(whole, parts[1])
