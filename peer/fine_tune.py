"""End-to-end fine-tuning of an SSL encoder: a CPU-sized version of the paper's evaluation.

Besides kNN and the linear probe on frozen features (:mod:`peer.evaluate`), SSL encoders are judged by
fine-tuning: a linear head on ``objective.encode`` features, head *and* encoder trained together with
cross-entropy on labelled images, then top-1 accuracy on the test set. The paper evaluates only this
way (docs/paper.md §1: MAE's recipe, He et al., CVPR 2022, 50-100 epochs with AdamW, layer decay,
mixup, RandAugment); this is that protocol in miniature, without its regularisers.

The protocol here is deliberately small enough for a CPU (the caller picks the numbers, defaults in
``peer.config.EvalConfig``: 2,000 labelled training images, 3 epochs, lr 1e-3). Measured on the θ̄ of
a tiny 2-peer Fashion-MNIST swarm (timm test_resnet, 4 steps; 1,000 test images), 2 epochs of 1,000
images were too few steps (0.34 accuracy) against 0.68 for 3 epochs of 1,000 and 0.76 for 3 of 2,000:

* data: ``train`` (uint8 images + labels: a seeded labelled subset of the training split), no
  augmentation, images scaled to [0, 1] exactly as the SSL objectives see them;
* model: trained in place (pass a ``copy.deepcopy`` to keep the pre-trained weights); a new head
  ``nn.Linear(D, num_classes)``; the objective in train mode (BatchNorm uses batch statistics);
* optimiser: AdamW (lr ``lr``, weight decay :data:`WEIGHT_DECAY` on every weight), constant lr,
  mini-batches of ``batch_size`` in a seeded order per epoch;
* score: top-1 accuracy of head(encode(x)) on ``test`` with the objective in eval mode.

:func:`fine_tune` returns the accuracy together with the protocol that produced it, so a reader of
``consensus.json`` sees what was measured.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

WEIGHT_DECAY = 0.05  # AdamW weight decay of the fine-tuning protocol (the MAE fine-tuning recipe's value)
OPTIMIZER = "AdamW"


def fine_tune(
    objective: nn.Module,
    train: Any,
    test: Any,
    num_classes: int,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Fine-tune ``objective``'s encoder plus a new linear head on ``train`` end to end, score on ``test``.

    ``objective`` is trained in place (pass a copy to keep the pre-trained weights). Seeded from
    ``seed`` without touching the caller's global random state. Returns ``{"accuracy", "final_loss",
    "images", "epochs", "lr", "batch_size", "optimizer", "weight_decay", "augmentation",
    "test_size", "seconds"}``.
    """
    if epochs < 1 or batch_size < 1 or len(train.labels) == 0:
        raise ValueError(
            f"fine_tune: need epochs >= 1, batch_size >= 1 and images (got {epochs}, "
            f"{batch_size}, {len(train.labels)})"
        )
    started = time.perf_counter()
    objective = objective.to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = _head(objective, train, num_classes, device)
        final_loss = _train(objective, head, train, epochs, lr, batch_size, device, seed)
    accuracy = _accuracy(objective, head, test, device)
    return {
        "accuracy": accuracy,
        "final_loss": final_loss,
        "images": int(len(train.labels)),
        "epochs": int(epochs),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "optimizer": OPTIMIZER,
        "weight_decay": WEIGHT_DECAY,
        "augmentation": "none",
        "test_size": int(len(test.labels)),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _images(dataset: Any, idx: Any, device: str | torch.device) -> torch.Tensor:
    return torch.as_tensor(dataset.images)[idx].to(device).float().div_(255)


@torch.no_grad()
def _head(objective: nn.Module, train: Any, num_classes: int, device: str | torch.device) -> nn.Linear:
    """A fresh linear head sized to the encoder's feature dimension (one forward pass to find it)."""
    was_training = objective.training
    objective.eval()
    try:
        dim = objective.encode(_images(train, slice(0, 2), device)).shape[1]
    finally:
        objective.train(was_training)
    return nn.Linear(dim, num_classes).to(device)


def _train(
    objective: nn.Module,
    head: nn.Linear,
    train: Any,
    epochs: int,
    lr: float,
    batch_size: int,
    device: str | torch.device,
    seed: int,
) -> float:
    """``epochs`` passes of AdamW over encoder + head; returns the mean loss of the last epoch."""
    params = [p for p in objective.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY)
    labels = torch.as_tensor(train.labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    was_training = objective.training
    objective.train()
    try:
        for epoch in range(epochs):
            order, total, batches = torch.randperm(len(labels), generator=gen), 0.0, 0
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                logits = head(objective.encode(_images(train, idx, device)))
                loss = F.cross_entropy(logits, labels[idx].to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, batches = total + loss.item(), batches + 1
            log.info("fine-tune epoch %d/%d: mean loss %.4f", epoch + 1, epochs, total / batches)
    finally:
        objective.train(was_training)
    return total / batches


@torch.no_grad()
def _accuracy(objective: nn.Module, head: nn.Linear, test: Any, device: str | torch.device) -> float:
    """Top-1 accuracy of head(encode(x)) on ``test`` with the objective in eval mode."""
    labels = torch.as_tensor(test.labels, dtype=torch.long)
    was_training = objective.training
    objective.eval()
    correct = 0
    try:
        for start in range(0, len(labels), 512):
            idx = slice(start, start + 512)
            pred = head(objective.encode(_images(test, idx, device))).argmax(1).cpu()
            correct += int((pred == labels[idx]).sum())
    finally:
        objective.train(was_training)
    return correct / max(len(labels), 1)
