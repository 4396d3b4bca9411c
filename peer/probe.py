"""Representation diagnostics on a fixed probe batch: collapse indicator and A-MMD.

Every peer of a swarm embeds the *same* few hundred test images every ``eval.probe_every`` gossip
rounds and logs two numbers (the trainer writes them as a ``probe`` metrics record):

* :func:`collapse_std` — the collapse indicator of SimSiam (Chen & He, CVPR 2021, §4.1 / Fig. 2):
  the per-dimension standard deviation over the batch of the L2-normalised embeddings. SimSiam
  shows that without collapse it stays near 1/√d (what i.i.d. Gaussian vectors give) and that it
  falls to 0 when every image maps to the same point. We report it times √d, so ~1 is healthy and 0
  is complete collapse. Encoder features with a shared non-zero mean (e.g. post-ReLU CNN features)
  sit below 1 even when healthy; compare runs with each other and over time, not with 1.
* :func:`embedding_a_mmd` — the A-MMD of MAR (docs/paper.md §3, Eq. 6; :func:`peer.objectives.mar.a_mmd`)
  between the peer's embeddings and its neighbourhood's embeddings of the same images: the local
  model right *before* a round's mix (after its local steps) against the mixed, neighbourhood-averaged
  model right *after* it — what MAR aligns. It is logged for every objective, MAR on or off. The
  estimator is unbiased, so values of aligned sets scatter around 0 and may be slightly negative.

The embeddings are the frozen features the kNN evaluation uses (``objective.encode`` in eval mode,
no gradients; :mod:`peer.evaluate`), and the probe batch is drawn from the evaluation test set with a
seed every peer shares (:func:`probe_batch`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from peer.evaluate import encode_images
from peer.objectives.mar import a_mmd

PROBE_SEED_OFFSET = 7_368_787  # keeps the probe draw apart from the other seeded subsets of data.seed


@dataclass(frozen=True)
class ProbeBatch:
    """The fixed probe images (uint8 ``[P, C, H, W]``) and their indices into the test set."""

    images: torch.Tensor
    indices: np.ndarray

    @property
    def size(self) -> int:
        return int(self.images.shape[0])


def probe_batch(test: Any, size: int, seed: int) -> ProbeBatch:
    """``size`` images of the test set ``test`` (``images`` uint8 ``[N, C, H, W]``) drawn with ``seed``.

    Every peer builds its test set as the same seeded subset of the global test split
    (:func:`peer.local_data.load_local_data`), so with the shared ``data.seed`` every peer of a swarm
    probes the same images. The whole test set when it has at most ``size`` images.
    """
    if size < 2:
        raise ValueError(f"probe_size must be >= 2 (A-MMD and a std need two embeddings), got {size}")
    n = len(test.images)
    if n < 2:
        raise ValueError(f"the test set has {n} image(s); a probe needs at least 2")
    if n <= size:
        indices = np.arange(n)
    else:
        rng = np.random.default_rng(seed + PROBE_SEED_OFFSET)
        indices = np.sort(rng.choice(n, size=size, replace=False))
    images = torch.as_tensor(test.images)[torch.as_tensor(indices, dtype=torch.long)].clone()
    return ProbeBatch(images=images, indices=indices)


def probe_embeddings(
    objective: nn.Module, images: torch.Tensor, device: str | torch.device, batch_size: int = 512
) -> torch.Tensor:
    """Frozen features ``[P, D]`` (float32, CPU) of uint8 ``images``, as the kNN evaluation takes them:
    ``objective.encode`` in eval mode without gradients; the train/eval mode is restored after."""
    return encode_images(objective, images, batch_size, device)


def collapse_std(z: torch.Tensor) -> float:
    """√d · mean over dimensions of std over the batch of ``z / ‖z‖`` (SimSiam §4.1): ~1 healthy,
    0 collapsed. ``z`` is ``[B, d]`` with B >= 2."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"collapse_std expects [B >= 2, d] embeddings, got {tuple(z.shape)}")
    unit = F.normalize(z.double(), dim=1)
    return float(unit.std(dim=0).mean() * math.sqrt(z.shape[1]))


def embedding_a_mmd(z_local: torch.Tensor, z_neighbourhood: torch.Tensor) -> float:
    """A-MMD (docs/paper.md Eq. 6, :func:`peer.objectives.mar.a_mmd`) between two embedding sets, in
    float32 (measured: 2-3x faster than float64 at 256 x 64..192 on one CPU thread)."""
    return float(a_mmd(z_local.float(), z_neighbourhood.float()))


def probe_record(z_local: torch.Tensor, z_mixed: torch.Tensor | None) -> dict[str, float | None]:
    """The ``probe`` record's measures: collapse std of the local (pre-mix) and mixed embeddings and
    their A-MMD (None without a mix)."""
    return {
        "collapse_std": collapse_std(z_local),
        "collapse_std_mixed": collapse_std(z_mixed) if z_mixed is not None else None,
        "a_mmd": embedding_a_mmd(z_local, z_mixed) if z_mixed is not None else None,
    }
