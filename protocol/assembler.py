"""The receive side of a snapshot stream: frames -> a verified snapshot in one preallocated buffer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from protocol import gossip_pb2 as pb
from protocol.frames import (
    CHECKSUMS,
    DEFAULT_MAX_PAYLOAD_BYTES,
    CorruptStream,
    Refused,
    SnapshotHeader,
    TruncatedStream,
    parse_data_frame,
    status_name,
)
from protocol.serde import header_from_proto


@dataclass(frozen=True)
class Expectation:
    """What the requester asked for; the header is checked against it before any buffering."""

    swarm_id: str
    layout_fingerprint: str
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    round: int | None = None  # exact round (sync mode); None accepts any (async mode)
    peer_id: str | None = None  # the neighbour we think we are talking to
    params_numel: int | None = None  # the "params" tensor must have exactly this many elements (mixing)
    delta_bytes: int | None = None  # a "delta" tensor must be exactly this long (None: none accepted)


@dataclass(frozen=True)
class ReceivedSnapshot:
    """A complete, verified snapshot: header + tensors (views of one receive buffer, wire dtype)."""

    header: SnapshotHeader
    tensors: dict[str, torch.Tensor]

    @property
    def params(self) -> torch.Tensor:
        return self.tensors["params"]

    @property
    def delta(self) -> torch.Tensor | None:
        """A compressed step of the server's public copy (codec bytes), when it sent one."""
        return self.tensors.get("delta")

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
            fast = parse_data_frame(view)
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
            raise Refused(
                pb.STATUS_SWARM_MISMATCH, f"snapshot is from swarm {header.swarm_id!r}, we are {e.swarm_id!r}"
            )
        if header.layout_fingerprint != e.layout_fingerprint:
            raise Refused(
                pb.STATUS_LAYOUT_MISMATCH,
                f"snapshot layout {header.layout_fingerprint!r} differs from ours {e.layout_fingerprint!r}",
            )
        if e.round is not None and header.round != e.round:
            raise Refused(pb.STATUS_REFUSED, f"asked for round {e.round}, got round {header.round}")
        if e.peer_id is not None and header.peer_id != e.peer_id:
            raise Refused(
                pb.STATUS_REFUSED, f"expected peer {e.peer_id!r}, snapshot is from {header.peer_id!r}"
            )
        if header.total_bytes > e.max_payload_bytes:
            raise Refused(
                pb.STATUS_TOO_LARGE, f"snapshot is {header.total_bytes} bytes, limit {e.max_payload_bytes}"
            )
        self._check_sizes(header)
        self.header = header
        self._checksum = CHECKSUMS[header.checksum_kind]
        self._buffer = self._allocate(header.total_bytes)
        if self._buffer.dtype != torch.uint8 or self._buffer.numel() != header.total_bytes:
            raise ValueError(
                f"allocator returned {self._buffer.dtype} x {self._buffer.numel()}, "
                f"need uint8 x {header.total_bytes}"
            )
        self._view = memoryview(self._buffer.numpy()) if header.total_bytes else memoryview(bytearray())
        if self._on_header is not None:
            self._on_header(header, self._tensor_views())

    def _check_sizes(self, header: SnapshotHeader) -> None:
        """The params (or delta) tensor has exactly the size we expect, before we allocate."""
        e = self.expect
        for spec in header.tensors:
            if spec.name == "params" and e.params_numel is not None:
                if spec.nbytes != e.params_numel * spec.dtype.itemsize or len(spec.shape) != 1:
                    raise Refused(
                        pb.STATUS_LAYOUT_MISMATCH,
                        f"params tensor has shape {spec.shape}, expected ({e.params_numel},)",
                    )
            if spec.name == "delta" and spec.nbytes != e.delta_bytes:
                raise Refused(
                    pb.STATUS_REFUSED, f"delta of {spec.nbytes} bytes, expected {e.delta_bytes or 'none'}"
                )

    def _data(self, offset: int, crc: int, payload: memoryview) -> None:
        header = self.header
        n = len(payload)
        if offset != self._received:
            raise CorruptStream(f"chunk at offset {offset}, expected {self._received}")
        if n == 0 or n > header.chunk_bytes or offset + n > header.total_bytes:
            raise CorruptStream(
                f"chunk of {n} bytes at {offset} does not fit a {header.total_bytes}-byte "
                f"payload in {header.chunk_bytes}-byte chunks"
            )
        if offset + n < header.total_bytes and n != header.chunk_bytes:
            raise CorruptStream(f"short chunk ({n} bytes) before the end of the payload")
        if self._checksum(payload) != crc:
            raise CorruptStream(f"checksum mismatch in the chunk at offset {offset}")
        self._view[offset : offset + n] = payload
        self._received += n
        self._chunks += 1
        if self._on_progress is not None:
            self._on_progress(self._received)

    def _trailer(self, trailer: pb.Trailer) -> None:
        header = self.header
        if trailer.total_bytes != header.total_bytes or self._received != header.total_bytes:
            raise TruncatedStream(
                f"received {self._received} of {header.total_bytes} bytes "
                f"(trailer says {trailer.total_bytes})"
            )
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
            raw = self._buffer[pos : pos + spec.nbytes]
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
