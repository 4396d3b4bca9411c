"""The gossip gRPC server side: what a peer serves and the ``rpc_*`` handlers that serve it.

* ``Snapshot``: one published round, immutable. Its wire encodings (per wire dtype: every frame of
  the stream, per-chunk CRC-32s included) are built once — the node starts that right after
  publish — and shared by every neighbour that pulls.
* ``SnapshotStore``: the latest and the previous round's snapshot (so a slower neighbour pulling
  round r still gets exactly round r after we moved on), and an ``asyncio.Event`` (renewed per publish)
  that sync-mode pulls wait on until the requested round is published — no polling.
* ``GossipService``: ``rpc_hello`` / ``rpc_pull`` and ``handler()`` for ``grpc.aio.Server``. Pull
  frames are pre-serialized by ``protocol.serde`` (the response serializer is the identity).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import torch

from gossip import _grpc, robust
from gossip.security import PROOF_METADATA, AuthError, SwarmAuth
from protocol import gossip_pb2 as pb
from protocol import serde

logger = logging.getLogger(__name__)

# A sync-mode pull waits for the requested round at most this long even if the client set no
# deadline (every client call sets one; this only bounds a misbehaving client).
MAX_SERVER_WAIT_S = 300.0
# Stop waiting this long before the client's deadline so it receives an explicit NOT_YET refusal
# instead of a bare DEADLINE_EXCEEDED.
WAIT_MARGIN_S = 0.05
# A sync-mode pull for a round this far beyond ours is refused at once (REFUSED) instead of waiting:
# no neighbour runs that far ahead, so only a broken or hostile request asks for it.
MAX_ROUNDS_AHEAD = 1000
_LOGGED_ID_CHARS = 64  # caller-chosen strings are cut to this in our log lines


def _shown(text: str) -> str:
    """A caller-supplied string, safe and short enough for a log line."""
    return repr(text[:_LOGGED_ID_CHARS] + ("..." if len(text) > _LOGGED_ID_CHARS else ""))


@dataclass(frozen=True)
class Identity:
    """Who this server is (fixed for its lifetime)."""

    swarm_id: str
    peer_id: str
    layout_fingerprint: str
    address: str = ""
    capabilities: tuple[str, ...] = ("fp16", "bf16", "embedding")


@dataclass(eq=False)
class Snapshot:
    """One published round: a private fp32 copy of the parameters (and embedding), never mutated."""

    round: int
    params: torch.Tensor  # 1-D float32, owned by the snapshot
    embedding: torch.Tensor | None = None  # owned by the snapshot
    _encoded: dict[torch.dtype, serde.EncodedPayload] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _norm_sq: float | None = field(default=None, repr=False)

    @classmethod
    def capture(cls, params: torch.Tensor, round: int, embedding: torch.Tensor | None = None) -> Snapshot:
        """Copy ``params`` (any float dtype, flattened) and ``embedding`` once into a new snapshot."""
        if round < 0:
            raise ValueError(f"round must be >= 0, got {round}")
        if not params.is_floating_point():
            raise ValueError(f"params must be a floating-point tensor, got {params.dtype}")
        own = torch.empty(params.numel(), dtype=torch.float32)
        own.copy_(params.detach().reshape(-1))
        emb = None
        if embedding is not None:
            emb = embedding.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous()
        return cls(round=round, params=own, embedding=emb)

    def norm_sq(self) -> float:
        """||params||² (computed once; the node starts it off the loop right after publish)."""
        if self._norm_sq is None:
            self._norm_sq = robust.norm_sq(self.params)
        return self._norm_sq

    def cached(self, wire_dtype: torch.dtype, chunk_bytes: int) -> serde.EncodedPayload | None:
        """The wire form if it is already built (no lock, no waiting), else None."""
        cached = self._encoded.get(wire_dtype)
        return cached if cached is not None and cached.header.chunk_bytes == chunk_bytes else None

    def encoded(self, identity: Identity, wire_dtype: torch.dtype, chunk_bytes: int) -> serde.EncodedPayload:
        """The wire form for ``wire_dtype`` (built once; thread-safe; CRCs computed here)."""
        with self._lock:
            cached = self._encoded.get(wire_dtype)
            if cached is not None and cached.header.chunk_bytes == chunk_bytes:
                return cached
            params = self.params if wire_dtype == torch.float32 else self.params.to(wire_dtype)
            tensors = [("params", params)]
            if self.embedding is not None:
                tensors.append(("embedding", self.embedding))
            fields = dict(swarm_id=identity.swarm_id, peer_id=identity.peer_id, round=self.round,
                          layout_fingerprint=identity.layout_fingerprint)
            cached = serde.snapshot_payload(fields, tensors, chunk_bytes)
            self._encoded[wire_dtype] = cached
            return cached


class SnapshotStore:
    """The snapshots a node serves: the newest and the one before it. Used on the event loop only.

    Waiters (sync-mode pulls for a future round) sleep on an ``asyncio.Event`` that ``put`` sets and
    replaces, so they wake exactly when something is published; nothing polls.
    """

    def __init__(self) -> None:
        self._snapshots: dict[int, Snapshot] = {}
        self._published = asyncio.Event()
        self.closing = False
        self.bytes_out = 0  # payload bytes served since the last ``take_bytes_out``
        self.waiting = 0  # sync-mode pulls currently waiting for a round (for logs and tests)

    @property
    def latest(self) -> Snapshot | None:
        return self._snapshots[max(self._snapshots)] if self._snapshots else None

    @property
    def latest_round(self) -> int:
        return max(self._snapshots) if self._snapshots else -1

    def get(self, round: int) -> Snapshot | None:
        return self._snapshots.get(round)

    def put(self, snapshot: Snapshot) -> None:
        """Install ``snapshot`` (rounds never go backwards), keep one previous, wake the waiters."""
        if snapshot.round < self.latest_round:
            raise ValueError(f"round {snapshot.round} is older than the published round {self.latest_round}")
        self._snapshots[snapshot.round] = snapshot
        for old in sorted(self._snapshots)[:-2]:
            del self._snapshots[old]
        self._wake()

    def close(self) -> None:
        self.closing = True
        self._wake()

    def _wake(self) -> None:
        event, self._published = self._published, asyncio.Event()
        event.set()

    async def wait_for_round(self, round: int, timeout: float) -> bool:
        """Wait (up to ``timeout`` s) until round ``round`` or later is published; False if not."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        self.waiting += 1
        try:
            while self.latest_round < round and not self.closing:
                remaining = give_up - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._published.wait(), remaining)
                except asyncio.TimeoutError:
                    return False
            return self.latest_round >= round
        finally:
            self.waiting -= 1

    def take_bytes_out(self) -> int:
        value, self.bytes_out = self.bytes_out, 0
        return value


@dataclass(frozen=True)
class UndecodableRequest:
    """What the request deserializer hands the handler for bytes that are no valid request, so the
    handler refuses it with INVALID_ARGUMENT and a log line (``peer_id``/``round`` keep interceptors
    that read them working)."""

    error: str
    size: int
    peer_id: str = ""
    round: int = -1


def _lenient(message_type):
    """A request deserializer that never raises: the parsed message or an ``UndecodableRequest``."""
    def decode(raw: bytes):
        try:
            return message_type.FromString(raw)
        except Exception as exc:  # protobuf's DecodeError and friends
            return UndecodableRequest(error=str(exc) or type(exc).__name__, size=len(raw))
    return decode


class GossipService:
    """The ``Gossip`` service's handlers over a ``SnapshotStore``."""

    def __init__(self, identity: Identity, store: SnapshotStore, chunk_bytes: int = serde.DEFAULT_CHUNK_BYTES,
                 auth: SwarmAuth | None = None):
        """``auth``: when set, every request must carry a valid swarm-secret token (else UNAUTHENTICATED)."""
        self.identity = identity
        self.store = store
        self.chunk_bytes = serde.check_chunk_bytes(chunk_bytes)
        self.auth = auth
        self.refused = 0  # requests refused (any reason), for tests and logs

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to register on a ``grpc.aio.Server``."""
        # Lenient deserializers: an undecodable request reaches the handler as an UndecodableRequest
        # and is refused with a clear status and a log line like every other refusal.
        methods = {
            "Hello": grpc.unary_unary_rpc_method_handler(
                self.rpc_hello, request_deserializer=_lenient(pb.HelloRequest),
                response_serializer=pb.HelloReply.SerializeToString),
            # frames come pre-serialized from protocol.serde: identity response serializer
            "Pull": grpc.unary_stream_rpc_method_handler(
                self.rpc_pull, request_deserializer=_lenient(pb.PullRequest), response_serializer=None),
        }
        return grpc.method_handlers_generic_handler(_grpc.SERVICE_NAME, methods)

    def _hello(self, status: int = pb.STATUS_OK, detail: str = "") -> serde.Hello:
        ident = self.identity
        record = serde.PeerRecord(peer_id=ident.peer_id, address=ident.address, round=self.store.latest_round,
                                  layout_fingerprint=ident.layout_fingerprint, capabilities=ident.capabilities)
        return serde.Hello(swarm_id=ident.swarm_id, record=record, status=status, detail=detail)

    async def _check_certificate(self, context: grpc.aio.ServicerContext, peer_id: str, method: str) -> None:
        """Over mutual TLS the swarm CA names each peer in its certificate (CN = peer id): a caller
        claiming another peer's id is refused with PERMISSION_DENIED (no impersonation in W rows,
        logs or fault rules)."""
        names = (context.auth_context() or {}).get("x509_common_name") or []
        if not names:
            return  # plaintext, or a certificate without a CN: nothing to compare
        common_name = names[0].decode(errors="replace") if isinstance(names[0], bytes) else str(names[0])
        if common_name != peer_id:
            self.refused += 1
            logger.warning("refusing %s from %s: its certificate is for %s", method, _shown(peer_id),
                           _shown(common_name))
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"the caller's certificate is for peer {common_name!r}, not {peer_id!r}")

    async def _authenticate(self, context: grpc.aio.ServicerContext, token: bytes, peer_id: str,
                            method: str) -> None:
        """Check that the caller's certificate (if any) names the peer it claims to be, and its swarm
        token; send our proof. Aborts with PERMISSION_DENIED / UNAUTHENTICATED if a check fails."""
        await self._check_certificate(context, peer_id, method)
        if self.auth is None:
            return
        try:
            self.auth.verify_client(token, peer_id, method)
        except AuthError as exc:
            self.refused += 1
            logger.warning("refusing %s from %s (%s): unauthenticated: %s", method, _shown(peer_id), context.peer(),
                           exc)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"swarm authentication failed: {exc}")
        await context.send_initial_metadata(((PROOF_METADATA, self.auth.server_proof(token)),))

    async def _refuse_undecodable(self, context: grpc.aio.ServicerContext, method: str,
                                  request: UndecodableRequest) -> None:
        self.refused += 1
        logger.warning("refusing %s from %s: undecodable request (%d bytes): %s", method, context.peer(),
                       request.size, request.error)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable {method} request")

    async def rpc_hello(self, request: pb.HelloRequest | UndecodableRequest,
                        context: grpc.aio.ServicerContext) -> pb.HelloReply:
        if isinstance(request, UndecodableRequest):
            await self._refuse_undecodable(context, "hello", request)
        caller = serde.hello_request_from_proto(request)
        await self._authenticate(context, caller.auth_token, caller.record.peer_id, "hello")
        ident = self.identity
        if caller.swarm_id != ident.swarm_id:
            reply = self._hello(pb.STATUS_SWARM_MISMATCH, f"this peer is in swarm {ident.swarm_id!r}")
        elif caller.record.layout_fingerprint and caller.record.layout_fingerprint != ident.layout_fingerprint:
            reply = self._hello(pb.STATUS_LAYOUT_MISMATCH, f"this peer's layout is {ident.layout_fingerprint!r}")
        else:
            reply = self._hello()
        if not reply.ok:
            self.refused += 1
            logger.info("hello from %s: %s", _shown(caller.record.peer_id), reply.detail)
        return serde.hello_reply_to_proto(reply)

    async def rpc_pull(self, request: pb.PullRequest | UndecodableRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        if isinstance(request, UndecodableRequest):
            await self._refuse_undecodable(context, "pull", request)
        await self._authenticate(context, bytes(request.auth_token), request.peer_id, "pull")
        try:
            pull = serde.pull_request_from_proto(request)
            snapshot = await self._select(pull, context)
            encoded = snapshot.cached(pull.wire_dtype, self.chunk_bytes)  # usually built at publish
            if encoded is None:  # another wire dtype, or still building: off the loop
                encoded = await asyncio.to_thread(snapshot.encoded, self.identity, pull.wire_dtype,
                                                  self.chunk_bytes)
            if encoded.header.total_bytes > pull.max_payload_bytes:
                raise serde.Refused(pb.STATUS_TOO_LARGE, f"snapshot is {encoded.header.total_bytes} bytes, "
                                                         f"requester's limit is {pull.max_payload_bytes}")
        except serde.Refused as refusal:
            self.refused += 1
            log = logger.debug if refusal.status == pb.STATUS_NOT_YET else logger.info  # NOT_YET: routine
            log("refusing pull from %s: %.300s", _shown(request.peer_id), refusal)
            yield serde.refusal_frame(refusal.status, str(refusal.args[0]), self.store.latest_round)
            return
        for frame in encoded.frames:
            yield frame
        self.store.bytes_out += encoded.wire_bytes
        logger.debug("served round %d (%d bytes) to %s", snapshot.round, encoded.wire_bytes, pull.peer_id)

    async def _select(self, pull: serde.PullRequest, context: grpc.aio.ServicerContext) -> Snapshot:
        """The snapshot to serve, waiting for it in sync mode; raises ``Refused`` otherwise."""
        ident, store = self.identity, self.store
        if pull.swarm_id != ident.swarm_id:
            raise serde.Refused(pb.STATUS_SWARM_MISMATCH, f"this peer is in swarm {ident.swarm_id!r}, "
                                                          f"not {pull.swarm_id!r}")
        if pull.layout_fingerprint != ident.layout_fingerprint:
            raise serde.Refused(pb.STATUS_LAYOUT_MISMATCH, f"this peer's layout is {ident.layout_fingerprint!r}, "
                                                           f"not {pull.layout_fingerprint!r}")
        if store.closing:
            raise serde.Refused(pb.STATUS_REFUSED, "this peer is shutting down")
        if pull.newest:
            if store.latest is None:
                raise serde.Refused(pb.STATUS_NO_SNAPSHOT, "this peer has not published a snapshot yet")
            return store.latest
        if not pull.newest and pull.round < 0:
            raise serde.Refused(pb.STATUS_REFUSED, f"round {pull.round} is negative")
        if not pull.newest and pull.round > store.latest_round + MAX_ROUNDS_AHEAD:
            raise serde.Refused(pb.STATUS_REFUSED, f"round {pull.round} is more than {MAX_ROUNDS_AHEAD} rounds "
                                                   f"ahead of ours ({store.latest_round})")
        if store.latest_round < pull.round:
            remaining = context.time_remaining()
            timeout = MAX_SERVER_WAIT_S if remaining is None else min(MAX_SERVER_WAIT_S, remaining - WAIT_MARGIN_S)
            published = timeout > 0 and await store.wait_for_round(pull.round, timeout)
            if store.closing:
                raise serde.Refused(pb.STATUS_REFUSED, "this peer is shutting down")
            if not published:
                raise serde.Refused(pb.STATUS_NOT_YET, f"round {pull.round} not published yet "
                                                       f"(at round {store.latest_round})")
        snapshot = store.get(pull.round)
        if snapshot is None:
            raise serde.Refused(pb.STATUS_ROUND_GONE, f"round {pull.round} is no longer kept "
                                                      f"(at round {store.latest_round})")
        return snapshot
