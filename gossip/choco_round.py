"""One compressed gossip round at one node: CHOCO-Gossip over the node's pulls (``gossip.choco``).

A node with ``NodeConfig.compression`` set ("int8" or "topk") keeps a :class:`ChocoState`:

* on publish, its public copy x̂_i takes one compressed step towards the parameters x_i; the
  snapshot keeps x_i (for neighbours that gossip plainly), x̂_i and the step (``gossip.snapshot``);
* on pull, it names the codec and the copy and round of each neighbour's x̂_j it holds; the
  neighbour answers with the step (a few bytes per parameter) when that is its base, else with
  x̂_j in full (fp32). A neighbour without codecs answers with its parameters, which then stand
  in for x̂_j for that round (exact: nothing compressed);
* the mix is x_i + γ Σ_j W_ij (x̂_j − x̂_i) over the neighbours that answered — for symmetric W
  the corrections cancel in the network sum, so the average of the x_i is kept whatever the
  compression dropped, and the dropped part is sent in later rounds (error feedback).

A step that does not apply (wrong copy or base, corrupt or non-finite payload) costs that
neighbour its weight for the round and its replica: the next pull asks for the full copy. A
model is never built on a wrong base.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import torch

from gossip.choco import Delta, NeedSnapshot, PublicCopy, Replica, choco_mix
from gossip.hook import MixResult, neighbour_report
from gossip.round_mixer import neighbourhood_embeddings
from gossip.snapshot import Snapshot
from protocol.codec import CodecError, encoded_bytes
from protocol.serde import CODECS

logger = logging.getLogger(__name__)

COMPRESSIONS = ("none", *CODECS)
PullOutcome = Any  # gossip.node.PullOutcome (node imports this module, not the reverse)


class GossipNode(Protocol):
    """What a round needs of ``gossip.node.GossipNode``."""

    config: Any

    def own_snapshot(self, round: int) -> Snapshot: ...

    async def pull(self, peer_id: str, address: str, round: int, **kwargs: Any) -> PullOutcome: ...

    def observe_lateness(self, elapsed_s: float, outcomes: list) -> None: ...

    def take_bytes_out(self) -> int: ...


@dataclass(frozen=True)
class ChocoConfig:
    """``codec``: "int8" or "topk"; ``topk_fraction``: the share of elements a top-k step keeps;
    ``gamma``: the consensus step size γ of CHOCO-Gossip (Koloskova et al. 2019), in (0, 1]."""

    codec: str
    topk_fraction: float = 0.01
    gamma: float = 0.5

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"compression codec must be one of {CODECS}, got {self.codec!r}")
        if not 0.0 < self.topk_fraction <= 1.0:
            raise ValueError(f"topk_fraction must be in (0, 1], got {self.topk_fraction}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"choco gamma must be in (0, 1], got {self.gamma}")

    def k(self, numel: int) -> int | None:
        return max(1, math.ceil(self.topk_fraction * numel)) if self.codec == "topk" else None


class ChocoState:
    """Our public copy and our replicas of the neighbours' public copies."""

    def __init__(self, config: ChocoConfig):
        self.config = config
        self.public: PublicCopy | None = None
        self.replicas: dict[str, Replica] = {}

    def publish(self, snapshot: Snapshot) -> None:
        """Advance our public copy to ``snapshot``'s parameters and attach it (and the step) to it."""
        numel = snapshot.params.numel()
        delta = None
        if self.public is None or self.public.value.numel() != numel:
            self.public = PublicCopy(snapshot.params, self.config.codec, self.config.k(numel), snapshot.round)
        elif snapshot.round > self.public.version:
            delta = self.public.advance(snapshot.params, snapshot.round)
        snapshot.public = self.public.value.clone()
        snapshot.codec, snapshot.copy_id, snapshot.delta = self.config.codec, self.public.copy_id, delta

    def holds(self, peer_id: str) -> tuple[str, int]:
        """(copy id, round) of the replica of ``peer_id`` we hold, ("", -1) for none."""
        replica = self.replicas.get(peer_id)
        return ("", -1) if replica is None else (replica.copy_id, replica.version)

    def delta_bytes(self, numel: int) -> int:
        return encoded_bytes(self.config.codec, numel, self.config.k(numel))

    def receive(self, peer_id: str, outcome: PullOutcome) -> torch.Tensor:
        """x̂_j from a delivered pull: the replica advanced by the step, replaced by a full copy, or
        (a plain neighbour) its parameters. Raises NeedSnapshot / CodecError (replica dropped)."""
        snap = outcome.snapshot
        header = snap.header
        if snap.delta is not None:
            replica = self.replicas.get(peer_id)
            if replica is None:
                raise NeedSnapshot(f"{peer_id} sent a step but we hold no copy of it")
            step = Delta(header.copy_id, header.base_round, header.round, snap.delta.numpy().tobytes())
            try:
                replica.apply(step)
            except (NeedSnapshot, CodecError):
                del self.replicas[peer_id]
                raise
            return replica.value
        params = snap.params.float()
        if not bool(torch.isfinite(params).all()):
            self.replicas.pop(peer_id, None)
            raise CodecError("full copy has non-finite values")
        if not header.copy_id:  # a neighbour without codecs: its parameters, exactly
            self.replicas.pop(peer_id, None)
            return params
        replica = self.replicas[peer_id] = Replica(header.copy_id, header.round, params)
        return replica.value


async def choco_round(
    node: GossipNode,
    state: ChocoState,
    round: int,
    neighbours: Mapping[str, str],
    weights: Mapping[str, float],
) -> MixResult:
    """Pull every neighbour (steps or full copies) and take the CHOCO consensus step."""
    own = node.own_snapshot(round)
    start = time.perf_counter()
    outcomes = await asyncio.gather(*(_pull(node, state, own, p, a, round) for p, a in neighbours.items()))
    pull_seconds = time.perf_counter() - start
    copies, reports = {}, []
    for outcome in outcomes:
        outcome, copy = _accepted(state, outcome, round)
        if copy is not None:
            copies[outcome.peer_id] = copy
        weight = state.config.gamma * weights[outcome.peer_id] if copy is not None else 0.0
        reports.append(neighbour_report(outcome, weight, round))
    params, distance = await asyncio.to_thread(_mix, state.config.gamma, own, copies, weights)
    node.observe_lateness(time.perf_counter() - start, outcomes)
    answered = {o.peer_id: o.snapshot for o in outcomes if o.peer_id in copies}
    embeddings = neighbourhood_embeddings(own.embedding, answered)
    result = MixResult(
        round=round,
        params=params,
        embedding=torch.stack(embeddings).mean(dim=0) if embeddings else None,
        self_weight=1.0 - sum(r.weight for r in reports),
        neighbours=tuple(reports),
        bytes_out=node.take_bytes_out(),
        pull_seconds=pull_seconds,
        mix_seconds=time.perf_counter() - start - pull_seconds,
        neighbour_distance_sq=distance,
        embeddings=embeddings,
    )
    logger.info("%s round %d (%s): %s", node.config.peer_id, round, state.config.codec, result.summary())
    return result


async def _pull(
    node: GossipNode, state: ChocoState, own: Snapshot, peer_id: str, address: str, round: int
) -> PullOutcome:
    have_copy, have_round = state.holds(peer_id)
    numel = own.params.numel()
    return await node.pull(
        peer_id,
        address,
        round,
        expectation={"params_numel": numel, "delta_bytes": state.delta_bytes(numel)},
        request={"codec": state.config.codec, "have_copy": have_copy, "have_round": have_round},
    )


def _accepted(state: ChocoState, outcome: PullOutcome, round: int) -> tuple[PullOutcome, torch.Tensor | None]:
    """The outcome and x̂_j, or the outcome marked failed when its payload did not apply."""
    if outcome.snapshot is None:
        return outcome, None
    try:
        return outcome, state.receive(outcome.peer_id, outcome)
    except (NeedSnapshot, CodecError) as exc:
        logger.warning("round %d: %s's compressed snapshot refused: %s", round, outcome.peer_id, exc)
        return replace(outcome, snapshot=None, error=f"corrupt: {exc}"), None


def _mix(
    gamma: float, own: Snapshot, copies: Mapping[str, torch.Tensor], weights: Mapping[str, float]
) -> tuple[torch.Tensor, float]:
    """(x_i + γ Σ_j W_ij (x̂_j − x̂_i), ||x_i − mean of the x̂_j||²) over the neighbours in ``copies``."""
    mixed = choco_mix(own.params, own.public, [(weights[j], copies[j]) for j in sorted(copies)], gamma)
    if not copies:
        return mixed, 0.0
    mean = torch.stack([copies[j] for j in sorted(copies)]).mean(dim=0)
    return mixed, float((own.params - mean).pow(2).sum())
