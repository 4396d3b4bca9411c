"""The send side of a snapshot stream: a snapshot's tensors -> its immutable, pre-built frames."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from protocol import gossip_pb2 as pb
from protocol.frames import (
    CHECKSUMS,
    DEFAULT_CHUNK_BYTES,
    SnapshotHeader,
    TensorSpec,
    check_chunk_bytes,
    encode_data_frame,
    encode_frame,
    tensor_bytes,
)
from protocol.serde import dtype_to_proto, header_to_proto


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
            chunk = payload[offset : offset + step]
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
    specs = tuple(
        TensorSpec(name, t.dtype, tuple(t.shape), t.numel() * t.element_size()) for name, t in tensors
    )
    for spec in specs:
        dtype_to_proto(spec.dtype)
    total = sum(s.nbytes for s in specs)
    header = SnapshotHeader(total_bytes=total, tensors=specs, chunk_bytes=chunk_bytes, **header_fields)
    if len(tensors) == 1 and tensors[0][1].is_contiguous():
        return EncodedPayload.build(header, tensor_bytes(tensors[0][1]))
    buffer = torch.empty(total, dtype=torch.uint8)
    pos = 0
    for (_, tensor), spec in zip(tensors, specs):
        buffer[pos : pos + spec.nbytes].copy_(tensor.contiguous().reshape(-1).view(torch.uint8))
        pos += spec.nbytes
    return EncodedPayload.build(header, tensor_bytes(buffer))
