"""One peer's data: its partition share of the training split plus the evaluation sets.

    data = load_local_data(cfg)          # LocalData(train=..., bank=..., test=..., ...)

The share is a pure function of (dataset, data.num_peers, data.partition, data.seed, data.peer_index),
so every peer of a swarm computes the same disjoint partition without talking to the others. The
evaluation sets (kNN bank, global test set, own-distribution test indices) are seeded subsets too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from peer.config import Config
from peer.data import load_dataset
from peer.evaluate import own_distribution_indices
from peer.partition import parse_partition, partition, partition_report


@dataclass(kw_only=True)
class LocalData:
    """The peer's training share plus the evaluation sets."""

    train: Any  # ImageDataset: this peer's share (after partition and train_limit)
    bank: Any | None  # labelled global training subset for kNN / probe (None: no evaluation)
    test: Any | None  # global test subset
    own_test_idx: np.ndarray | None  # indices into test matching this peer's label histogram
    curve_test: Any | None = None  # test subset of the learning-curve points (None: full evaluations)
    num_classes: int
    report: dict | None = None  # partition report (when the data was partitioned here)


def _limit(dataset: Any, limit: int | None, seed: int) -> Any:
    """A seeded random subset of at most ``limit`` samples (the dataset itself when it fits)."""
    if limit is None or len(dataset.labels) <= limit:
        return dataset
    return dataset.subset(_limited(np.arange(len(dataset.labels)), limit, seed))


def _limited(indices: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """``indices`` cut to a seeded random subset of ``limit`` (in their order)."""
    if limit is None or len(indices) <= limit:
        return indices
    return indices[np.sort(np.random.default_rng(seed).choice(len(indices), size=limit, replace=False))]


def share_indices(parts: list[np.ndarray], cfg: Config) -> np.ndarray:
    """The training-split indices this config trains on: its peer's share, capped by
    ``data.train_limit``, or with ``data.union`` every peer's capped share (the centralised
    baseline trains on exactly the images of the whole swarm)."""
    d = cfg.data
    peers = range(d.num_peers) if d.union else [d.peer_index]
    return np.concatenate([_limited(np.asarray(parts[i]), d.train_limit, d.seed + 1 + i) for i in peers])


def load_local_data(cfg: Config, with_eval: bool = True) -> LocalData:
    """Load the dataset, take this peer's partition share and build the evaluation sets."""
    d = cfg.data
    full = load_dataset(d.dataset, root=d.root, split="train", image_size=d.image_size)
    labels = np.asarray(full.labels)
    spec = parse_partition(d.partition)
    parts = partition(labels, d.num_peers, spec, d.seed)
    report = partition_report(
        labels, parts, full.num_classes, getattr(full, "classes", None), spec=spec, seed=d.seed
    )
    train = full.subset(share_indices(parts, cfg))
    if not with_eval:
        return LocalData(
            train=train, bank=None, test=None, own_test_idx=None, num_classes=full.num_classes, report=report
        )
    bank = _limit(full, cfg.eval.bank_limit, d.seed + 7919)
    test = _limit(
        load_dataset(d.dataset, root=d.root, split="test", image_size=d.image_size),
        d.test_limit,
        d.seed + 104729,
    )
    curve = (
        _limit(test, cfg.eval.curve_test_images, d.seed + 15485863) if cfg.eval.curve_test_images else None
    )
    own = None
    if cfg.eval.own_distribution:
        own = own_distribution_indices(
            np.asarray(test.labels), np.asarray(train.labels), full.num_classes, seed=d.seed + d.peer_index
        )
    return LocalData(
        train=train,
        bank=bank,
        test=test,
        own_test_idx=own,
        num_classes=full.num_classes,
        report=report,
        curve_test=curve,
    )
