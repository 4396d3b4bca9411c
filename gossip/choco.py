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

A receiver's copy of x̂_j is only right if it applied every q_j since it last had a full copy. A
public copy has an id (new with every process: a restarted peer starts a new copy) and a version (the
round it was last advanced for); each delta names the copy and the version it applies to. A replica
that holds another copy or another version (a new neighbour, one that missed rounds, a restarted
peer on either side) takes the full copy instead (:class:`NeedSnapshot`): a delta is never applied
to the wrong base.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import torch

from protocol.codec import CodecError, decode, encode


class NeedSnapshot(Exception):
    """The replica cannot apply this delta (another copy, or versions do not follow on)."""


@dataclass(frozen=True)
class Delta:
    """One compressed step of public copy ``copy_id``: applied to version ``base`` it gives ``version``."""

    copy_id: str
    base: int
    version: int
    payload: bytes


class PublicCopy:
    """The sender's side: x̂_i, advanced once a round by the compressed x_i − x̂_i.

    It starts equal to the parameters it is created with (receivers take it in full first), at
    version ``round``."""

    def __init__(self, initial: torch.Tensor, codec: str, k: int | None = None, round: int = 0):
        self.value = initial.detach().to(torch.float32).clone()
        self.version = round
        self.codec, self.k = codec, k
        self.copy_id = secrets.token_hex(8)

    def advance(self, params: torch.Tensor, round: int | None = None) -> Delta:
        """Compress ``params − x̂``, add the decoded delta to x̂ (as every receiver will) and return
        it; the new version is ``round`` (default: the next one)."""
        version = self.version + 1 if round is None else round
        if version <= self.version:
            raise ValueError(f"public copy at version {self.version} cannot advance to {version}")
        payload = encode(self.codec, params.to(torch.float32) - self.value, self.k)
        self.value += decode(payload, self.value.numel())
        delta = Delta(self.copy_id, self.version, version, payload)
        self.version = version
        return delta

    def snapshot(self) -> tuple[str, int, torch.Tensor]:
        """(copy id, version, a copy of x̂): what a replica that fell behind starts again from."""
        return self.copy_id, self.version, self.value.clone()


class Replica:
    """A receiver's copy of a neighbour's x̂, kept in step by its deltas."""

    def __init__(self, copy_id: str, version: int, value: torch.Tensor):
        self.copy_id = copy_id
        self.version = version
        self.value = value.detach().to(torch.float32).clone()

    def apply(self, delta: Delta) -> None:
        """Advance to ``delta.version``. :class:`NeedSnapshot` when it is not our copy and version,
        :class:`~protocol.codec.CodecError` when the payload is corrupt or not finite; either way
        nothing changed."""
        if delta.copy_id != self.copy_id or delta.base != self.version:
            raise NeedSnapshot(
                f"replica of copy {self.copy_id} at version {self.version} got a delta of copy "
                f"{delta.copy_id} from version {delta.base}"
            )
        step = decode(delta.payload, self.value.numel())
        if not bool(torch.isfinite(step).all()):
            raise CodecError("delta has non-finite values")
        self.value += step
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
