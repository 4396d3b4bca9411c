"""The only place that converts between wire formats and Python / torch objects.

* Small records (DHT values such as a peer's announcement) are msgpack, never pickle: a hostile
  peer can at worst hand us malformed data, which is validated here and refused with a clear error.
* Protobuf <-> torch conversions for the gossip stream live here too (``x_to_proto`` /
  ``x_from_proto`` pairs, Flower-style).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import crc32c
import msgpack
import torch

from protocol import gossip_pb2 as pb

MAX_RECORD_BYTES = 4096  # a peer record is ~200 bytes; anything much bigger is refused


class RecordError(ValueError):
    """A DHT record that does not decode to a valid PeerRecord."""


@dataclass(frozen=True)
class PeerRecord:
    """What a peer announces under ``<swarm id>/peers`` (subkey = peer id)."""

    peer_id: str
    address: str  # gRPC "host:port" others pull from
    round: int  # latest published round
    layout_fingerprint: str  # hash of parameter names/shapes/dtypes; peers only mix equal layouts
    capabilities: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("fp16", "embedding", "tls")


_FIELDS = {"peer_id": str, "address": str, "round": int, "layout_fingerprint": str, "capabilities": list}


def peer_record_to_bytes(record: PeerRecord) -> bytes:
    payload = {
        "peer_id": record.peer_id,
        "address": record.address,
        "round": int(record.round),
        "layout_fingerprint": record.layout_fingerprint,
        "capabilities": list(record.capabilities),
    }
    data = msgpack.packb(payload, use_bin_type=True)
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"peer record is {len(data)} bytes, limit {MAX_RECORD_BYTES}")
    return data


def peer_record_from_bytes(data: bytes) -> PeerRecord:
    """Decode and validate; raises RecordError naming what is wrong."""
    if not isinstance(data, (bytes, bytearray)):
        raise RecordError(f"peer record must be bytes, got {type(data).__name__}")
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"peer record is {len(data)} bytes, limit {MAX_RECORD_BYTES}")
    try:
        payload = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, max_str_len=1024,
                                  max_bin_len=0, max_array_len=64, max_map_len=16)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise RecordError(f"peer record is not valid msgpack: {exc}") from None
    if not isinstance(payload, dict):
        raise RecordError(f"peer record must be a map, got {type(payload).__name__}")
    missing = sorted(set(_FIELDS) - set(payload))
    if missing:
        raise RecordError(f"peer record lacks fields: {', '.join(missing)}")
    for name, kind in _FIELDS.items():
        if not isinstance(payload[name], kind) or (kind is int and isinstance(payload[name], bool)):
            raise RecordError(f"peer record field {name!r} must be {kind.__name__}")
    if not all(isinstance(c, str) for c in payload["capabilities"]):
        raise RecordError("peer record capabilities must be strings")
    if payload["round"] < 0:
        raise RecordError(f"peer record round must be >= 0, got {payload['round']}")
    return PeerRecord(
        peer_id=payload["peer_id"],
        address=payload["address"],
        round=payload["round"],
        layout_fingerprint=payload["layout_fingerprint"],
        capabilities=tuple(payload["capabilities"]),
    )


# --------------------------------------------------------------------------------------------
# Gossip snapshots: protobuf <-> torch
#
# A served snapshot is one contiguous payload (the tensors' raw bytes back to back) sent as
#   header frame, data frames (chunk_bytes each, the last possibly shorter), trailer frame,
# every frame one serialized ``gossip_pb2.Chunk``. Data frames are the hot path (44.6 MiB for a
# ResNet-18), so they are encoded and decoded here by hand (``encode_data_frame`` /
# ``_parse_data_frame``) instead of through protobuf objects, which would copy each MiB twice more.
# The bytes are exactly what protobuf itself produces (a test checks), so any protobuf client can
# read the stream; anything the fast parser does not recognise falls back to protobuf.
# --------------------------------------------------------------------------------------------

MiB = 1 << 20
# Chunk checksums by ChecksumKind. We send CRC-32C (hardware-accelerated: 3.1 ms per 44.6 MiB here
# against 10.9 ms for zlib's CRC-32, measured) and still verify CRC-32 streams.
CHECKSUMS: dict[int, Callable[[bytes | memoryview], int]] = {
    pb.CHECKSUM_KIND_CRC32: zlib.crc32,
    pb.CHECKSUM_KIND_CRC32C: crc32c.crc32c,
}
DEFAULT_CHUNK_BYTES = 1 * MiB  # measured on an idle machine: 1 MiB chunks beat 4 MiB ones end to end (mixing
# overlaps the transfer at a finer grain); 256 KiB ones are 2x slower (DESIGN.md §4)
MIN_CHUNK_BYTES = 4096  # small enough for unit tests to exercise many chunks on tiny tensors
MAX_CHUNK_BYTES = 4 * MiB  # gRPC message limits in gossip/_grpc.py leave room above this
DEFAULT_MAX_PAYLOAD_BYTES = 4 << 30  # 4 GiB: a ~1 B-parameter fp32 model; configurable per node

WIRE_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_TORCH_TO_PROTO = {torch.float32: pb.DTYPE_FLOAT32, torch.float16: pb.DTYPE_FLOAT16,
                   torch.bfloat16: pb.DTYPE_BFLOAT16}
_PROTO_TO_TORCH = {v: k for k, v in _TORCH_TO_PROTO.items()}
_STATUS_NAMES = {value: name.removeprefix("STATUS_").lower() for name, value in pb.Status.items()}


class WireError(ValueError):
    """A snapshot stream that cannot be accepted; ``kind`` is a short machine-readable reason."""

    kind = "corrupt"

    def __str__(self) -> str:
        return f"{self.kind}: {super().__str__()}"


class CorruptStream(WireError):
    """Checksum mismatch, bad framing, inconsistent sizes or specs."""

    kind = "corrupt"


class TruncatedStream(WireError):
    """The stream ended before the trailer or carried fewer bytes than announced."""

    kind = "truncated"


class Refused(WireError):
    """The server answered with a Refusal, or the header does not match what we asked for."""

    def __init__(self, status: int, detail: str, server_round: int = -1):
        super().__init__(detail)
        self.status = status
        self.server_round = server_round

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"refused ({status_name(self.status)})"


def status_name(status: int) -> str:
    """``pb.STATUS_LAYOUT_MISMATCH`` -> ``"layout_mismatch"`` (for logs and error strings)."""
    return _STATUS_NAMES.get(status, f"status_{status}")


def wire_dtype(name: str) -> torch.dtype:
    """``"fp16"`` -> ``torch.float16``; raises ValueError naming the choices."""
    try:
        return WIRE_DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown wire dtype {name!r}; choose one of {', '.join(WIRE_DTYPES)}") from None


def dtype_to_proto(dtype: torch.dtype) -> int:
    try:
        return _TORCH_TO_PROTO[dtype]
    except KeyError:
        raise ValueError(f"dtype {dtype} cannot travel on the wire; use one of {list(_TORCH_TO_PROTO)}") from None


def dtype_from_proto(value: int) -> torch.dtype:
    try:
        return _PROTO_TO_TORCH[value]
    except KeyError:
        raise CorruptStream(f"unknown wire dtype code {value}") from None


def check_chunk_bytes(chunk_bytes: int) -> int:
    if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in [{MIN_CHUNK_BYTES}, {MAX_CHUNK_BYTES}], got {chunk_bytes}")
    return chunk_bytes


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the payload: its name, wire dtype, shape and byte count."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True)
class SnapshotHeader:
    """What a Pull stream announces before the bytes (mirror of ``gossip_pb2.SnapshotHeader``)."""

    swarm_id: str
    peer_id: str
    round: int
    layout_fingerprint: str
    total_bytes: int
    tensors: tuple[TensorSpec, ...]
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    checksum_kind: int = pb.CHECKSUM_KIND_CRC32C  # how each data chunk is checksummed (see CHECKSUMS)

    @property
    def num_chunks(self) -> int:
        return -(-self.total_bytes // self.chunk_bytes)


def tensor_spec_to_proto(spec: TensorSpec) -> pb.TensorSpec:
    return pb.TensorSpec(name=spec.name, dtype=dtype_to_proto(spec.dtype), shape=list(spec.shape),
                         nbytes=spec.nbytes)


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
        raise CorruptStream(f"tensor {msg.name!r}: shape {shape} x {dtype} is {numel * dtype.itemsize} bytes, "
                            f"header says {msg.nbytes}")
    return TensorSpec(name=msg.name, dtype=dtype, shape=shape, nbytes=int(msg.nbytes))


def header_to_proto(header: SnapshotHeader) -> pb.SnapshotHeader:
    return pb.SnapshotHeader(
        swarm_id=header.swarm_id, peer_id=header.peer_id, round=header.round,
        layout_fingerprint=header.layout_fingerprint, total_bytes=header.total_bytes,
        tensors=[tensor_spec_to_proto(t) for t in header.tensors],
        checksum_kind=header.checksum_kind, chunk_bytes=header.chunk_bytes,
    )


def header_from_proto(msg: pb.SnapshotHeader) -> SnapshotHeader:
    """Validate the header's internal consistency (not yet against what we asked for)."""
    if msg.checksum_kind not in CHECKSUMS:
        raise CorruptStream(f"unsupported checksum kind {msg.checksum_kind}")
    if not MIN_CHUNK_BYTES <= msg.chunk_bytes <= MAX_CHUNK_BYTES:
        raise CorruptStream(f"chunk_bytes {msg.chunk_bytes} outside [{MIN_CHUNK_BYTES}, {MAX_CHUNK_BYTES}]")
    tensors = tuple(tensor_spec_from_proto(t) for t in msg.tensors)
    names = [t.name for t in tensors]
    if len(set(names)) != len(names) or "params" not in names:
        raise CorruptStream(f"tensor names must be unique and include 'params', got {names}")
    if sum(t.nbytes for t in tensors) != msg.total_bytes:
        raise CorruptStream(f"tensor sizes sum to {sum(t.nbytes for t in tensors)}, "
                            f"header total_bytes is {msg.total_bytes}")
    return SnapshotHeader(
        swarm_id=msg.swarm_id, peer_id=msg.peer_id, round=int(msg.round),
        layout_fingerprint=msg.layout_fingerprint, total_bytes=int(msg.total_bytes), tensors=tensors,
        chunk_bytes=int(msg.chunk_bytes), checksum_kind=int(msg.checksum_kind),
    )


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """A zero-copy, read-only byte view of a contiguous CPU tensor."""
    if not tensor.is_contiguous() or tensor.device.type != "cpu":
        raise ValueError("tensor must be a contiguous CPU tensor")
    return memoryview(tensor.view(torch.uint8).numpy()).toreadonly() if tensor.numel() else memoryview(b"")


# ---- frames ---------------------------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_data_frame(offset: int, crc: int, payload: memoryview | bytes) -> bytes:
    """Serialize ``Chunk(data=DataChunk(offset, crc32, payload))`` byte-for-byte as protobuf does,
    with a single copy of ``payload`` (the join)."""
    inner = bytearray()
    if offset:
        inner += b"\x08" + _varint(offset)  # field 1 (offset), varint
    if crc:
        inner += b"\x15" + crc.to_bytes(4, "little")  # field 2 (crc32), fixed32
    n = len(payload)
    if n:
        inner += b"\x1a" + _varint(n)  # field 3 (payload), length-delimited
    return b"".join((b"\x12", _varint(len(inner) + n), inner, payload))  # Chunk field 2 (data)


def encode_frame(chunk: pb.Chunk) -> bytes:
    """A control frame (header / trailer / refusal): small, so plain protobuf."""
    return chunk.SerializeToString()


def refusal_frame(status: int, detail: str, server_round: int = -1) -> bytes:
    return encode_frame(pb.Chunk(refusal=pb.Refusal(status=status, detail=detail, server_round=server_round)))


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise IndexError("varint runs past the frame")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _parse_data_frame(frame: memoryview) -> tuple[int, int, memoryview] | None:
    """Fast path for a data frame: (offset, crc, payload view) or None to let protobuf parse it."""
    try:
        if frame[0] != 0x12:
            return None
        length, pos = _read_varint(frame, 1)
        if pos + length != len(frame):
            return None
        offset = crc = 0
        payload = frame[0:0]
        while pos < len(frame):
            tag = frame[pos]
            if tag == 0x08:
                offset, pos = _read_varint(frame, pos + 1)
            elif tag == 0x15:
                crc = int.from_bytes(frame[pos + 1:pos + 5], "little")
                pos += 5
            elif tag == 0x1A:
                n, pos = _read_varint(frame, pos + 1)
                payload = frame[pos:pos + n]
                pos += n
            else:
                return None
        if pos != len(frame):
            return None
        return offset, crc, payload
    except IndexError:
        return None


@dataclass(frozen=True)
class EncodedPayload:
    """The immutable wire form of one snapshot in one wire dtype: every frame of a Pull stream.

    Snapshots never change, so the frames (with their CRCs) are built once, right after publish,
    and every neighbour's pull just hands the same ``bytes`` objects to gRPC: serving copies
    nothing. (grpcio sends only ``bytes``, so building them is the one copy of the payload.)
    """

    header: SnapshotHeader
    frames: tuple[bytes, ...]  # header frame, data frames, trailer frame

    @classmethod
    def build(cls, header: SnapshotHeader, payload: memoryview) -> EncodedPayload:
        """Checksum and frame ``payload`` (read once per chunk while it is cache-hot)."""
        if len(payload) != header.total_bytes:
            raise ValueError(f"payload is {len(payload)} bytes, header says {header.total_bytes}")
        step = header.chunk_bytes
        frames = [encode_frame(pb.Chunk(header=header_to_proto(header)))]
        for offset in range(0, len(payload), step):
            chunk = payload[offset:offset + step]
            frames.append(encode_data_frame(offset, CHECKSUMS[header.checksum_kind](chunk), chunk))
        trailer = pb.Trailer(total_bytes=header.total_bytes, num_chunks=len(frames) - 1)
        frames.append(encode_frame(pb.Chunk(trailer=trailer)))
        return cls(header=header, frames=tuple(frames))

    @property
    def wire_bytes(self) -> int:
        return sum(len(f) for f in self.frames)


def snapshot_payload(
    header_fields: dict, tensors: Sequence[tuple[str, torch.Tensor]], chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> EncodedPayload:
    """Lay ``tensors`` (name, contiguous CPU tensor) back to back in one new buffer and encode it.

    ``header_fields``: swarm_id, peer_id, round, layout_fingerprint. One copy of each tensor; a
    single-tensor payload whose tensor is already contiguous is used as is (zero copy).
    """
    check_chunk_bytes(chunk_bytes)
    specs = tuple(TensorSpec(name, t.dtype, tuple(t.shape), t.numel() * t.element_size()) for name, t in tensors)
    for spec in specs:
        dtype_to_proto(spec.dtype)
    total = sum(s.nbytes for s in specs)
    header = SnapshotHeader(total_bytes=total, tensors=specs, chunk_bytes=chunk_bytes, **header_fields)
    if len(tensors) == 1 and tensors[0][1].is_contiguous():
        return EncodedPayload.build(header, tensor_bytes(tensors[0][1]))
    buffer = torch.empty(total, dtype=torch.uint8)
    pos = 0
    for (_, tensor), spec in zip(tensors, specs):
        buffer[pos:pos + spec.nbytes].copy_(tensor.contiguous().reshape(-1).view(torch.uint8))
        pos += spec.nbytes
    return EncodedPayload.build(header, tensor_bytes(buffer))


# ---- receiving ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expectation:
    """What the requester asked for; the header is checked against it before any buffering."""

    swarm_id: str
    layout_fingerprint: str
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    round: int | None = None  # exact round (sync mode); None accepts any (async mode)
    peer_id: str | None = None  # the neighbour we think we are talking to
    params_numel: int | None = None  # the "params" tensor must have exactly this many elements (mixing)


@dataclass(frozen=True)
class ReceivedSnapshot:
    """A complete, verified snapshot: header + tensors (views of one receive buffer, wire dtype)."""

    header: SnapshotHeader
    tensors: dict[str, torch.Tensor]

    @property
    def params(self) -> torch.Tensor:
        return self.tensors["params"]

    @property
    def embedding(self) -> torch.Tensor | None:
        return self.tensors.get("embedding")


# Returns a uint8 CPU tensor of exactly n bytes to receive a payload into (e.g. a reused buffer).
Allocator = Callable[[int], torch.Tensor]


def new_buffer(nbytes: int) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8)


class SnapshotAssembler:
    """Reassemble one Pull stream frame by frame into a preallocated buffer, verifying as it goes.

    Order of checks: refusal -> header consistency -> header vs ``Expectation`` (swarm, layout,
    round, size limit: all before the buffer is allocated) -> each data frame's offset, size and
    CRC -> trailer totals. Any failure raises a ``WireError`` subclass with a clear message.
    """

    def __init__(
        self,
        expect: Expectation,
        allocate: Allocator | None = None,
        on_header: Callable[[SnapshotHeader, dict[str, torch.Tensor]], None] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ):
        """``allocate``: where the payload goes; ``on_header(header, views)``: called once the header
        is accepted, with the (still empty) tensor views into the receive buffer — it may raise a
        ``WireError`` to refuse; ``on_progress(received_bytes)``: called after each verified chunk,
        when bytes ``[0, received_bytes)`` of the payload are final (lets the caller work on them
        while the rest is still in flight)."""
        self.expect = expect
        self._allocate = allocate or new_buffer
        self._on_header = on_header
        self._on_progress = on_progress
        self.header: SnapshotHeader | None = None
        self._buffer: torch.Tensor | None = None
        self._view: memoryview | None = None
        self._received = 0
        self._chunks = 0
        self._done = False
        self.wire_bytes = 0  # bytes of frames seen, for accounting

    def feed(self, frame: bytes) -> None:
        if self._done:
            raise CorruptStream("frame after the trailer")
        self.wire_bytes += len(frame)
        view = memoryview(frame)
        if self.header is not None:
            fast = _parse_data_frame(view)
            if fast is not None:
                self._data(*fast)
                return
        try:
            chunk = pb.Chunk.FromString(frame)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise CorruptStream(f"undecodable frame ({len(frame)} bytes): {exc}") from None
        body = chunk.WhichOneof("body")
        if body == "refusal":
            r = chunk.refusal
            raise Refused(r.status, r.detail or status_name(r.status), int(r.server_round))
        if self.header is None:
            if body != "header":
                raise CorruptStream(f"stream starts with {body or 'an empty frame'}, expected the header")
            self._accept_header(header_from_proto(chunk.header))
        elif body == "data":
            self._data(int(chunk.data.offset), int(chunk.data.crc32), memoryview(chunk.data.payload))
        elif body == "trailer":
            self._trailer(chunk.trailer)
        else:
            raise CorruptStream(f"unexpected {body or 'empty'} frame after the header")

    def _accept_header(self, header: SnapshotHeader) -> None:
        e = self.expect
        if header.swarm_id != e.swarm_id:
            raise Refused(pb.STATUS_SWARM_MISMATCH, f"snapshot is from swarm {header.swarm_id!r}, we are {e.swarm_id!r}")
        if header.layout_fingerprint != e.layout_fingerprint:
            raise Refused(pb.STATUS_LAYOUT_MISMATCH, f"snapshot layout {header.layout_fingerprint!r} "
                                                     f"differs from ours {e.layout_fingerprint!r}")
        if e.round is not None and header.round != e.round:
            raise Refused(pb.STATUS_REFUSED, f"asked for round {e.round}, got round {header.round}")
        if e.peer_id is not None and header.peer_id != e.peer_id:
            raise Refused(pb.STATUS_REFUSED, f"expected peer {e.peer_id!r}, snapshot is from {header.peer_id!r}")
        if header.total_bytes > e.max_payload_bytes:
            raise Refused(pb.STATUS_TOO_LARGE, f"snapshot is {header.total_bytes} bytes, "
                                               f"limit {e.max_payload_bytes}")
        if e.params_numel is not None:
            params = next(t for t in header.tensors if t.name == "params")
            if params.nbytes != e.params_numel * params.dtype.itemsize or len(params.shape) != 1:
                raise Refused(pb.STATUS_LAYOUT_MISMATCH, f"params tensor has shape {params.shape}, "
                                                         f"expected ({e.params_numel},)")
        self.header = header
        self._checksum = CHECKSUMS[header.checksum_kind]
        self._buffer = self._allocate(header.total_bytes)
        if self._buffer.dtype != torch.uint8 or self._buffer.numel() != header.total_bytes:
            raise ValueError(f"allocator returned {self._buffer.dtype} x {self._buffer.numel()}, "
                             f"need uint8 x {header.total_bytes}")
        self._view = memoryview(self._buffer.numpy()) if header.total_bytes else memoryview(bytearray())
        if self._on_header is not None:
            self._on_header(header, self._tensor_views())

    def _data(self, offset: int, crc: int, payload: memoryview) -> None:
        header = self.header
        n = len(payload)
        if offset != self._received:
            raise CorruptStream(f"chunk at offset {offset}, expected {self._received}")
        if n == 0 or n > header.chunk_bytes or offset + n > header.total_bytes:
            raise CorruptStream(f"chunk of {n} bytes at {offset} does not fit a {header.total_bytes}-byte "
                                f"payload in {header.chunk_bytes}-byte chunks")
        if offset + n < header.total_bytes and n != header.chunk_bytes:
            raise CorruptStream(f"short chunk ({n} bytes) before the end of the payload")
        if self._checksum(payload) != crc:
            raise CorruptStream(f"checksum mismatch in the chunk at offset {offset}")
        self._view[offset:offset + n] = payload
        self._received += n
        self._chunks += 1
        if self._on_progress is not None:
            self._on_progress(self._received)

    def _trailer(self, trailer: pb.Trailer) -> None:
        header = self.header
        if trailer.total_bytes != header.total_bytes or self._received != header.total_bytes:
            raise TruncatedStream(f"received {self._received} of {header.total_bytes} bytes "
                                  f"(trailer says {trailer.total_bytes})")
        if trailer.num_chunks != self._chunks:
            raise CorruptStream(f"trailer counts {trailer.num_chunks} chunks, received {self._chunks}")
        self._done = True

    def result(self) -> ReceivedSnapshot:
        """The verified snapshot; raises TruncatedStream if the trailer has not arrived."""
        if not self._done:
            got = self._received if self.header else 0
            total = self.header.total_bytes if self.header else "?"
            raise TruncatedStream(f"stream ended after {got} of {total} bytes without a trailer")
        return ReceivedSnapshot(header=self.header, tensors=self._tensor_views())

    def _tensor_views(self) -> dict[str, torch.Tensor]:
        """The payload's tensors as views of the receive buffer (wire dtypes and shapes)."""
        tensors: dict[str, torch.Tensor] = {}
        pos = 0
        for spec in self.header.tensors:
            raw = self._buffer[pos:pos + spec.nbytes]
            if pos % spec.dtype.itemsize:
                raw = raw.clone()  # misaligned (e.g. after an odd-length fp16 tensor): copy the few bytes
            tensors[spec.name] = raw.view(spec.dtype).view(spec.shape)
            pos += spec.nbytes
        return tensors


def decode_frames(frames: Iterable[bytes], expect: Expectation) -> ReceivedSnapshot:
    """Assemble a whole stream at once (tests, tools)."""
    assembler = SnapshotAssembler(expect)
    for frame in frames:
        assembler.feed(frame)
    return assembler.result()


# ---- hello ----------------------------------------------------------------------------------

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
    return pb.HelloRequest(swarm_id=hello.swarm_id, peer_id=r.peer_id, address=r.address, round=r.round,
                           layout_fingerprint=r.layout_fingerprint, capabilities=list(r.capabilities),
                           auth_token=hello.auth_token)


def hello_request_from_proto(msg: pb.HelloRequest) -> Hello:
    record = PeerRecord(peer_id=msg.peer_id, address=msg.address, round=int(msg.round),
                        layout_fingerprint=msg.layout_fingerprint, capabilities=tuple(msg.capabilities))
    return Hello(swarm_id=msg.swarm_id, record=record, auth_token=bytes(msg.auth_token))


def hello_reply_to_proto(hello: Hello) -> pb.HelloReply:
    r = hello.record
    return pb.HelloReply(status=hello.status, detail=hello.detail, swarm_id=hello.swarm_id, peer_id=r.peer_id,
                         address=r.address, round=r.round, layout_fingerprint=r.layout_fingerprint,
                         capabilities=list(r.capabilities))


def hello_reply_from_proto(msg: pb.HelloReply) -> Hello:
    record = PeerRecord(peer_id=msg.peer_id, address=msg.address, round=int(msg.round),
                        layout_fingerprint=msg.layout_fingerprint, capabilities=tuple(msg.capabilities))
    return Hello(swarm_id=msg.swarm_id, record=record, status=msg.status, detail=msg.detail)


# ---- pull request ---------------------------------------------------------------------------

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


def pull_request_to_proto(request: PullRequest) -> pb.PullRequest:
    return pb.PullRequest(
        swarm_id=request.swarm_id, peer_id=request.peer_id, round=request.round,
        mode=pb.PULL_MODE_NEWEST if request.newest else pb.PULL_MODE_EXACT_ROUND,
        layout_fingerprint=request.layout_fingerprint, wire_dtype=dtype_to_proto(request.wire_dtype),
        max_payload_bytes=request.max_payload_bytes, auth_token=request.auth_token,
    )


def pull_request_from_proto(msg: pb.PullRequest) -> PullRequest:
    """Raises ``Refused`` (with the status the server should answer) on an invalid request."""
    if msg.mode not in (pb.PULL_MODE_NEWEST, pb.PULL_MODE_EXACT_ROUND):
        raise Refused(pb.STATUS_REFUSED, f"pull mode {msg.mode} is not one of EXACT_ROUND / NEWEST")
    if msg.wire_dtype not in _PROTO_TO_TORCH:
        raise Refused(pb.STATUS_UNSUPPORTED_DTYPE, f"wire dtype code {msg.wire_dtype} is not supported")
    return PullRequest(
        swarm_id=msg.swarm_id, peer_id=msg.peer_id, round=int(msg.round), newest=msg.mode == pb.PULL_MODE_NEWEST,
        layout_fingerprint=msg.layout_fingerprint, wire_dtype=_PROTO_TO_TORCH[msg.wire_dtype],
        max_payload_bytes=int(msg.max_payload_bytes) or DEFAULT_MAX_PAYLOAD_BYTES, auth_token=bytes(msg.auth_token),
    )
