"""The gossip gRPC client side: ``call_*`` wrappers, each with a mandatory deadline.

A call either returns a verified Python object (decoded by ``protocol.serde`` / ``protocol.assembler``)
or raises ``PullFailed`` whose ``kind`` says why in one word ("deadline", "unavailable", "refused (...)",
"corrupt", "truncated", "unauthenticated", ...): the node records it as the neighbour's error for the round.

With a ``SwarmAuth`` every call carries a fresh token and the server's membership proof (initial
metadata) is checked before its first message is accepted; with ``TLSFiles`` the channel is mutual
TLS against the swarm CA (``gossip.security``).
"""

from __future__ import annotations

import dataclasses

import grpc

from gossip import _grpc
from gossip.security import AuthError, SwarmAuth, TLSFiles, proof_from_metadata
from protocol import gossip_pb2 as pb
from protocol.assembler import ReceivedSnapshot, SnapshotAssembler
from protocol.frames import WireError
from protocol.serde import (
    Hello,
    PullRequest,
    hello_reply_from_proto,
    hello_request_to_proto,
    pull_request_to_proto,
)


class PullFailed(Exception):
    """A call that produced no usable result; ``kind`` is a short reason, the message the details."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def open_channel(address: str, tls: TLSFiles | None = None) -> grpc.aio.Channel:
    """A channel to ``address`` ("host:port") with the options of ``gossip._grpc``: mutual TLS with
    the swarm CA when ``tls`` is given (the server's certificate must name the dialled host), else
    plaintext."""
    if tls is None:
        return grpc.aio.insecure_channel(address, options=_grpc.CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=_grpc.CHANNEL_OPTIONS)


def _rpc_failure(exc: grpc.aio.AioRpcError) -> PullFailed:
    code = exc.code()
    kind = {
        grpc.StatusCode.DEADLINE_EXCEEDED: "deadline",
        grpc.StatusCode.UNAVAILABLE: "unavailable",
        grpc.StatusCode.CANCELLED: "cancelled",
        grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    }.get(code, f"rpc {code.name.lower()}")
    return PullFailed(kind, exc.details() or code.name)


async def _check_proof(call, auth: SwarmAuth | None, token: bytes) -> None:
    """Raise PullFailed("unauthenticated") unless the server proved it holds the swarm secret."""
    if auth is None:
        return
    proof = proof_from_metadata(await call.initial_metadata())
    if proof is None and isinstance(call, grpc.aio.UnaryStreamCall):
        # No proof: either the server refused us (its status, e.g. UNAUTHENTICATED, follows at once
        # and read() raises it as AioRpcError, which the caller reports) or it is no member at all.
        await call.read()
    try:
        auth.verify_server(proof, token)
    except AuthError as exc:
        raise PullFailed("unauthenticated", str(exc)) from None


async def call_hello(
    channel: grpc.aio.Channel, hello: Hello, timeout: float, auth: SwarmAuth | None = None
) -> Hello:
    """Introduce ourselves; returns the server's Hello (its ``status`` says if it accepts us)."""
    method = channel.unary_unary(
        _grpc.HELLO_METHOD,
        request_serializer=pb.HelloRequest.SerializeToString,
        response_deserializer=pb.HelloReply.FromString,
    )
    if auth is not None:
        hello = dataclasses.replace(hello, auth_token=auth.client_token(hello.record.peer_id, "hello"))
    call = method(hello_request_to_proto(hello), timeout=timeout)
    try:
        reply = await call
        await _check_proof(call, auth, hello.auth_token)
    except grpc.aio.AioRpcError as exc:
        raise _rpc_failure(exc) from None
    return hello_reply_from_proto(reply)


async def call_pull(
    channel: grpc.aio.Channel,
    request: PullRequest,
    assembler: SnapshotAssembler,
    timeout: float,
    auth: SwarmAuth | None = None,
) -> tuple[ReceivedSnapshot, int]:
    """Pull one snapshot within ``timeout`` seconds; returns (snapshot, wire bytes received).

    Frames are fed to ``assembler`` as they arrive (raw bytes: the response deserializer is the
    identity), so size limits apply before buffering and a bad chunk aborts the stream at once.
    """
    method = channel.unary_stream(
        _grpc.PULL_METHOD, request_serializer=pb.PullRequest.SerializeToString, response_deserializer=None
    )
    if auth is not None:
        request = dataclasses.replace(request, auth_token=auth.client_token(request.peer_id, "pull"))
    call = method(pull_request_to_proto(request), timeout=timeout)
    try:
        await _check_proof(call, auth, request.auth_token)  # before a single frame is accepted
        async for frame in call:
            assembler.feed(frame)
        return assembler.result(), assembler.wire_bytes
    except grpc.aio.AioRpcError as exc:
        raise _rpc_failure(exc) from None
    except WireError as exc:
        raise PullFailed(exc.kind, str(exc.args[0])) from None
    finally:
        call.cancel()  # no-op when finished; stops the server streaming after an early error


def pull_timeout(deadline_s: float) -> float:
    """The gRPC timeout of a pull: the round's deadline less a base margin (5 %, at most 0.5 s) for
    finishing the mix and the event loop's wake-up, so a round that waited for a slow neighbour
    still ends within its deadline. 0.5 s because on a host at load ~12 per core (``make soak``) the
    timeout fired up to 0.19 s late and a 0.25 s margin let rounds end 10–30 ms past a 10 s
    deadline; :class:`gossip.round_budget.RoundBudget` widens the margin further where rounds
    still end late."""
    return deadline_s - min(0.5, 0.05 * deadline_s)
