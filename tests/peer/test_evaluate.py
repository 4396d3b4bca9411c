"""kNN monitor, linear probe, own-distribution subset, feature extraction."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch import nn

from peer.evaluate import extract_features, knn_accuracy, linear_probe, own_distribution_indices


def _clusters(n_per_class: int, num_classes: int, dim: int, noise: float, seed: int):
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = centres[y] + noise * torch.randn(len(y), dim, generator=gen)
    return x, y


def test_knn_separable_set_well_above_chance():
    # prepare: 10 Gaussian clusters
    train_x, train_y = _clusters(50, 10, 16, 0.5, seed=0)
    test_x, test_y = _clusters(20, 10, 16, 0.5, seed=1)
    # execute
    acc = knn_accuracy(train_x, train_y, test_x, test_y, k=20, temperature=0.1)
    shuffled = knn_accuracy(train_x, train_y[torch.randperm(len(train_y))], test_x, test_y, k=20)
    # assert: chance is 0.1; shuffled labels fall back near it
    assert acc > 0.9
    assert shuffled < 0.35


def test_knn_caps_k_at_bank_size():
    # prepare
    train_x, train_y = _clusters(2, 3, 4, 0.1, seed=0)
    # execute / assert (k=200 > 6 bank entries)
    assert knn_accuracy(train_x, train_y, train_x, train_y, k=200) >= 0.5


def test_linear_probe_separates_linear_classes():
    # prepare
    train_x, train_y = _clusters(40, 5, 8, 1.0, seed=0)
    test_x, test_y = _clusters(20, 5, 8, 1.0, seed=1)
    # execute
    acc = linear_probe(train_x, train_y, test_x, test_y, epochs=20, lr=0.05)
    # assert
    assert acc > 0.9


def test_own_distribution_matches_peer_histogram():
    # prepare: balanced test set; a peer with classes 0 and 1 at 3:1
    test_labels = np.repeat(np.arange(4), 100)
    train_labels = np.array([0] * 300 + [1] * 100)
    # execute
    idx = own_distribution_indices(test_labels, train_labels, num_classes=4, seed=0)
    again = own_distribution_indices(test_labels, train_labels, num_classes=4, seed=0)
    # assert
    counts = np.bincount(test_labels[idx], minlength=4)
    assert counts.tolist() == [100, 33, 0, 0]
    assert np.array_equal(idx, again) and len(set(idx.tolist())) == len(idx)


def test_extract_features_batches_and_restores_mode():
    # prepare
    class Enc(nn.Module):
        def encode(self, x):
            return x.flatten(1)[:, :3] * 2

    enc = Enc().train()
    data = SimpleNamespace(
        images=torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8), labels=torch.arange(10)
    )
    # execute
    feats, labels = extract_features(enc, data, batch_size=3)
    # assert
    assert feats.shape == (10, 3) and enc.training
    assert torch.allclose(feats, data.images.flatten(1)[:, :3].float() / 255 * 2)
    assert torch.equal(labels, torch.arange(10))
