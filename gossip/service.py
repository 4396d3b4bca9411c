"""The gossip gRPC server side: what a peer serves and the ``rpc_*`` handlers that serve it.

What is served (``Identity``, ``Snapshot``, ``SnapshotStore``) lives in ``gossip.snapshot``.

* ``GossipService``: ``rpc_hello`` / ``rpc_pull`` and ``handler()`` for ``grpc.aio.Server``. Pull
  frames are pre-serialized by ``protocol.payload`` (the response serializer is the identity).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc

from gossip import _grpc
from gossip.security import PROOF_METADATA, AuthError, SwarmAuth
from gossip.snapshot import Identity, Snapshot, SnapshotStore
from protocol import gossip_pb2 as pb
from protocol.frames import DEFAULT_CHUNK_BYTES, Refused, check_chunk_bytes, refusal_frame
from protocol.payload import EncodedPayload
from protocol.records import PeerRecord
from protocol.serde import (
    Hello,
    PullRequest,
    hello_reply_to_proto,
    hello_request_from_proto,
    pull_request_from_proto,
)

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

    def __init__(
        self,
        identity: Identity,
        store: SnapshotStore,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        auth: SwarmAuth | None = None,
    ):
        """``auth``: when set, every request must carry a valid swarm-secret token (else UNAUTHENTICATED)."""
        self.identity = identity
        self.store = store
        self.chunk_bytes = check_chunk_bytes(chunk_bytes)
        self.auth = auth
        self.refused = 0  # requests refused (any reason), for tests and logs

    def handler(self) -> grpc.GenericRpcHandler:
        """The generic handler to register on a ``grpc.aio.Server``."""
        # Lenient deserializers: an undecodable request reaches the handler as an UndecodableRequest
        # and is refused with a clear status and a log line like every other refusal.
        methods = {
            "Hello": grpc.unary_unary_rpc_method_handler(
                self.rpc_hello,
                request_deserializer=_lenient(pb.HelloRequest),
                response_serializer=pb.HelloReply.SerializeToString,
            ),
            # frames come pre-serialized from protocol.payload: identity response serializer
            "Pull": grpc.unary_stream_rpc_method_handler(
                self.rpc_pull, request_deserializer=_lenient(pb.PullRequest), response_serializer=None
            ),
        }
        return grpc.method_handlers_generic_handler(_grpc.SERVICE_NAME, methods)

    def _hello(self, status: int = pb.STATUS_OK, detail: str = "") -> Hello:
        ident = self.identity
        record = PeerRecord(
            peer_id=ident.peer_id,
            address=ident.address,
            round=self.store.latest_round,
            layout_fingerprint=ident.layout_fingerprint,
            capabilities=ident.capabilities,
        )
        return Hello(swarm_id=ident.swarm_id, record=record, status=status, detail=detail)

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
            logger.warning(
                "refusing %s from %s: its certificate is for %s", method, _shown(peer_id), _shown(common_name)
            )
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the caller's certificate is for peer {common_name!r}, not {peer_id!r}",
            )

    async def _authenticate(
        self, context: grpc.aio.ServicerContext, token: bytes, peer_id: str, method: str
    ) -> None:
        """Check that the caller's certificate (if any) names the peer it claims to be, and its swarm
        token; send our proof. Aborts with PERMISSION_DENIED / UNAUTHENTICATED if a check fails."""
        await self._check_certificate(context, peer_id, method)
        if self.auth is None:
            return
        try:
            self.auth.verify_client(token, peer_id, method)
        except AuthError as exc:
            self.refused += 1
            logger.warning(
                "refusing %s from %s (%s): unauthenticated: %s", method, _shown(peer_id), context.peer(), exc
            )
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"swarm authentication failed: {exc}")
        await context.send_initial_metadata(((PROOF_METADATA, self.auth.server_proof(token)),))

    async def _refuse_undecodable(
        self, context: grpc.aio.ServicerContext, method: str, request: UndecodableRequest
    ) -> None:
        self.refused += 1
        logger.warning(
            "refusing %s from %s: undecodable request (%d bytes): %s",
            method,
            context.peer(),
            request.size,
            request.error,
        )
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable {method} request")

    async def rpc_hello(
        self, request: pb.HelloRequest | UndecodableRequest, context: grpc.aio.ServicerContext
    ) -> pb.HelloReply:
        if isinstance(request, UndecodableRequest):
            await self._refuse_undecodable(context, "hello", request)
        caller = hello_request_from_proto(request)
        await self._authenticate(context, caller.auth_token, caller.record.peer_id, "hello")
        ident = self.identity
        if caller.swarm_id != ident.swarm_id:
            reply = self._hello(pb.STATUS_SWARM_MISMATCH, f"this peer is in swarm {ident.swarm_id!r}")
        elif (
            caller.record.layout_fingerprint and caller.record.layout_fingerprint != ident.layout_fingerprint
        ):
            reply = self._hello(
                pb.STATUS_LAYOUT_MISMATCH, f"this peer's layout is {ident.layout_fingerprint!r}"
            )
        else:
            reply = self._hello()
        if not reply.ok:
            self.refused += 1
            logger.info("hello from %s: %s", _shown(caller.record.peer_id), reply.detail)
        return hello_reply_to_proto(reply)

    async def rpc_pull(
        self, request: pb.PullRequest | UndecodableRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        if isinstance(request, UndecodableRequest):
            await self._refuse_undecodable(context, "pull", request)
        await self._authenticate(context, bytes(request.auth_token), request.peer_id, "pull")
        try:
            pull = pull_request_from_proto(request)
            snapshot = await self._select(pull, context)
            encoded = await self._encoded(snapshot, pull)
            if encoded.header.total_bytes > pull.max_payload_bytes:
                raise Refused(
                    pb.STATUS_TOO_LARGE,
                    f"snapshot is {encoded.header.total_bytes} bytes, "
                    f"requester's limit is {pull.max_payload_bytes}",
                )
        except Refused as refusal:
            self.refused += 1
            log = logger.debug if refusal.status == pb.STATUS_NOT_YET else logger.info  # NOT_YET: routine
            log("refusing pull from %s: %.300s", _shown(request.peer_id), refusal)
            yield refusal_frame(refusal.status, str(refusal.args[0]), self.store.latest_round)
            return
        for frame in encoded.frames:
            yield frame
        self.store.bytes_out += encoded.wire_bytes
        logger.debug("served round %d (%d bytes) to %s", snapshot.round, encoded.wire_bytes, pull.peer_id)

    async def _encoded(self, snapshot: Snapshot, pull: PullRequest) -> EncodedPayload:
        """The frames to send: the parameters in the requested dtype, or (compressed gossip) the
        step of our public copy when the requester holds its base, else the full public copy."""
        delta = snapshot.serves_delta(pull.codec, pull.have_copy, pull.have_round)
        if delta is not None:  # the step is usually built at publish; a full copy on first demand
            cached = snapshot.cached_compressed(self.chunk_bytes, delta)
            build = snapshot.compressed
            return cached or await asyncio.to_thread(build, self.identity, self.chunk_bytes, delta)
        encoded = snapshot.cached(pull.wire_dtype, self.chunk_bytes)  # usually built at publish
        if encoded is None:  # another wire dtype, or still building: off the loop
            encoded = await asyncio.to_thread(
                snapshot.encoded, self.identity, pull.wire_dtype, self.chunk_bytes
            )
        return encoded

    async def _select(self, pull: PullRequest, context: grpc.aio.ServicerContext) -> Snapshot:
        """The snapshot to serve, waiting for it in sync mode; raises ``Refused`` otherwise."""
        self._check_compatible(pull)
        store = self.store
        if store.closing:
            raise Refused(pb.STATUS_REFUSED, "this peer is shutting down")
        if pull.newest:
            if store.latest is None:
                raise Refused(pb.STATUS_NO_SNAPSHOT, "this peer has not published a snapshot yet")
            return store.latest
        if pull.round < 0:
            raise Refused(pb.STATUS_REFUSED, f"round {pull.round} is negative")
        if pull.round > store.latest_round + MAX_ROUNDS_AHEAD:
            raise Refused(
                pb.STATUS_REFUSED,
                f"round {pull.round} is more than {MAX_ROUNDS_AHEAD} rounds "
                f"ahead of ours ({store.latest_round})",
            )
        if store.latest_round < pull.round:
            await self._wait_for_round(pull.round, context)
        snapshot = store.get(pull.round)
        if snapshot is None:
            raise Refused(
                pb.STATUS_ROUND_GONE, f"round {pull.round} is no longer kept (at round {store.latest_round})"
            )
        return snapshot

    def _check_compatible(self, pull: PullRequest) -> None:
        """Refuse a pull from another swarm or for another parameter layout."""
        ident = self.identity
        if pull.swarm_id != ident.swarm_id:
            raise Refused(
                pb.STATUS_SWARM_MISMATCH, f"this peer is in swarm {ident.swarm_id!r}, not {pull.swarm_id!r}"
            )
        if pull.layout_fingerprint != ident.layout_fingerprint:
            raise Refused(
                pb.STATUS_LAYOUT_MISMATCH,
                f"this peer's layout is {ident.layout_fingerprint!r}, not {pull.layout_fingerprint!r}",
            )

    async def _wait_for_round(self, round: int, context: grpc.aio.ServicerContext) -> None:
        """Sync mode: wait until ``round`` is published, within the caller's deadline (NOT_YET after)."""
        store = self.store
        remaining = context.time_remaining()
        timeout = (
            MAX_SERVER_WAIT_S if remaining is None else min(MAX_SERVER_WAIT_S, remaining - WAIT_MARGIN_S)
        )
        published = timeout > 0 and await store.wait_for_round(round, timeout)
        if store.closing:
            raise Refused(pb.STATUS_REFUSED, "this peer is shutting down")
        if not published:
            raise Refused(
                pb.STATUS_NOT_YET, f"round {round} not published yet (at round {store.latest_round})"
            )
