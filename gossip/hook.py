"""The contract between a peer's trainer and the gossip layer.

The trainer never sees gRPC, topology or discovery. Every ``period`` steps it hands the gossip layer
one flat, contiguous parameter buffer (and, for MAR, a small embedding payload) and later asks for
the mixed result::

    hook.publish(flat_params, round=r, embedding=z)   # copies once, under a lock; returns at once
    result = hook.mix().result()                     # a concurrent.futures.Future[MixResult]
    if result.failure is None:
        load(result.params)                          # θ_i <- Σ_j W_ij θ_j over those who answered

``publish`` makes round ``r``'s snapshot visible to neighbours (read-only, versioned by round);
``mix`` pulls the neighbours' round-``r`` snapshots (sync mode; newest in async mode), each pull with
a deadline, mixes them, and resolves the future. A neighbour that does not answer in time has its
weight returned to the self-weight; the round still completes. The hook owns the round's deadline:
a round that fails or outlives it resolves too, to a MixResult that holds the local (published)
parameters and says why in ``failure`` — the trainer never handles a timeout.

``standalone`` training passes no hook at all (the single-peer / centralised baseline).
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import Protocol

import torch


@dataclass(frozen=True)
class NeighbourReport:
    """What happened with one neighbour in one round (one entry of the realised W row)."""

    peer_id: str
    answered: bool  # a complete, verified snapshot arrived before the deadline
    weight: float  # realised mixing weight W_ij (0.0 when it did not answer or was rejected)
    round: int | None = None  # round of the snapshot received (None when none arrived)
    staleness: int | None = None  # our round minus theirs (async mode; 0 in sync mode)
    bytes_in: int = 0  # payload bytes received from this neighbour
    seconds: float = 0.0  # wall time of the pull
    error: str | None = None  # why it did not count: "deadline", "refused: ...", "corrupt: ..."
    # the pull's deadline: the fixed one, or this neighbour's adaptive one (gossip.adaptive_deadline)
    deadline_s: float | None = None


def neighbour_report(outcome, weight: float, round: int) -> NeighbourReport:
    """The report of one pull (a ``gossip.node.PullOutcome``) whose realised weight is ``weight``."""
    snap = outcome.snapshot
    their_round = snap.header.round if snap is not None else None
    return NeighbourReport(
        peer_id=outcome.peer_id,
        answered=snap is not None,
        weight=weight,
        round=their_round,
        staleness=None if their_round is None else round - their_round,
        bytes_in=outcome.bytes_in,
        seconds=outcome.seconds,
        error=outcome.error,
        deadline_s=outcome.deadline_s,
    )


@dataclass(frozen=True)
class MixResult:
    """The outcome of one gossip round at one peer."""

    round: int
    params: torch.Tensor  # the mixed flat buffer; a new tensor owned by the caller
    # Uniform mean of the closed neighbourhood's embedding payloads (self + neighbours that answered
    # and published one): the MAR z_global of the paper's Alg. 2. None when nobody published one.
    embedding: torch.Tensor | None
    self_weight: float  # realised W_ii after renormalisation
    neighbours: tuple[NeighbourReport, ...] = field(default_factory=tuple)
    bytes_out: int = 0  # payload bytes served to others since the previous round
    pull_seconds: float = 0.0  # wall time until the last pull finished or hit its deadline
    mix_seconds: float = 0.0  # wall time of the weighted average
    # ||θ_i - mean of the neighbours that answered||^2: the cheap per-round consensus proxy
    # (0.0 when nobody answered).
    neighbour_distance_sq: float = 0.0
    # The closed neighbourhood's embedding payloads themselves (own first, then the neighbours that
    # answered, by id; same shape as own): what `embedding` is the mean of.
    embeddings: tuple[torch.Tensor, ...] = ()
    # Why this round did not mix ("mix timeout", "mix failed: ..."); None for a round that mixed.
    # A failed round's params are the local ones it published, self_weight 1 and no neighbours.
    failure: str | None = None

    @property
    def answered(self) -> int:
        return sum(1 for n in self.neighbours if n.answered)

    @property
    def expected(self) -> int:
        return len(self.neighbours)

    @property
    def bytes_in(self) -> int:
        return sum(n.bytes_in for n in self.neighbours)

    def summary(self) -> str:
        """One log line: the realised W row, who answered, bytes, times, each pull's deadline, losses."""
        row = ", ".join(f"{n.peer_id}={n.weight:.3f}" for n in self.neighbours)
        deadlines = " ".join(f"{n.peer_id}={n.deadline_s:.2f}s" for n in self.neighbours if n.deadline_s)
        lost = "; ".join(f"{n.peer_id}: {n.error}" for n in self.neighbours if not n.answered)
        return (
            f"W row self={self.self_weight:.3f} {row} | {self.answered}/{self.expected} answered"
            f" | in {self.bytes_in} B out {self.bytes_out} B"
            f" | pull {self.pull_seconds:.3f}s mix {self.mix_seconds:.3f}s"
            + (f" | deadlines {deadlines}" if deadlines else "")
            + (f" | lost {lost}" if lost else "")
        )


class GossipHook(Protocol):
    """What the trainer calls; implemented by ``gossip.runner.GossipRunner``."""

    def publish(self, params: torch.Tensor, round: int, embedding: torch.Tensor | None = None) -> None:
        """Make ``params`` (1-D, contiguous) the snapshot served for ``round``; copies it once."""
        ...

    def mix(self) -> concurrent.futures.Future[MixResult]:
        """Start mixing the last published round with the neighbours; always resolves to a MixResult
        (``failure`` set when the round failed or outlived its deadline)."""
        ...
