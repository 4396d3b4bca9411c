"""GossipNode: the async core of one peer's gossip — serve our snapshot, pull and mix neighbours'.

    node = await GossipNode.create(NodeConfig(swarm_id="s", peer_id="a", layout_fingerprint=fp))
    node.publish(flat_params, round=r)                     # one copy into an immutable snapshot
    result = await node.mix(r, {"b": "127.0.0.1:5001"}, self_weight=0.5, weights={"b": 0.5})
    await node.close()

``mix`` pulls every neighbour concurrently, each pull bounded by ``pull_deadline_s``; whoever did
not deliver a complete, verified snapshot in time loses its weight to the self-weight
(``mixing.renormalise``), and the average is written into a new buffer, so the result is either
fully mixed or (nobody answered) our own parameters — never half-applied.

Everything here runs on one asyncio event loop (``gossip.runner`` puts it on a background thread).
Where the time goes, and why the code is shaped so (measured on 2 shared cores, 44.6 MiB fp32):

* publish: one copy into the snapshot; the wire frames (per-chunk CRC-32 + protobuf framing) are
  built once in a worker thread right after, and every pull serves the same ``bytes`` (no copy);
* receive: each 1 MiB chunk is CRC-checked (zlib, ~4 GB/s here) and copied into a per-neighbour
  buffer reused across rounds; the verified prefix is mixed at once (``RoundMixer``), so mixing
  overlaps the transfer instead of following it (cache-hot blocks, one pass over memory);
* a fresh 44.6 MiB result buffer costs ~11k page faults (measured 40-50 ms of CPU): results are
  written into a buffer pre-faulted at publish time, or into one the caller ``recycle``d.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc
import torch

from gossip import _grpc, mixing, robust
from gossip.client import PullFailed, call_hello, call_pull, open_channel
from gossip.faults import FaultInterceptor
from gossip.hook import MixResult, NeighbourReport
from gossip.security import SwarmAuth, TLSFiles
from gossip.service import GossipService, Identity, Snapshot, SnapshotStore
from protocol import serde

logger = logging.getLogger(__name__)

MODES = ("sync", "async")
_MAX_EMBEDDING_BYTES = 64 << 20  # a MAR embedding payload is [batch, dim] floats: far below this
_WILDCARD_HOSTS = {"0.0.0.0", "[::]", "::", ""}


@dataclass(frozen=True)
class NodeConfig:
    """Everything a GossipNode needs; every timeout is a documented parameter."""

    swarm_id: str  # peers of another swarm are refused
    peer_id: str  # unique in the swarm
    layout_fingerprint: str  # hash of parameter names/shapes/dtypes; only equal layouts are mixed
    listen: str = "127.0.0.1:0"  # host:port to bind; port 0 picks a free one (see node.address)
    advertise_address: str | None = None  # host:port others should dial; default: the bound address
    mode: str = "sync"  # "sync": pull exactly our round (D-PSGD); "async": newest, staleness recorded
    pull_deadline_s: float = 10.0  # per neighbour pull, including a sync-mode wait for its round
    wire_dtype: str = "fp32"  # "fp32" | "fp16" | "bf16": dtype we ask neighbours to send params in
    chunk_bytes: int = serde.DEFAULT_CHUNK_BYTES  # data chunk size we serve (1-4 MiB recommended)
    max_payload_bytes: int = serde.DEFAULT_MAX_PAYLOAD_BYTES  # refuse larger snapshots before buffering
    hello_deadline_s: float = 5.0  # deadline of a Hello call
    close_grace_s: float = 1.0  # on close, in-flight pulls we serve get this long to finish
    aggregation: str = "weighted"  # "weighted" (mixing row, D-PSGD) | "trimmed_mean" (gossip.robust)
    trim_fraction: float = 0.2  # trimmed mean: fraction trimmed from each side per coordinate
    max_norm_ratio: float | None = robust.DEFAULT_MAX_NORM_RATIO  # reject ||θ_j|| outside ||θ_i|| x/÷ this
    max_distance_ratio: float | None = None  # reject ||θ_j - θ_i|| > this x ||θ_i|| (None: off)
    tls: TLSFiles | None = None  # mutual TLS with the swarm CA on every channel (gossip.security); None: plaintext
    swarm_secret: bytes | None = field(default=None, repr=False)  # only holders may pull/be pulled; None: off
    fault_control: str | None = None  # JSON file of injected transport faults (gossip.faults); None = off

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.pull_deadline_s <= 0:
            raise ValueError(f"pull_deadline_s must be > 0, got {self.pull_deadline_s}")
        serde.wire_dtype(self.wire_dtype)
        serde.check_chunk_bytes(self.chunk_bytes)
        if not self.swarm_id or not self.peer_id:
            raise ValueError("swarm_id and peer_id must be non-empty")
        self.robust  # validates the robust-aggregation fields
        if self.swarm_secret is not None:
            SwarmAuth(self.swarm_secret, self.swarm_id)  # validates the secret's length

    @property
    def robust(self) -> robust.RobustConfig:
        """The snapshot acceptance rules and aggregation rule (``gossip.robust``)."""
        return robust.RobustConfig(aggregation=self.aggregation, trim_fraction=self.trim_fraction,
                                   max_norm_ratio=self.max_norm_ratio, max_distance_ratio=self.max_distance_ratio)


@dataclass(frozen=True)
class PullOutcome:
    """The result of pulling one neighbour: a verified snapshot, or the reason there is none."""

    peer_id: str
    snapshot: serde.ReceivedSnapshot | None
    error: str | None
    seconds: float
    bytes_in: int = 0


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
        self._receive_buffers: dict[str, torch.Tensor] = {}  # reused across rounds by mix()
        self._mix_lock = asyncio.Lock()
        self._encoding: asyncio.Future | None = None  # the latest snapshot's frame building
        self._spare: asyncio.Future | None = None  # next round's output buffer, pre-faulted off the hot path
        self._recycled: torch.Tensor | None = None  # a result buffer the caller handed back
        self._closed = False

    @classmethod
    async def create(cls, config: NodeConfig) -> GossipNode:
        """Bind the server (raises ``BindError`` if the address is taken) and start serving."""
        interceptors = [FaultInterceptor(config.fault_control, config.peer_id)] if config.fault_control else []
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
        identity = Identity(swarm_id=config.swarm_id, peer_id=config.peer_id,
                            layout_fingerprint=config.layout_fingerprint, address=address)
        auth = None if config.swarm_secret is None else SwarmAuth(config.swarm_secret, config.swarm_id)
        service = GossipService(identity, SnapshotStore(), config.chunk_bytes, auth=auth)
        server.add_generic_rpc_handlers((service.handler(),))
        await server.start()
        logger.info("gossip node %s serving on %s (%s mode, wire %s, %s)", config.peer_id, address, config.mode,
                    config.wire_dtype, "+".join(["mutual TLS"] * bool(config.tls) + ["swarm secret"] * bool(auth))
                    or "insecure")
        return cls(config, server, service, address)

    # ---- serving ----------------------------------------------------------------------------

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
        self._store.put(snapshot)
        if self._spare is None and self._recycled is None:
            self._prepare_spare(snapshot.params.numel())
        # Build the wire frames (CRCs included) now, off the loop, in the dtype our swarm pulls in;
        # the first pull awaits the same work instead of redoing it.
        self._encoding = asyncio.get_running_loop().run_in_executor(
            None, _prepare_snapshot, snapshot, self._service.identity, serde.wire_dtype(self.config.wire_dtype),
            self.config.chunk_bytes)

    async def ready(self) -> None:
        """Wait until the latest published snapshot's wire frames (and the spare output buffer) are
        built; pulls are served either way, this only lets callers time publish apart."""
        for pending in (self._encoding, self._spare):
            if pending is not None:
                await pending

    # ---- pulling and mixing -----------------------------------------------------------------

    def _channel(self, address: str) -> grpc.aio.Channel:
        """One cached channel (one HTTP/2 connection) per neighbour address, reused across rounds."""
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = open_channel(address, self.config.tls)
        return channel

    def _pull_request(self, round: int) -> serde.PullRequest:
        cfg = self.config
        return serde.PullRequest(swarm_id=cfg.swarm_id, peer_id=cfg.peer_id, round=round,
                                 newest=cfg.mode == "async", layout_fingerprint=cfg.layout_fingerprint,
                                 wire_dtype=serde.wire_dtype(cfg.wire_dtype),
                                 max_payload_bytes=cfg.max_payload_bytes)

    def _expectation(self, peer_id: str, round: int, params_numel: int | None = None) -> serde.Expectation:
        """What a pull must deliver. When mixing, ``params_numel`` (ours) also bounds the size exactly,
        so a hostile header cannot make us allocate more than our own model plus an embedding."""
        cfg = self.config
        limit = cfg.max_payload_bytes
        if params_numel is not None:
            limit = min(limit, params_numel * 4 + _MAX_EMBEDDING_BYTES)
        return serde.Expectation(swarm_id=cfg.swarm_id, layout_fingerprint=cfg.layout_fingerprint,
                                 max_payload_bytes=limit, round=None if cfg.mode == "async" else round,
                                 peer_id=peer_id, params_numel=params_numel)

    async def pull(self, peer_id: str, address: str, round: int,
                   assembler: serde.SnapshotAssembler | None = None) -> PullOutcome:
        """Pull ``peer_id``'s snapshot for ``round`` (sync) or its newest (async) within the deadline.

        Never raises for remote trouble: the outcome carries the verified snapshot or the reason.
        """
        assembler = assembler or serde.SnapshotAssembler(self._expectation(peer_id, round))
        start = time.perf_counter()
        try:
            snapshot, nbytes = await call_pull(self._channel(address), self._pull_request(round), assembler,
                                               self.config.pull_deadline_s, self._auth)
        except PullFailed as exc:
            return PullOutcome(peer_id, None, str(exc), time.perf_counter() - start, assembler.wire_bytes)
        return PullOutcome(peer_id, snapshot, None, time.perf_counter() - start, nbytes)

    async def hello(self, address: str) -> serde.Hello:
        """Exchange identities with the peer at ``address``; raises ``PullFailed`` on RPC failure."""
        cfg = self.config
        record = serde.PeerRecord(peer_id=cfg.peer_id, address=self.address, round=self.round,
                                  layout_fingerprint=cfg.layout_fingerprint,
                                  capabilities=self._service.identity.capabilities)
        return await call_hello(self._channel(address), serde.Hello(cfg.swarm_id, record), cfg.hello_deadline_s,
                                self._auth)

    def _reuse_buffer(self, peer_id: str) -> serde.Allocator:
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
            raise ValueError(f"neighbours {sorted(neighbours)} and weights {sorted(weights)} name different peers")
        async with self._mix_lock:
            own = self._store.get(round) if self.config.mode == "sync" else self._store.latest
            if own is None:
                raise ValueError(f"round {round} has not been published by this node (at {self.round})")
            rules = self.config.robust
            needs_norm = rules.max_norm_ratio is not None or rules.max_distance_ratio is not None
            policy = robust.AcceptancePolicy(rules, own.norm_sq() if needs_norm else 0.0)
            trim = rules.trim_fraction if rules.aggregation == "trimmed_mean" else None
            mixer = RoundMixer(own.params, self_weight, weights, out=await self._take_spare(own.params.numel()),
                               policy=policy, trim_fraction=trim)
            start = time.perf_counter()
            outcomes = await asyncio.gather(*(self._pull_into(mixer, p, a, round) for p, a in neighbours.items()))
            pull_seconds = time.perf_counter() - start
            if mixer.remaining() > _INLINE_FINISH_ELEMENTS:  # neighbours lost: much left to mix
                params, self_w, kept, distance = await asyncio.to_thread(mixer.finish)
            else:  # the usual case: mixed while arriving; a thread hop would cost more than this
                params, self_w, kept, distance = mixer.finish()
            outcomes = [self._screened(o, mixer.rejected, round) for o in outcomes]
            answered = {o.peer_id: o.snapshot for o in outcomes if o.snapshot is not None}
            embeddings = _neighbourhood_embeddings(own, answered)
            embedding = torch.stack(embeddings).mean(dim=0) if embeddings else None
            mix_seconds = time.perf_counter() - start - pull_seconds + mixer.seconds
        reports = tuple(self._report(o, kept, round) for o in outcomes)
        result = MixResult(round=round, params=params, embedding=embedding, self_weight=self_w,
                           neighbours=reports, bytes_out=self._store.take_bytes_out(), pull_seconds=pull_seconds,
                           mix_seconds=mix_seconds, neighbour_distance_sq=distance, embeddings=embeddings)
        _log_round(self.config.peer_id, result)
        return result

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
        assembler = serde.SnapshotAssembler(
            self._expectation(peer_id, round, mixer.own.numel()), allocate=self._reuse_buffer(peer_id),
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
        logger.warning("%s round %d: rejected %s's snapshot: %s", self.config.peer_id, round, outcome.peer_id,
                       reason)
        return PullOutcome(outcome.peer_id, None, f"rejected: {reason}", outcome.seconds, outcome.bytes_in)

    def _report(self, outcome: PullOutcome, kept: Mapping[str, float], round: int) -> NeighbourReport:
        snap = outcome.snapshot
        their_round = snap.header.round if snap is not None else None
        return NeighbourReport(
            peer_id=outcome.peer_id, answered=snap is not None, weight=kept.get(outcome.peer_id, 0.0),
            round=their_round, staleness=None if their_round is None else round - their_round,
            bytes_in=outcome.bytes_in, seconds=outcome.seconds, error=outcome.error,
        )

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
        self._receive_buffers.clear()
        self._spare = self._recycled = None


def _bound_address(listen: str, port: int) -> str:
    host = listen.rpartition(":")[0]
    if host in _WILDCARD_HOSTS:
        raise BindError(f"listening on {listen!r} (all interfaces) needs advertise_address: which of this "
                        f"host's addresses should neighbours dial?")
    return f"{host}:{port}"


# ---- the arithmetic ---------------------------------------------------------------------------

# Elements per block of the mixing loops: the float32 blocks involved (own, neighbours, out) stay in
# a core's L2 cache, so the weighted average and the distance cost one pass over memory, not four.
_BLOCK = 1 << 20
# ``finish`` runs on the event loop when at most this much is left (~1 ms), else in a worker thread.
_INLINE_FINISH_ELEMENTS = 1 << 18


class RoundMixer:
    """θ_i ← W_ii θ_i + Σ_j W_ij θ_j computed while the neighbours' chunks arrive.

    Each neighbour's verified prefix grows as its stream comes in; the prefix that *every*
    still-active neighbour has delivered is mixed at once (cache-hot, overlapping the transfers) into
    a new buffer. When a neighbour fails after part of its prefix was mixed, its weight is handed back
    to the self-weight and that part is re-mixed without it, exactly what ``mixing.renormalise``
    prescribes (bit-for-bit the mix it would have been), and the rest is mixed without it. ``finish`` mixes whatever is
    left; until then the buffer is private, so callers only ever see a fully mixed result.
    Before a block is mixed, every active neighbour's part of it is screened by the
    ``robust.AcceptancePolicy`` (non-finite values, norm / distance jumps): a neighbour that fails is
    *rejected* — dropped like one that failed mid-stream — so a NaN never reaches ``out``. With
    ``trim_fraction`` set, blocks are only screened while arriving and ``finish`` computes the
    coordinate-wise trimmed mean over the closed neighbourhood (it needs every buffer at once).
    Used on one thread at a time (the event loop, then ``finish`` in a worker).
    """

    def __init__(self, own: torch.Tensor, self_weight: float, weights: Mapping[str, float],
                 out: torch.Tensor | None = None, policy: robust.AcceptancePolicy | None = None,
                 trim_fraction: float | None = None):
        """``out``: a fresh float32 buffer shaped like ``own`` to mix into (default: allocate one);
        ``policy``: screens neighbour blocks (default: non-finite check only); ``trim_fraction``:
        aggregate by trimmed mean instead of the weighted average."""
        self.policy = policy or robust.AcceptancePolicy(robust.RobustConfig(max_norm_ratio=None), 0.0)
        self.trim_fraction = trim_fraction
        self.rejected: dict[str, str] = {}  # neighbour -> why its (verified) snapshot was not mixed
        self.own = own
        self.out = torch.empty_like(own) if out is None else out
        self._scratch = torch.empty(min(_BLOCK, own.numel()), dtype=torch.float32)
        self.self_weight = self_weight  # realised W_ii: grows as neighbours drop out
        self.weights = dict(weights)  # nominal W_ij
        self.failed: set[str] = set()
        self.params: dict[str, torch.Tensor] = {}  # neighbour params (wire dtype), views of receive buffers
        self.ready = {peer: 0 for peer in weights}  # elements of each neighbour that are final
        self.mixed = 0  # out[:mixed] is mixed (trimmed mean: screened) over the active neighbours
        self.distance = 0.0  # ||θ_i - mean of active neighbours||² over [:mixed]
        self.seconds = 0.0  # time spent mixing on the event loop (overlapped with transfers)

    def active(self) -> list[str]:
        return [peer for peer in sorted(self.weights) if peer not in self.failed]

    def attach(self, peer: str, params: torch.Tensor) -> None:
        """A neighbour's header was accepted; ``params`` will fill in as chunks arrive."""
        if params.shape != self.own.shape:
            raise serde.CorruptStream(f"params shape {tuple(params.shape)} differs from ours {tuple(self.own.shape)}")
        self.params[peer] = params

    def progress(self, peer: str, received_bytes: int) -> None:
        params = self.params[peer]
        self.ready[peer] = min(received_bytes // params.element_size(), params.numel())
        self._advance()

    def drop(self, peer: str) -> None:
        """``peer`` will not deliver: return its weight to self over the mixed prefix, go on without it."""
        if peer in self.failed:
            return
        self._undo(peer)
        self._advance()

    def _undo(self, peer: str) -> None:
        """Give ``peer``'s weight to self and re-mix the prefix it contributed to without it (a prefix
        is only mixed once everyone has it, after screening). Re-mixing costs the same one pass as
        subtracting its share would, and leaves ``out`` bit-for-bit equal to a mix that never had it."""
        start = time.perf_counter()
        self.failed.add(peer)
        self.self_weight += self.weights[peer]
        if self.trim_fraction is None:
            active = self.active()
            weights = [self.self_weight] + [self.weights[p] for p in active]
            self.distance = 0.0
            for block in _blocks(0, self.mixed):
                mixing.weighted_average([self.own[block]] + [self.params[p][block] for p in active], weights,
                                        out=self.out[block])
                self.distance += self._distance(block, active)
        self.seconds += time.perf_counter() - start

    def _reject(self, peer: str, reason: str) -> None:
        """A delivered (part of a) snapshot failed the acceptance rules: drop it, remember why."""
        self.rejected[peer] = reason
        self._undo(peer)

    def _advance(self) -> None:
        """Screen and mix every block all active neighbours have delivered; restart after a rejection."""
        while True:
            active = self.active()
            frontier = min((self.ready[peer] for peer in active), default=self.own.numel())
            if frontier <= self.mixed:
                return
            start = time.perf_counter()
            weights = [self.self_weight] + [self.weights[peer] for peer in active]
            rejected = False
            for block in _blocks(self.mixed, frontier):
                theirs = [self.params[peer][block] for peer in active]
                for peer, values in zip(active, theirs):
                    reason = self.policy.check_block(peer, block.start, self.own[block], values, self._scratch)
                    if reason is not None:
                        self._reject(peer, reason)
                        rejected = True
                if rejected:
                    break
                if self.trim_fraction is None:
                    mixing.weighted_average([self.own[block]] + theirs, weights, out=self.out[block])
                    self.distance += self._distance(block, active)
                self.mixed = block.stop
            self.seconds += time.perf_counter() - start
            if not rejected:
                return

    def _distance(self, block: slice, active: list[str]) -> float:
        """||θ_i - mean of active||² over ``block``, in a reused scratch block (k + 1 kernels)."""
        if not active:
            return 0.0
        scale = 1.0 / len(active)
        diff = self._scratch[:block.stop - block.start]
        torch.sub(self.own[block], self.params[active[0]][block], alpha=scale, out=diff)
        for peer in active[1:]:
            diff.sub_(self.params[peer][block], alpha=scale)
        return float(torch.dot(diff, diff))

    def remaining(self) -> int:
        """Elements not mixed yet."""
        return self.own.numel() - self.mixed

    def finish(self) -> tuple[torch.Tensor, float, dict[str, float], float]:
        """(mixed params, realised W_ii, realised {j: W_ij}, distance) once every pull has ended."""
        for peer in self.active():
            if self.ready[peer] < self.own.numel():
                raise RuntimeError(f"neighbour {peer} neither completed nor was dropped")
        self._advance()  # the rest (everything, when no neighbour answered)
        for peer in self.active():
            reason = self.policy.check_complete(peer)
            if reason is not None:
                self._reject(peer, reason)
        if self.trim_fraction is not None:
            return self._finish_trimmed()
        self_weight, kept = mixing.renormalise(self.self_weight - sum(self.weights[p] for p in self.failed),
                                               self.weights, self.active())
        return self.out, self_weight, kept, self.distance


    def _finish_trimmed(self) -> tuple[torch.Tensor, float, dict[str, float], float]:
        """Trimmed mean over ourselves and the accepted neighbours; reported weights are uniform."""
        active = self.active()
        robust.trimmed_mean([self.own] + [self.params[p] for p in active], self.trim_fraction, out=self.out)
        self.distance = sum(self._distance(block, active) for block in _blocks(0, self.own.numel()))
        share = 1.0 / (len(active) + 1)
        return self.out, share, {peer: share for peer in active}, self.distance


def _prepare_snapshot(snapshot: Snapshot, identity: Identity, wire_dtype: torch.dtype, chunk_bytes: int) -> None:
    """Off the loop, right after publish: the wire frames, and ||θ||² for the acceptance rules."""
    snapshot.encoded(identity, wire_dtype, chunk_bytes)
    snapshot.norm_sq()


def _touched_buffer(numel: int) -> torch.Tensor:
    buffer = torch.empty(numel, dtype=torch.float32)
    buffer.zero_()  # fault every page in now
    return buffer


def _blocks(start: int, stop: int):
    for lo in range(start, stop, _BLOCK):
        yield slice(lo, min(lo + _BLOCK, stop))


def _neighbourhood_embeddings(own: Snapshot, answered: Mapping[str, serde.ReceivedSnapshot]
                              ) -> tuple[torch.Tensor, ...]:
    """The closed neighbourhood's embeddings (those who published one, same shape as the first)."""
    published = [e for e in [own.embedding] + [answered[j].embedding for j in sorted(answered)] if e is not None]
    return tuple(e.float() for e in published if e.shape == published[0].shape)


def _log_round(peer_id: str, result: MixResult) -> None:
    row = ", ".join(f"{n.peer_id}={n.weight:.3f}" for n in result.neighbours)
    lost = "; ".join(f"{n.peer_id}: {n.error}" for n in result.neighbours if not n.answered)
    logger.info(
        "%s round %d: W row self=%.3f %s | %d/%d answered | in %d B out %d B | pull %.3fs mix %.3fs%s",
        peer_id, result.round, result.self_weight, row, result.answered, result.expected, result.bytes_in,
        result.bytes_out, result.pull_seconds, result.mix_seconds, f" | lost {lost}" if lost else "",
    )
