"""Frozen-feature evaluation of an SSL encoder: kNN monitor, linear probe, own-distribution test set.

* :func:`knn_accuracy`: the weighted kNN classifier of InstDisc (Wu et al., CVPR 2018, §3.4) that
  SimSiam (Chen & He, CVPR 2021) uses as its training monitor: cosine similarity to a labelled
  feature bank, the k nearest vote with weight exp(s / T).
* :func:`linear_probe`: multinomial logistic regression on cached, standardised frozen features
  (a few epochs of mini-batch Adam), the standard linear evaluation protocol.
* :func:`own_distribution_indices`: a test subset re-drawn to match one peer's label histogram, so a
  peer on a non-IID share is also scored on the distribution it actually sees.

Features come from ``objective.encode(images)`` with the model in eval mode and no gradients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def extract_features(
    objective: nn.Module, dataset: Any, batch_size: int = 512, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode every image of ``dataset`` (uint8 ``images`` [N,C,H,W], ``labels`` [N]).

    Returns (features float32 [N, D] on CPU, labels int64 [N]). The model's train/eval mode is
    restored afterwards.
    """
    features = encode_images(objective, torch.as_tensor(dataset.images), batch_size, device)
    return features, torch.as_tensor(dataset.labels, dtype=torch.long)


@torch.no_grad()
def encode_images(
    objective: nn.Module, images: torch.Tensor, batch_size: int = 512, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Frozen features (float32 [N, D] on CPU) of uint8 ``images`` [N,C,H,W]: ``objective.encode`` in
    eval mode without gradients, in batches; the model's train/eval mode is restored afterwards."""
    was_training = objective.training
    objective.eval()
    feats = []
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True).float().div_(255)
            feats.append(objective.encode(batch).float().cpu())
    finally:
        objective.train(was_training)
    return torch.cat(feats)


@torch.no_grad()
def knn_accuracy(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    k: int = 200,
    temperature: float = 0.1,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> float:
    """Weighted-vote kNN accuracy with cosine similarity (InstDisc / SimSiam kNN monitor).

    Each test feature takes the k most similar bank features; neighbour j votes for its class with
    weight exp(s_j / temperature). ``k`` is capped at the bank size.
    """
    num_classes = int(num_classes or int(max(train_y.max(), test_y.max())) + 1)
    k = min(k, len(train_f))
    bank = F.normalize(train_f.float(), dim=1)
    queries = F.normalize(test_f.float(), dim=1)
    correct = 0
    for start in range(0, len(queries), chunk):
        sim = queries[start : start + chunk] @ bank.T  # [b, N]
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(len(sim), num_classes)
        votes.scatter_add_(1, train_y[top_idx], weights)
        correct += (votes.argmax(1) == test_y[start : start + chunk]).sum().item()
    return correct / len(queries)


def fit_linear_probe(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    epochs: int = 30,
    lr: float = 0.01,
    batch_size: int = 256,
    weight_decay: float = 1e-4,
    num_classes: int | None = None,
    seed: int = 0,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Train logistic regression on standardised frozen features; returns ``predict(features)``.

    Standardisation uses the training features' mean/std (so the probe's lr does not depend on the
    encoder's feature scale); mini-batch Adam for ``epochs`` passes, seeded.
    """
    num_classes = int(num_classes or int(train_y.max()) + 1)
    mean, std = train_f.mean(0, keepdim=True), train_f.std(0, keepdim=True).clamp_min(1e-6)
    x_train = (train_f - mean) / std
    gen = torch.Generator().manual_seed(seed)
    head = nn.Linear(x_train.shape[1], num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head.reset_parameters()
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=gen)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(head(x_train[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    @torch.no_grad()
    def predict(features: torch.Tensor) -> torch.Tensor:
        return head((features - mean) / std).argmax(1)

    return predict


def linear_probe(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    epochs: int = 30,
    lr: float = 0.01,
    num_classes: int | None = None,
    seed: int = 0,
) -> float:
    """Linear-probe test accuracy (see :func:`fit_linear_probe`)."""
    num_classes = int(num_classes or int(max(train_y.max(), test_y.max())) + 1)
    predict = fit_linear_probe(train_f, train_y, epochs, lr, num_classes=num_classes, seed=seed)
    return (predict(test_f) == test_y).float().mean().item()


def own_distribution_indices(
    test_labels: np.ndarray, train_labels: np.ndarray, num_classes: int, seed: int = 0
) -> np.ndarray:
    """Indices of a test subset whose label histogram matches ``train_labels``' (the peer's share).

    The subset is as large as possible: M = min over present classes of count_c / p_c, then
    floor(p_c * M) test samples of each class c drawn without replacement (seeded).
    """
    test_labels = np.asarray(test_labels)
    p = np.bincount(np.asarray(train_labels), minlength=num_classes) / max(len(train_labels), 1)
    avail = np.bincount(test_labels, minlength=num_classes)
    present = p > 0
    if not present.any():
        return np.arange(0)
    total = min(len(test_labels), float(np.min(avail[present] / p[present])))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.flatnonzero(present):
        pool = np.flatnonzero(test_labels == c)
        n = min(len(pool), int(np.floor(p[c] * total)))
        chosen.append(rng.choice(pool, size=n, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.arange(0)


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """The knobs of :func:`evaluate` (peer.config.EvalConfig carries the same names)."""

    knn_k: int = 20
    knn_temperature: float = 0.1
    linear_epochs: int = 30
    linear_lr: float = 0.01
    batch_size: int = 512

    @classmethod
    def from_config(cls, config: Any) -> EvalSettings:
        """These knobs, read by name from an ``EvalConfig`` (or anything with the same attributes)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


def knn_point(
    objective: nn.Module,
    bank: Any,
    test: Any,
    settings: EvalSettings,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
) -> dict[str, float]:
    """One learning-curve point: kNN accuracy alone (no probe), on ``test`` (a subset); a fraction of
    :func:`evaluate`'s cost, so a run can afford several. Returns {"knn", "test_size"}."""
    train_f, train_y = extract_features(objective, bank, settings.batch_size, device)
    test_f, test_y = extract_features(objective, test, settings.batch_size, device)
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    knn = knn_accuracy(
        train_f, train_y, test_f, test_y, settings.knn_k, settings.knn_temperature, num_classes
    )
    return {"knn": knn, "test_size": len(test_y)}


def evaluate(
    objective: nn.Module,
    bank: Any,
    test: Any,
    own_test_idx: np.ndarray | None,
    settings: EvalSettings,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
) -> dict[str, float]:
    """kNN + linear probe on the global test set and (when given) the own-distribution subset.

    ``bank`` is the labelled set the kNN votes from and the probe trains on; ``test`` the global test
    set; ``own_test_idx`` indexes ``test``. Returns {"knn", "linear", "knn_own", "linear_own"}.
    """
    train_f, train_y = extract_features(objective, bank, settings.batch_size, device)
    test_f, test_y = extract_features(objective, test, settings.batch_size, device)
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1

    knn = settings.knn_k, settings.knn_temperature, num_classes
    predict = fit_linear_probe(
        train_f, train_y, settings.linear_epochs, settings.linear_lr, num_classes=num_classes
    )
    result: dict[str, float] = {
        "knn": knn_accuracy(train_f, train_y, test_f, test_y, *knn),
        "linear": (predict(test_f) == test_y).float().mean().item(),
    }
    if own_test_idx is not None and len(own_test_idx):
        idx = torch.as_tensor(own_test_idx, dtype=torch.long)
        result["knn_own"] = knn_accuracy(train_f, train_y, test_f[idx], test_y[idx], *knn)
        result["linear_own"] = (predict(test_f[idx]) == test_y[idx]).float().mean().item()
        result["own_test_size"] = int(len(idx))
    return result
