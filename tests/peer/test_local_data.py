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


def test_the_learning_curve_test_set_is_a_fixed_subset_of_the_test_set():
    # prepare: two peers of one swarm, and a config that turns curve points off
    def cfg(index: int, curve: int):
        return config_from_dict(
            {
                "data": {"dataset": "fashion-mnist", "num_peers": 2, "peer_index": index, "train_limit": 20},
                "eval": {"bank_limit": 50, "curve_test_images": curve, "own_distribution": False},
            }
        )

    # execute
    p0, p1, off = load_local_data(cfg(0, 300)), load_local_data(cfg(1, 300)), load_local_data(cfg(0, 0))
    # assert: 300 of the 10,000 test images, the same on every peer; None when off
    assert len(p0.test.labels) == 10_000 and len(p0.curve_test.labels) == 300
    assert torch.equal(p0.curve_test.images, p1.curve_test.images)
    rows = {bytes(img.numpy()) for img in p0.test.images}
    assert all(bytes(img.numpy()) in rows for img in p0.curve_test.images[:20])
    assert len(set(p0.curve_test.labels.tolist())) == 10 and off.curve_test is None
