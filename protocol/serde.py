"""Protobuf <-> Python pairs (``x_to_proto`` / ``x_from_proto``, Flower-style) for the gossip messages.

The snapshot header and its tensor specs, torch dtypes, Hello and PullRequest. The frame codec is
``protocol.frames``, the send / receive sides of a stream ``protocol.payload`` /
``protocol.assembler``, DHT records ``protocol.records``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from protocol import gossip_pb2 as pb
from protocol.frames import (
    CHECKSUMS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    MAX_CHUNK_BYTES,
    MIN_CHUNK_BYTES,
    CorruptStream,
    Refused,
    SnapshotHeader,
    TensorSpec,
)
from protocol.records import PeerRecord

_TORCH_TO_PROTO = {
    torch.float32: pb.DTYPE_FLOAT32,
    torch.float16: pb.DTYPE_FLOAT16,
    torch.bfloat16: pb.DTYPE_BFLOAT16,
    torch.uint8: pb.DTYPE_UINT8,
}
_PROTO_TO_TORCH = {v: k for k, v in _TORCH_TO_PROTO.items()}
_PARAM_DTYPES = (pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT16, pb.DTYPE_BFLOAT16)  # what "params" may travel as
CODECS = ("int8", "topk")  # protocol.codec's compressors, by the name a PullRequest carries


def dtype_to_proto(dtype: torch.dtype) -> int:
    try:
        return _TORCH_TO_PROTO[dtype]
    except KeyError:
        raise ValueError(
            f"dtype {dtype} cannot travel on the wire; use one of {list(_TORCH_TO_PROTO)}"
        ) from None


def dtype_from_proto(value: int) -> torch.dtype:
    try:
        return _PROTO_TO_TORCH[value]
    except KeyError:
        raise CorruptStream(f"unknown wire dtype code {value}") from None


def tensor_spec_to_proto(spec: TensorSpec) -> pb.TensorSpec:
    return pb.TensorSpec(
        name=spec.name, dtype=dtype_to_proto(spec.dtype), shape=list(spec.shape), nbytes=spec.nbytes
    )


def tensor_spec_from_proto(msg: pb.TensorSpec) -> TensorSpec:
    """Validate one spec: known dtype, non-negative shape, nbytes = numel x element size."""
    dtype = dtype_from_proto(msg.dtype)
    shape = tuple(int(d) for d in msg.shape)
    if not msg.name or any(d < 0 for d in shape):
        raise CorruptStream(f"bad tensor spec name={msg.name!r} shape={shape}")
    numel = 1
    for d in shape:
        numel *= d
    if numel * dtype.itemsize != msg.nbytes:
        raise CorruptStream(
            f"tensor {msg.name!r}: shape {shape} x {dtype} is {numel * dtype.itemsize} bytes, "
            f"header says {msg.nbytes}"
        )
    return TensorSpec(name=msg.name, dtype=dtype, shape=shape, nbytes=int(msg.nbytes))


def header_to_proto(header: SnapshotHeader) -> pb.SnapshotHeader:
    return pb.SnapshotHeader(
        swarm_id=header.swarm_id,
        peer_id=header.peer_id,
        round=header.round,
        layout_fingerprint=header.layout_fingerprint,
        total_bytes=header.total_bytes,
        tensors=[tensor_spec_to_proto(t) for t in header.tensors],
        checksum_kind=header.checksum_kind,
        chunk_bytes=header.chunk_bytes,
        copy_id=header.copy_id,
        base_round=header.base_round,
    )


def header_from_proto(msg: pb.SnapshotHeader) -> SnapshotHeader:
    """Validate the header's internal consistency (not yet against what we asked for)."""
    if msg.checksum_kind not in CHECKSUMS:
        raise CorruptStream(f"unsupported checksum kind {msg.checksum_kind}")
    if not MIN_CHUNK_BYTES <= msg.chunk_bytes <= MAX_CHUNK_BYTES:
        raise CorruptStream(f"chunk_bytes {msg.chunk_bytes} outside [{MIN_CHUNK_BYTES}, {MAX_CHUNK_BYTES}]")
    tensors = tuple(tensor_spec_from_proto(t) for t in msg.tensors)
    _check_tensors(tensors, bool(msg.copy_id))
    if sum(t.nbytes for t in tensors) != msg.total_bytes:
        raise CorruptStream(
            f"tensor sizes sum to {sum(t.nbytes for t in tensors)}, header total_bytes is {msg.total_bytes}"
        )
    return SnapshotHeader(
        swarm_id=msg.swarm_id,
        peer_id=msg.peer_id,
        round=int(msg.round),
        layout_fingerprint=msg.layout_fingerprint,
        total_bytes=int(msg.total_bytes),
        tensors=tensors,
        chunk_bytes=int(msg.chunk_bytes),
        checksum_kind=int(msg.checksum_kind),
        copy_id=msg.copy_id,
        base_round=int(msg.base_round),
    )


def _check_tensors(tensors: tuple[TensorSpec, ...], compressed: bool) -> None:
    """Unique names; exactly one of "params" (a float tensor) or "delta" (1-D bytes, only from a
    server with a public copy); nothing else but an optional "embedding"."""
    names = [t.name for t in tensors]
    if len(set(names)) != len(names) or not set(names) <= {"params", "delta", "embedding"}:
        raise CorruptStream(f"tensor names must be unique, of params / delta / embedding, got {names}")
    if ("params" in names) == ("delta" in names):
        raise CorruptStream(f"a snapshot carries exactly one of 'params' and 'delta', got {names}")
    for spec in tensors:
        if spec.name == "delta" and (not compressed or spec.dtype != torch.uint8 or len(spec.shape) != 1):
            raise CorruptStream(f"bad delta tensor {spec.shape} {spec.dtype} (copy id {compressed})")
        if spec.name != "delta" and not spec.dtype.is_floating_point:
            raise CorruptStream(f"tensor {spec.name!r} must be floating point, got {spec.dtype}")


@dataclass(frozen=True)
class Hello:
    """One side of a Hello exchange: who a peer is and where it stands."""

    swarm_id: str
    record: PeerRecord  # peer id, address, round (-1 = nothing published), fingerprint, capabilities
    status: int = pb.STATUS_OK  # in a reply: whether the server finds the caller compatible
    detail: str = ""
    auth_token: bytes = b""  # in a request: the swarm-secret token (gossip.security), empty when off

    @property
    def ok(self) -> bool:
        return self.status == pb.STATUS_OK


def hello_request_to_proto(hello: Hello) -> pb.HelloRequest:
    r = hello.record
    return pb.HelloRequest(
        swarm_id=hello.swarm_id,
        peer_id=r.peer_id,
        address=r.address,
        round=r.round,
        layout_fingerprint=r.layout_fingerprint,
        capabilities=list(r.capabilities),
        auth_token=hello.auth_token,
    )


def hello_request_from_proto(msg: pb.HelloRequest) -> Hello:
    record = PeerRecord(
        peer_id=msg.peer_id,
        address=msg.address,
        round=int(msg.round),
        layout_fingerprint=msg.layout_fingerprint,
        capabilities=tuple(msg.capabilities),
    )
    return Hello(swarm_id=msg.swarm_id, record=record, auth_token=bytes(msg.auth_token))


def hello_reply_to_proto(hello: Hello) -> pb.HelloReply:
    r = hello.record
    return pb.HelloReply(
        status=hello.status,
        detail=hello.detail,
        swarm_id=hello.swarm_id,
        peer_id=r.peer_id,
        address=r.address,
        round=r.round,
        layout_fingerprint=r.layout_fingerprint,
        capabilities=list(r.capabilities),
    )


def hello_reply_from_proto(msg: pb.HelloReply) -> Hello:
    record = PeerRecord(
        peer_id=msg.peer_id,
        address=msg.address,
        round=int(msg.round),
        layout_fingerprint=msg.layout_fingerprint,
        capabilities=tuple(msg.capabilities),
    )
    return Hello(swarm_id=msg.swarm_id, record=record, status=msg.status, detail=msg.detail)


@dataclass(frozen=True)
class PullRequest:
    """A request for one snapshot (mirror of ``gossip_pb2.PullRequest``)."""

    swarm_id: str
    peer_id: str  # the requester
    round: int
    newest: bool  # async mode: the newest snapshot; sync mode (False): exactly ``round``
    layout_fingerprint: str
    wire_dtype: torch.dtype = torch.float32
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    auth_token: bytes = b""  # the swarm-secret token (gossip.security); empty when the swarm has none
    codec: str = ""  # compressed gossip: the codec we decode (CODECS); "" = plain parameters
    have_copy: str = ""  # the server's public copy we hold ("" = none) ...
    have_round: int = -1  # ... and its round


def pull_request_to_proto(request: PullRequest) -> pb.PullRequest:
    return pb.PullRequest(
        swarm_id=request.swarm_id,
        peer_id=request.peer_id,
        round=request.round,
        mode=pb.PULL_MODE_NEWEST if request.newest else pb.PULL_MODE_EXACT_ROUND,
        layout_fingerprint=request.layout_fingerprint,
        wire_dtype=dtype_to_proto(request.wire_dtype),
        max_payload_bytes=request.max_payload_bytes,
        auth_token=request.auth_token,
        codec=request.codec,
        have_copy=request.have_copy,
        have_round=request.have_round,
    )


def pull_request_from_proto(msg: pb.PullRequest) -> PullRequest:
    """Raises ``Refused`` (with the status the server should answer) on an invalid request."""
    if msg.mode not in (pb.PULL_MODE_NEWEST, pb.PULL_MODE_EXACT_ROUND):
        raise Refused(pb.STATUS_REFUSED, f"pull mode {msg.mode} is not one of EXACT_ROUND / NEWEST")
    if msg.wire_dtype not in _PARAM_DTYPES:
        raise Refused(pb.STATUS_UNSUPPORTED_DTYPE, f"wire dtype code {msg.wire_dtype} is not supported")
    if msg.codec and msg.codec not in CODECS:
        raise Refused(pb.STATUS_REFUSED, f"codec {msg.codec[:40]!r} is not one of {CODECS}")
    return PullRequest(
        swarm_id=msg.swarm_id,
        peer_id=msg.peer_id,
        round=int(msg.round),
        newest=msg.mode == pb.PULL_MODE_NEWEST,
        layout_fingerprint=msg.layout_fingerprint,
        wire_dtype=_PROTO_TO_TORCH[msg.wire_dtype],
        max_payload_bytes=int(msg.max_payload_bytes) or DEFAULT_MAX_PAYLOAD_BYTES,
        auth_token=bytes(msg.auth_token),
        codec=msg.codec,
        have_copy=msg.have_copy,
        have_round=int(msg.have_round),
    )
