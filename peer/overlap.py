"""A gossip round in flight: what the trainer keeps while it trains on and the mix is under way.

With ``gossip.overlap: true`` a round does not stop training. The trainer publishes θ_p (its
parameters at the round's step), starts the round's pulls and mix (``hook.mix()``, a future), and
keeps taking optimizer steps. When the mix θ_mix lands it loads

    θ ← θ_mix + (θ_now − θ_p)

the neighbourhood's average of the published models plus the local progress made while the round
was in flight (the delayed averaging of overlapped decentralised training: Overlap-SGP in Assran
et al., "Stochastic Gradient Push for Distributed Deep Learning", ICML 2019; Wang, Liang and Joshi,
"Overlap Local-SGD", ICASSP 2020). At most one round is in flight: the next round's publish first
waits for the previous mix (bounded by the hook's deadline), so a snapshot is never overwritten
while neighbours may still pull it, and a slow neighbour costs at most one round of staleness
instead of a stall.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

import torch

from gossip.hook import MixResult


@dataclass
class RoundInFlight:
    """One published round whose mix has not been loaded yet."""

    round: int
    future: concurrent.futures.Future[MixResult]
    published: torch.Tensor  # θ_p: the flat parameters published for the round (not modified until landed)
    step: int  # the optimizer step at which the round was published
    compute_seconds: float  # training time since the previous round, up to the publish
    blocked_seconds: float  # time training was blocked so far (publishing)
    z_local: torch.Tensor | None = None  # the probe batch's embedding under θ_p (probe rounds only)
    probe_seconds: float = 0.0  # what that embedding cost

    def done(self) -> bool:
        return self.future.done()


def with_local_progress(mixed: torch.Tensor, published: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """θ_mix + (θ_now − θ_p): the mix of the published models, moved by the steps taken since.

    A new tensor; none of the inputs is modified (``published`` may be the trainer's reused buffer)."""
    if not mixed.shape == published.shape == current.shape:
        raise ValueError(
            f"flat buffers differ in shape: mixed {tuple(mixed.shape)}, published "
            f"{tuple(published.shape)}, current {tuple(current.shape)}"
        )
    return torch.sub(current, published).add_(mixed)
