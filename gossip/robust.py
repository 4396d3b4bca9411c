"""Which neighbour snapshots a peer accepts, and robust aggregation rules over the accepted ones.

A neighbour's snapshot passed every wire check (framing, CRC-32, sizes, swarm, layout, round) in
``protocol.assembler`` — that only proves it arrived intact, not that it is sane. Before a block of a
neighbour's parameters is mixed, ``AcceptancePolicy`` checks it; a neighbour that fails is
*rejected*: logged, and its weight returned to the self-weight (``mixing.renormalise``), exactly as
for a neighbour that did not answer.

* **non-finite**: any NaN/Inf (or values so large that the block's squared norm overflows float32)
  rejects the neighbour before that block is mixed, so a NaN never reaches the result.
* **norm jump**: ``||θ_j|| > max_norm_ratio · ||θ_i||`` is detected as soon as the neighbour's
  verified *prefix* exceeds the bound (the prefix norm only grows), again before mixing that block;
  the lower side (``||θ_j|| < ||θ_i|| / max_norm_ratio``, a zeroed model) needs the whole snapshot
  and is checked once the stream completed, before the result is handed out.
* **distance jump**: ``||θ_j - θ_i|| > max_distance_ratio · ||θ_i||`` (optional), prefix-monotone
  like the upper norm bound.

``trimmed_mean`` is the first robust aggregation rule (coordinate-wise β-trimmed mean, Yin et al.,
"Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", ICML 2018): per
coordinate, sort the closed neighbourhood's values, drop the ``floor(β n)`` smallest and largest,
average the rest. Other rules (median, Krum, ...) plug in beside it in ``AGGREGATIONS``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

AGGREGATIONS = ("weighted", "trimmed_mean")  # "weighted": the mixing row's weighted average (D-PSGD)
DEFAULT_MAX_NORM_RATIO = 10.0  # a neighbour 10x larger (or smaller) than us is broken or hostile


@dataclass(frozen=True)
class RobustConfig:
    """How a node screens and aggregates neighbour snapshots (part of ``NodeConfig``)."""

    aggregation: str = "weighted"  # one of AGGREGATIONS
    trim_fraction: float = 0.2  # trimmed mean: fraction β trimmed from each side per coordinate
    max_norm_ratio: float | None = (
        DEFAULT_MAX_NORM_RATIO  # None: no norm bound (non-finite is always refused)
    )
    max_distance_ratio: float | None = None  # ||θ_j - θ_i|| / ||θ_i|| bound; None: off

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if not 0.0 <= self.trim_fraction < 0.5:
            raise ValueError(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")
        ratio, dist = self.max_norm_ratio, self.max_distance_ratio
        if ratio is not None and not (math.isfinite(ratio) and ratio > 1.0):
            raise ValueError(f"max_norm_ratio must be a finite number > 1 (or None), got {ratio}")
        if dist is not None and not (math.isfinite(dist) and dist > 0.0):
            raise ValueError(f"max_distance_ratio must be a finite number > 0 (or None), got {dist}")


class AcceptancePolicy:
    """Screens each neighbour block by block (prefix statistics), for one round.

    ``own_norm_sq``: ||θ_i||² of our own snapshot (float64 sum, computed once per snapshot).
    ``check_block`` returns None or the reason to reject; ``check_complete`` the whole-snapshot rule.
    """

    def __init__(self, config: RobustConfig, own_norm_sq: float):
        self.config = config
        self.own_norm_sq = own_norm_sq
        # Our own norm is the scale of every bound; an all-zero (or non-finite) model has none.
        scaled = math.isfinite(own_norm_sq) and own_norm_sq > 0.0
        ratio = config.max_norm_ratio if scaled else None
        self._upper_sq = None if ratio is None else ratio * ratio * own_norm_sq
        self._lower_sq = None if ratio is None else own_norm_sq / (ratio * ratio)
        dist = config.max_distance_ratio if scaled else None
        self._dist_sq = None if dist is None else dist * dist * own_norm_sq
        self.norm_sq: dict[str, float] = {}  # prefix ||θ_j[:k]||²
        self.dist_sq: dict[str, float] = {}  # prefix ||θ_j[:k] - θ_i[:k]||²

    def check_block(
        self, peer: str, start: int, own: torch.Tensor, theirs: torch.Tensor, scratch: torch.Tensor
    ) -> str | None:
        """Check ``theirs`` = θ_j[start:start+n] against ``own`` = θ_i[same]; ``scratch``: float32, >= n."""
        reason = self.check_norm(peer, start, theirs.numel(), _norm_sq(theirs, scratch))
        if reason is not None:
            return reason
        if self._dist_sq is not None:
            diff = scratch[: own.numel()]
            if theirs.dtype == torch.float32:
                torch.sub(own, theirs, out=diff)
            else:
                diff.copy_(theirs).neg_().add_(own)
            dist = self.dist_sq[peer] = self.dist_sq.get(peer, 0.0) + float(torch.dot(diff, diff))
            if dist > self._dist_sq:
                return (
                    f"distance jump: ||theirs - ours|| > {math.sqrt(dist):.4g} exceeds "
                    f"{self.config.max_distance_ratio:g} x ||ours|| = {math.sqrt(self.own_norm_sq):.4g}"
                )
        return None

    @property
    def needs_distance(self) -> bool:
        """Whether ``check_block`` needs ||θ_j - θ_i|| per neighbour (the distance bound is on)."""
        return self._dist_sq is not None

    def check_norm(self, peer: str, start: int, count: int, block_sq: float) -> str | None:
        """The norm rules for θ_j[start:start+count], given its ||·||² computed in float32 arithmetic
        (NaN/Inf, or an overflowing square, make it non-finite)."""
        if not math.isfinite(block_sq):
            return f"non-finite values in elements [{start}, {start + count})"
        total = self.norm_sq[peer] = self.norm_sq.get(peer, 0.0) + block_sq
        if self._upper_sq is not None and total > self._upper_sq:
            return (
                f"norm jump: ||theirs|| > {math.sqrt(total):.4g} exceeds {self.config.max_norm_ratio:g} x "
                f"||ours|| = {math.sqrt(self.own_norm_sq):.4g}"
            )
        return None

    def check_complete(self, peer: str) -> str | None:
        """The rule that needs the whole snapshot: the norm must not collapse below ours / ratio."""
        if self._lower_sq is not None and self.norm_sq.get(peer, 0.0) < self._lower_sq:
            return (
                f"norm collapse: ||theirs|| = {math.sqrt(self.norm_sq.get(peer, 0.0)):.4g} is below "
                f"||ours|| / {self.config.max_norm_ratio:g} = {math.sqrt(self._lower_sq):.4g}"
            )
        return None


def _norm_sq(values: torch.Tensor, scratch: torch.Tensor) -> float:
    """||values||² in float32 arithmetic (NaN/Inf propagate; fp16/bf16 are widened in ``scratch``)."""
    if values.dtype != torch.float32:
        values = scratch[: values.numel()].copy_(values)
    return float(torch.dot(values, values))


def norm_sq(params: torch.Tensor) -> float:
    """||params||² of a float32 vector, summed per block in float64 (millions of terms stay exact enough)."""
    total = 0.0
    step = 1 << 20
    for lo in range(0, params.numel(), step):
        block = params[lo : lo + step]
        total += float(torch.dot(block, block))
    return total


def trimmed_mean(
    buffers: Sequence[torch.Tensor], trim_fraction: float, out: torch.Tensor, block: int = 1 << 16
) -> torch.Tensor:
    """Coordinate-wise β-trimmed mean of equally shaped 1-D ``buffers`` into float32 ``out``.

    Drops ``floor(trim_fraction * n)`` values from each end per coordinate (Yin et al., ICML 2018).
    With nothing to trim (small neighbourhoods) it is the plain mean. Works block by block so the
    stacked copy stays ``n x block`` floats.
    """
    n = len(buffers)
    if n == 0:
        raise ValueError("trimmed_mean needs at least one buffer")
    for b in buffers:
        if b.shape != out.shape:
            raise ValueError(f"buffer shape {tuple(b.shape)} differs from out {tuple(out.shape)}")
    k = int(math.floor(trim_fraction * n))
    stack = torch.empty((n, min(block, out.numel())), dtype=torch.float32)
    for lo in range(0, out.numel(), block):
        hi = min(lo + block, out.numel())
        rows = stack[:, : hi - lo]
        for i, b in enumerate(buffers):
            rows[i].copy_(b[lo:hi])
        if k:
            rows = rows.sort(dim=0).values[k : n - k]
        torch.mean(rows, dim=0, out=out[lo:hi])
    return out
