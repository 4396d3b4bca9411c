"""GossipNode: the async core of one peer's gossip — serve our snapshot, pull and mix neighbours'.

    node = await GossipNode.create(NodeConfig(swarm_id="s", peer_id="a", layout_fingerprint=fp))
    node.publish(flat_params, round=r)                     # one copy into an immutable snapshot
    result = await node.mix(r, {"b": "127.0.0.1:5001"}, self_weight=0.5, weights={"b": 0.5})
    await node.close()

``mix`` pulls every neighbour concurrently, each pull bounded by ``pull_deadline_s`` (or, with
``adaptive_deadline``, by that neighbour's own deadline <= it: ``gossip.adaptive_deadline``); whoever did
not deliver a complete, verified snapshot in time loses its weight to the self-weight
(``mixing.renormalise``), and the average is written into a new buffer, so the result is either
fully mixed or (nobody answered) our own parameters — never half-applied.

Everything here runs on one asyncio event loop (``gossip.runner`` puts it on a background thread).
Where the time goes, and why the code is shaped so (measured on 2 shared cores, 44.6 MiB fp32):

* publish: one copy into the snapshot; the wire frames (per-chunk CRC-32 + protobuf framing) are
  built once in a worker thread right after, and every pull serves the same ``bytes`` (no copy);
* receive: each 1 MiB chunk is CRC-32C-checked (~11 GB/s here) and copied into a per-neighbour
  buffer reused across rounds; the verified prefix is mixed at once (``RoundMixer``), so mixing
  overlaps the transfer instead of following it; with equal neighbour weights screening, mix and
  neighbour distance are one pass of a compiled kernel (``gossip.fused_mix``: 26 -> 16 ms per
  44.6 MiB pull, measured);
* a fresh 44.6 MiB result buffer costs ~11k page faults (measured 40-50 ms of CPU): results are
  written into a buffer pre-faulted at publish time, or into one the caller ``recycle``d.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import grpc
import torch

from gossip import _grpc, robust
from gossip.adaptive_deadline import PullDeadlines
from gossip.choco_round import ChocoState, choco_round
from gossip.client import PullFailed, call_hello, call_pull, open_channel
from gossip.faults import FaultInterceptor
from gossip.hook import MixResult, neighbour_report
from gossip.node_config import NodeConfig
from gossip.round_budget import RoundBudget
from gossip.round_mixer import RoundMixer, neighbourhood_embeddings
from gossip.security import SwarmAuth
from gossip.service import GossipService
from gossip.snapshot import Identity, Snapshot, SnapshotStore
from protocol.assembler import Allocator, Expectation, ReceivedSnapshot, SnapshotAssembler
from protocol.frames import (
    wire_dtype,
)
from protocol.records import PeerRecord
from protocol.serde import Hello, PullRequest

logger = logging.getLogger(__name__)

_MAX_EMBEDDING_BYTES = 64 << 20  # a MAR embedding payload is [batch, dim] floats: far below this
_WILDCARD_HOSTS = {"0.0.0.0", "[::]", "::", ""}


@dataclass(frozen=True)
class PullOutcome:
    """The result of pulling one neighbour: a verified snapshot, or the reason there is none."""

    peer_id: str
    snapshot: ReceivedSnapshot | None
    error: str | None
    seconds: float
    bytes_in: int = 0
    deadline_s: float | None = None  # the deadline this pull had


class BindError(RuntimeError):
    """The gossip server could not bind its listen address."""


class GossipNode:
    """Serves this peer's snapshots and mixes with neighbours. Build with ``await GossipNode.create``."""

    def __init__(self, config: NodeConfig, server: grpc.aio.Server, service: GossipService, address: str):
        self.config = config
        self._auth = service.auth  # makes our tokens and checks servers' proofs (None: no swarm secret)
        self._server = server
        self._service = service
        self._store = service.store
        self.address = address  # host:port actually bound (or advertised)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._addresses: dict[str, str] = {}  # peer id -> the address we last pulled it at
        self._closing: set[asyncio.Task] = set()  # channels to addresses a peer left, closing
        self._receive_buffers: dict[str, torch.Tensor] = {}  # reused across rounds by mix()
        self.deadlines = PullDeadlines(config.pull_deadline_s, config.adaptive_deadline)
        self.budget = RoundBudget()  # the share of a deadline the pulls get (learns the host's lateness)
        self._mix_lock = asyncio.Lock()
        self._encoding: asyncio.Future | None = None  # the latest snapshot's frame building
        self._spare: asyncio.Future | None = None  # next round's output buffer, pre-faulted off the hot path
        self._recycled: torch.Tensor | None = None  # a result buffer the caller handed back
        self._choco = ChocoState(config.choco) if config.choco is not None else None
        self._closed = False

    @classmethod
    async def create(cls, config: NodeConfig) -> GossipNode:
        """Bind the server (raises ``BindError`` if the address is taken) and start serving."""
        interceptors = (
            [FaultInterceptor(config.fault_control, config.peer_id)] if config.fault_control else []
        )
        server = grpc.aio.server(options=_grpc.SERVER_OPTIONS, interceptors=interceptors)
        try:
            if config.tls is None:
                port = server.add_insecure_port(config.listen)
            else:
                port = server.add_secure_port(config.listen, config.tls.server_credentials())
        except RuntimeError as exc:
            raise BindError(f"cannot bind gossip server to {config.listen!r}: {exc}") from None
        if port == 0:
            raise BindError(f"cannot bind gossip server to {config.listen!r}")
        address = config.advertise_address or _bound_address(config.listen, port)
        identity = Identity(
            swarm_id=config.swarm_id,
            peer_id=config.peer_id,
            layout_fingerprint=config.layout_fingerprint,
            address=address,
        )
        if config.choco is not None:  # advertised in Hello and the DHT record
            identity = replace(identity, capabilities=(*identity.capabilities, f"codec:{config.compression}"))
        auth = None if config.swarm_secret is None else SwarmAuth(config.swarm_secret, config.swarm_id)
        service = GossipService(identity, SnapshotStore(), config.chunk_bytes, auth=auth)
        server.add_generic_rpc_handlers((service.handler(),))
        await server.start()
        logger.info(
            "gossip node %s serving on %s (%s mode, wire %s, %s)",
            config.peer_id,
            address,
            config.mode,
            config.wire_dtype,
            "+".join(["mutual TLS"] * bool(config.tls) + ["swarm secret"] * bool(auth)) or "insecure",
        )
        return cls(config, server, service, address)

    # ---- serving ----------------------------------------------------------------------------

    @property
    def capabilities(self) -> tuple[str, ...]:
        """What we announce (Hello, DHT record): wire dtypes, the MAR payload, our codec if any."""
        return self._service.identity.capabilities

    @property
    def round(self) -> int:
        """The latest published round (-1 before the first publish)."""
        return self._store.latest_round

    def publish(self, params: torch.Tensor, round: int, embedding: torch.Tensor | None = None) -> None:
        """Copy ``params`` once into the immutable snapshot served for ``round`` (call on the loop)."""
        self.install(Snapshot.capture(params, round, embedding))

    def install(self, snapshot: Snapshot) -> None:
        """Serve an already captured snapshot (the runner captures it on the trainer's thread)."""
        if self._closed:
            raise RuntimeError("node is closed")
        if self._choco is not None:
            self._choco.publish(snapshot)  # before anyone can pull it
        self._store.put(snapshot)
        if self._spare is None and self._recycled is None:
            self._prepare_spare(snapshot.params.numel())
        # Build the wire frames (CRCs included) now, off the loop, in the dtype our swarm pulls in;
        # the first pull awaits the same work instead of redoing it.
        self._encoding = asyncio.get_running_loop().run_in_executor(
            None,
            _prepare_snapshot,
            snapshot,
            self._service.identity,
            wire_dtype(self.config.wire_dtype),
            self.config.chunk_bytes,
        )

    async def ready(self) -> None:
        """Wait until the latest published snapshot's wire frames (and the spare output buffer) are
        built; pulls are served either way, this only lets callers time publish apart."""
        for pending in (self._encoding, self._spare):
            if pending is not None:
                await pending

    # ---- pulling and mixing -----------------------------------------------------------------

    @property
    def channel_addresses(self) -> tuple[str, ...]:
        """The addresses we hold an open channel to."""
        return tuple(self._channels)

    def _channel(self, address: str, peer_id: str | None = None) -> grpc.aio.Channel:
        """One cached channel (one HTTP/2 connection) per neighbour address, reused across rounds.

        When ``peer_id`` was last pulled at another address (it restarted on a new port, or moved),
        the channel to its old address is closed, unless another peer was pulled there since: under
        churn a long-running peer would otherwise keep a channel to every address its neighbours
        ever had."""
        if peer_id is not None:
            old = self._addresses.get(peer_id)
            self._addresses[peer_id] = address
            if old is not None and old != address and old not in self._addresses.values():
                self._close_channel(old)
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = open_channel(address, self.config.tls)
        return channel

    def _close_channel(self, address: str) -> None:
        channel = self._channels.pop(address, None)
        if channel is not None:
            task = asyncio.get_running_loop().create_task(channel.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _pull_request(self, round: int) -> PullRequest:
        cfg = self.config
        return PullRequest(
            swarm_id=cfg.swarm_id,
            peer_id=cfg.peer_id,
            round=round,
            newest=cfg.mode == "async",
            layout_fingerprint=cfg.layout_fingerprint,
            wire_dtype=wire_dtype(cfg.wire_dtype),
            max_payload_bytes=cfg.max_payload_bytes,
        )

    def _expectation(self, peer_id: str, round: int, params_numel: int | None = None) -> Expectation:
        """What a pull must deliver. When mixing, ``params_numel`` (ours) also bounds the size exactly,
        so a hostile header cannot make us allocate more than our own model plus an embedding."""
        cfg = self.config
        limit = cfg.max_payload_bytes
        if params_numel is not None:
            limit = min(limit, params_numel * 4 + _MAX_EMBEDDING_BYTES)
        return Expectation(
            swarm_id=cfg.swarm_id,
            layout_fingerprint=cfg.layout_fingerprint,
            max_payload_bytes=limit,
            round=None if cfg.mode == "async" else round,
            peer_id=peer_id,
            params_numel=params_numel,
        )

    async def pull(
        self,
        peer_id: str,
        address: str,
        round: int,
        assembler: SnapshotAssembler | None = None,
        *,
        expectation: Mapping[str, Any] | None = None,
        request: Mapping[str, Any] | None = None,
    ) -> PullOutcome:
        """Pull ``peer_id``'s snapshot for ``round`` (sync) or its newest (async) within the deadline.

        ``expectation`` / ``request``: fields that replace our defaults in the ``Expectation`` (when no
        ``assembler`` is given) and the ``PullRequest`` (compressed gossip names its codec and copy).
        Never raises for remote trouble: the outcome carries the verified snapshot or the reason.
        """
        assembler = assembler or SnapshotAssembler(
            replace(self._expectation(peer_id, round), **(expectation or {}))
        )
        deadline = self.deadlines.deadline(peer_id)  # fixed, or this neighbour's (gossip.adaptive_deadline)
        channel = self._channel(address, peer_id)
        request = replace(self._pull_request(round), **(request or {}))
        start = time.perf_counter()
        try:
            snapshot, nbytes = await call_pull(
                channel, request, assembler, self.budget.timeout(deadline), self._auth
            )
        except PullFailed as exc:
            seconds = time.perf_counter() - start
            self.deadlines.observe(peer_id, seconds, exc.kind, deadline)
            return PullOutcome(peer_id, None, str(exc), seconds, assembler.wire_bytes, deadline)
        seconds = time.perf_counter() - start
        self.deadlines.observe(peer_id, seconds, None, deadline)
        return PullOutcome(peer_id, snapshot, None, seconds, nbytes, deadline)

    async def hello(self, address: str) -> Hello:
        """Exchange identities with the peer at ``address``; raises ``PullFailed`` on RPC failure."""
        cfg = self.config
        record = PeerRecord(
            peer_id=cfg.peer_id,
            address=self.address,
            round=self.round,
            layout_fingerprint=cfg.layout_fingerprint,
            capabilities=self.capabilities,
        )
        return await call_hello(
            self._channel(address), Hello(cfg.swarm_id, record), cfg.hello_deadline_s, self._auth
        )

    def _reuse_buffer(self, peer_id: str) -> Allocator:
        """Receive into last round's buffer for this neighbour when the size matches (no page faults)."""

        def allocate(nbytes: int) -> torch.Tensor:
            buffer = self._receive_buffers.get(peer_id)
            if buffer is None or buffer.numel() != nbytes:
                buffer = self._receive_buffers[peer_id] = torch.empty(nbytes, dtype=torch.uint8)
            return buffer

        return allocate

    async def mix(
        self, round: int, neighbours: Mapping[str, str], self_weight: float, weights: Mapping[str, float]
    ) -> MixResult:
        """Pull every neighbour concurrently and mix: θ ← W_ii θ + Σ_j W_ij θ_j over those who answered.

        ``neighbours``: {peer id: address}; ``weights``: {peer id: W_ij} for the same ids. Weights of
        neighbours that did not answer return to the self-weight. Our own parameters are the snapshot
        published for ``round`` (sync) or the newest one (async). Mixing overlaps the transfers
        (``RoundMixer``); the result is a new buffer, complete before anyone sees it.
        """
        if set(neighbours) != set(weights):
            raise ValueError(
                f"neighbours {sorted(neighbours)} and weights {sorted(weights)} name different peers"
            )
        if self._choco is not None:  # CHOCO: x + γ Σ W_ij (x̂_j − x̂_i); the self-weight is implied
            async with self._mix_lock:
                return await choco_round(self, self._choco, round, neighbours, weights)
        async with self._mix_lock:
            own = self.own_snapshot(round)
            mixer = await self._new_mixer(own, self_weight, weights)
            start = time.perf_counter()
            outcomes = await asyncio.gather(
                *(self._pull_into(mixer, p, a, round) for p, a in neighbours.items())
            )
            pull_seconds = time.perf_counter() - start
            params, self_w, kept, distance = await _finish(mixer)
            outcomes = [self._screened(o, mixer.rejected, round) for o in outcomes]
            answered = {o.peer_id: o.snapshot for o in outcomes if o.snapshot is not None}
            embeddings = neighbourhood_embeddings(own.embedding, answered)
            embedding = torch.stack(embeddings).mean(dim=0) if embeddings else None
            mix_seconds = time.perf_counter() - start - pull_seconds + mixer.seconds
            self.observe_lateness(time.perf_counter() - start, outcomes)
        reports = tuple(neighbour_report(o, kept.get(o.peer_id, 0.0), round) for o in outcomes)
        result = MixResult(
            round=round,
            params=params,
            embedding=embedding,
            self_weight=self_w,
            neighbours=reports,
            bytes_out=self.take_bytes_out(),
            pull_seconds=pull_seconds,
            mix_seconds=mix_seconds,
            neighbour_distance_sq=distance,
            embeddings=embeddings,
        )
        logger.info("%s round %d: %s", self.config.peer_id, round, result.summary())
        return result

    def take_bytes_out(self) -> int:
        """Payload bytes served to others since the last call."""
        return self._store.take_bytes_out()

    def observe_lateness(self, elapsed_s: float, outcomes: list[PullOutcome]) -> None:
        """Tell the round budget how long the pulls and the mix took (the next margin may grow)."""
        deadlines = [o.deadline_s for o in outcomes if o.deadline_s is not None]
        lateness = self.budget.observe(elapsed_s, max(deadlines)) if deadlines else 0.0
        if lateness > 0:
            logger.info("%s: round ran %.2f s past its pulls' timeout", self.config.peer_id, lateness)

    def own_snapshot(self, round: int) -> Snapshot:
        """The snapshot we mix from: exactly ``round`` (sync) or the newest one (async)."""
        own = self._store.get(round) if self.config.mode == "sync" else self._store.latest
        if own is None:
            raise ValueError(f"round {round} has not been published by this node (at {self.round})")
        return own

    async def _new_mixer(self, own: Snapshot, self_weight: float, weights: Mapping[str, float]) -> RoundMixer:
        """A RoundMixer over ``own`` with our acceptance rules, mixing into a spare buffer if one is ready."""
        rules = self.config.robust
        needs_norm = rules.max_norm_ratio is not None or rules.max_distance_ratio is not None
        policy = robust.AcceptancePolicy(rules, own.norm_sq() if needs_norm else 0.0)
        trim = rules.trim_fraction if rules.aggregation == "trimmed_mean" else None
        return RoundMixer(
            own.params,
            self_weight,
            weights,
            out=await self._take_spare(own.params.numel()),
            policy=policy,
            trim_fraction=trim,
        )

    def recycle(self, params: torch.Tensor) -> None:
        """Hand back a ``MixResult.params`` the caller no longer uses: a later round mixes into it.

        Optional. Without it every round's result is a fresh buffer (pre-faulted at publish time,
        see ``_prepare_spare``); with it the steady state allocates nothing. The caller must not
        touch ``params`` afterwards.
        """
        if params.dtype == torch.float32 and params.dim() == 1 and params.is_contiguous():
            self._recycled = params

    def _prepare_spare(self, numel: int) -> None:
        """Allocate and touch the next round's output buffer in a worker thread, at publish time.

        A fresh 44.6 MiB buffer costs ~11k page faults on first write (tens of ms here); paying them
        beside the frame building keeps them out of the transfer. Each result still gets its own
        buffer, owned by the caller.
        """
        self._spare = asyncio.get_running_loop().run_in_executor(None, _touched_buffer, numel)

    async def _take_spare(self, numel: int) -> torch.Tensor | None:
        """The buffer this round mixes into: a recycled one, else the pre-faulted spare, else None."""
        recycled, self._recycled = self._recycled, None
        if recycled is not None and recycled.numel() == numel:
            return recycled
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        buffer = await spare
        return buffer if buffer.numel() == numel else None

    async def _pull_into(self, mixer: RoundMixer, peer_id: str, address: str, round: int) -> PullOutcome:
        """Pull one neighbour, feeding the mixer as verified chunks arrive; drop it on failure."""
        assembler = SnapshotAssembler(
            self._expectation(peer_id, round, mixer.own.numel()),
            allocate=self._reuse_buffer(peer_id),
            on_header=lambda header, views: mixer.attach(peer_id, views["params"]),
            on_progress=lambda received: mixer.progress(peer_id, received),
        )
        outcome = await self.pull(peer_id, address, round, assembler)
        if outcome.snapshot is None:
            mixer.drop(peer_id)
        return outcome

    def _screened(self, outcome: PullOutcome, rejected: Mapping[str, str], round: int) -> PullOutcome:
        """A delivered snapshot the acceptance rules refused counts as not answered (logged)."""
        reason = rejected.get(outcome.peer_id)
        if reason is None or outcome.snapshot is None:
            return outcome
        logger.warning(
            "%s round %d: rejected %s's snapshot: %s", self.config.peer_id, round, outcome.peer_id, reason
        )
        return replace(outcome, snapshot=None, error=f"rejected: {reason}")

    async def close(self) -> None:
        """Stop serving (in-flight pulls get ``close_grace_s``), wake waiters, close channels."""
        if self._closed:
            return
        self._closed = True
        self._store.close()
        await self._server.stop(self.config.close_grace_s)
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        await asyncio.gather(*self._closing, return_exceptions=True)
        self._receive_buffers.clear()
        self._spare = self._recycled = None


def _bound_address(listen: str, port: int) -> str:
    host = listen.rpartition(":")[0]
    if host in _WILDCARD_HOSTS:
        raise BindError(
            f"listening on {listen!r} (all interfaces) needs advertise_address: which of this "
            f"host's addresses should neighbours dial?"
        )
    return f"{host}:{port}"


# ``finish`` runs on the event loop when at most this much is left (~1 ms), else in a worker thread.
_INLINE_FINISH_ELEMENTS = 1 << 18


def _prepare_snapshot(
    snapshot: Snapshot, identity: Identity, wire_dtype: torch.dtype, chunk_bytes: int
) -> None:
    """Off the loop, right after publish: the wire frames, and ||θ||² for the acceptance rules."""
    snapshot.encoded(identity, wire_dtype, chunk_bytes)
    if snapshot.delta is not None:  # compressed gossip: the step most neighbours will pull
        snapshot.compressed(identity, chunk_bytes, delta=True)
    snapshot.norm_sq()


def _touched_buffer(numel: int) -> torch.Tensor:
    buffer = torch.empty(numel, dtype=torch.float32)
    buffer.zero_()  # fault every page in now
    return buffer


async def _finish(mixer: RoundMixer) -> tuple[torch.Tensor, float, dict[str, float], float]:
    """``mixer.finish()``: in a worker thread when much is left (neighbours lost), else on the loop."""
    if mixer.remaining() > _INLINE_FINISH_ELEMENTS:
        return await asyncio.to_thread(mixer.finish)
    return mixer.finish()  # the usual case: mixed while arriving; a thread hop would cost more than this
