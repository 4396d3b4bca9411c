"""The gossip gRPC client side: ``call_*`` wrappers, each with a mandatory deadline.

A call either returns a verified Python object (decoded by ``protocol.serde``) or raises
``PullFailed`` whose ``kind`` says why in one word ("deadline", "unavailable", "refused (...)",
"corrupt", "truncated", ...): the node records it as the neighbour's error for the round.
"""

from __future__ import annotations

import grpc

from gossip import _grpc
from protocol import gossip_pb2 as pb
from protocol import serde


class PullFailed(Exception):
    """A call that produced no usable result; ``kind`` is a short reason, the message the details."""

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def open_channel(address: str) -> grpc.aio.Channel:
    """An insecure channel to ``address`` ("host:port") with the options of ``gossip._grpc``.

    TLS and auth tokens come with issue 6; the proto already has the fields.
    """
    return grpc.aio.insecure_channel(address, options=_grpc.CHANNEL_OPTIONS)


def _rpc_failure(exc: grpc.aio.AioRpcError) -> PullFailed:
    code = exc.code()
    kind = {grpc.StatusCode.DEADLINE_EXCEEDED: "deadline", grpc.StatusCode.UNAVAILABLE: "unavailable",
            grpc.StatusCode.CANCELLED: "cancelled"}.get(code, f"rpc {code.name.lower()}")
    return PullFailed(kind, exc.details() or code.name)


async def call_hello(channel: grpc.aio.Channel, hello: serde.Hello, timeout: float) -> serde.Hello:
    """Introduce ourselves; returns the server's Hello (its ``status`` says if it accepts us)."""
    method = channel.unary_unary(_grpc.HELLO_METHOD, request_serializer=pb.HelloRequest.SerializeToString,
                                 response_deserializer=pb.HelloReply.FromString)
    try:
        reply = await method(serde.hello_request_to_proto(hello), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise _rpc_failure(exc) from None
    return serde.hello_reply_from_proto(reply)


async def call_pull(
    channel: grpc.aio.Channel, request: serde.PullRequest, assembler: serde.SnapshotAssembler, timeout: float
) -> tuple[serde.ReceivedSnapshot, int]:
    """Pull one snapshot within ``timeout`` seconds; returns (snapshot, wire bytes received).

    Frames are fed to ``assembler`` as they arrive (raw bytes: the response deserializer is the
    identity), so size limits apply before buffering and a bad chunk aborts the stream at once.
    """
    method = channel.unary_stream(_grpc.PULL_METHOD, request_serializer=pb.PullRequest.SerializeToString,
                                  response_deserializer=None)
    call = method(serde.pull_request_to_proto(request), timeout=timeout)
    try:
        async for frame in call:
            assembler.feed(frame)
        return assembler.result(), assembler.wire_bytes
    except grpc.aio.AioRpcError as exc:
        raise _rpc_failure(exc) from None
    except serde.WireError as exc:
        raise PullFailed(exc.kind, str(exc.args[0])) from None
    finally:
        call.cancel()  # no-op when finished; stops the server streaming after an early error
