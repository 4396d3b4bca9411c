"""CHOCO-Gossip state: public copies updated by compressed deltas, with error feedback.

CHOCO-SGD (Koloskova, Stich and Jaggi, ICML 2019) lets peers average with compressed messages
without the compression error piling up. Every peer i keeps, besides its parameters x_i, a *public
copy* x̂_i that its neighbours hold too. Each round it sends only q_i = Q(x_i − x̂_i) (Q: int8 or
top-k, ``protocol/codec.py``), and sender and receivers all add the same decoded q_i to their copy
of x̂_i. What Q dropped stays in x_i − x̂_i and is sent in a later round: that is the error feedback.
The gossip step is then

    x_i <- x_i + γ · Σ_j w_ij (x̂_j − x̂_i)

which, for symmetric mixing weights, leaves the network average of x unchanged whatever Q did
(the sum over i of the correction is 0), and drives every x_i to it for a small enough γ.

A receiver's copy of x̂_j is only right if it applied every q_j since it last had a full copy. Each
q_j carries the version it produces; a replica that is not exactly one version behind (a new
neighbour, one that missed rounds, a restarted peer) must take a full snapshot of x̂_j instead
(:class:`NeedSnapshot`) — it never applies a delta to the wrong base.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from protocol.codec import decode, encode


class NeedSnapshot(Exception):
    """The replica cannot apply this delta (versions do not follow on): it needs a full copy."""


@dataclass(frozen=True)
class Delta:
    """One round's compressed delta of a public copy: applying it to ``version - 1`` gives ``version``."""

    version: int
    payload: bytes


class PublicCopy:
    """The sender's side: x̂_i, advanced once a round by the compressed x_i − x̂_i."""

    def __init__(self, initial: torch.Tensor, codec: str, k: int | None = None):
        self.value = initial.detach().to(torch.float32).clone()
        self.version = 0
        self.codec, self.k = codec, k

    def advance(self, params: torch.Tensor) -> Delta:
        """Compress ``params − x̂``, add the decoded delta to x̂ (as every receiver will) and return it."""
        payload = encode(self.codec, params.to(torch.float32) - self.value, self.k)
        self.value += decode(payload, self.value.numel())
        self.version += 1
        return Delta(self.version, payload)

    def snapshot(self) -> tuple[int, torch.Tensor]:
        """(version, a copy of x̂): what a replica that fell behind starts again from."""
        return self.version, self.value.clone()


class Replica:
    """A receiver's copy of a neighbour's x̂, kept in step by its deltas."""

    def __init__(self, version: int, value: torch.Tensor):
        self.version = version
        self.value = value.detach().to(torch.float32).clone()

    def apply(self, delta: Delta) -> None:
        """Advance by one version; :class:`NeedSnapshot` (nothing changed) when it does not follow on."""
        if delta.version != self.version + 1:
            raise NeedSnapshot(f"replica at version {self.version} got the delta to {delta.version}")
        self.value += decode(delta.payload, self.value.numel())
        self.version = delta.version


def choco_mix(
    params: torch.Tensor, own: torch.Tensor, neighbours: list[tuple[float, torch.Tensor]], gamma: float
) -> torch.Tensor:
    """x + γ Σ_j w_j (x̂_j − x̂_own) over ``neighbours`` = [(w_j, x̂_j)]; a new tensor."""
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    out = params.to(torch.float32).clone()
    for weight, copy in neighbours:
        out.add_(copy - own, alpha=gamma * weight)
    return out
