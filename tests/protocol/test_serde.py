"""protocol.serde: protobuf <-> torch round trips, chunking, and refusal of bad streams."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import gossip_pb2 as pb
from protocol.assembler import Expectation, SnapshotAssembler, decode_frames
from protocol.frames import (
    MIN_CHUNK_BYTES,
    CorruptStream,
    MiB,
    Refused,
    SnapshotHeader,
    TensorSpec,
    TruncatedStream,
    encode_data_frame,
    parse_data_frame,
    refusal_frame,
)
from protocol.payload import snapshot_payload
from protocol.records import PeerRecord
from protocol.serde import (
    Hello,
    PullRequest,
    header_from_proto,
    header_to_proto,
    hello_reply_from_proto,
    hello_reply_to_proto,
    hello_request_from_proto,
    hello_request_to_proto,
    pull_request_from_proto,
    pull_request_to_proto,
)

FIELDS = dict(swarm_id="swarm", peer_id="b", round=7, layout_fingerprint="layout-1")
EXPECT = Expectation(swarm_id="swarm", layout_fingerprint="layout-1", round=7, peer_id="b")
CHUNK = MIN_CHUNK_BYTES


def _frames(params, embedding=None, chunk_bytes=CHUNK, **fields):
    tensors = [("params", params)] + ([("embedding", embedding)] if embedding is not None else [])
    return list(snapshot_payload({**FIELDS, **fields}, tensors, chunk_bytes).frames)


# ---- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_snapshot_round_trip_is_bit_exact(dtype):
    # prepare
    params = torch.randn(10_001).to(dtype)
    embedding = torch.randn(3, 5)
    # execute
    snap = decode_frames(_frames(params, embedding), EXPECT)
    # assert
    assert snap.params.dtype == dtype and torch.equal(snap.params, params)
    assert torch.equal(snap.embedding, embedding)
    assert snap.header.round == 7 and snap.header.peer_id == "b"
    assert [t.name for t in snap.header.tensors] == ["params", "embedding"]


def test_fp16_halves_the_payload():
    # prepare
    params = torch.randn(50_000)
    # execute
    full = snapshot_payload(FIELDS, [("params", params)], CHUNK)
    half = snapshot_payload(FIELDS, [("params", params.half())], CHUNK)
    # assert
    assert half.header.total_bytes * 2 == full.header.total_bytes


@pytest.mark.parametrize("numel", [1, 1023, 1024, 1025, 5 * 1024])
def test_chunk_sizes_cover_the_payload(numel):
    # prepare
    params = torch.arange(numel, dtype=torch.float32)
    # execute
    frames = _frames(params)
    data = [pb.Chunk.FromString(f).data for f in frames[1:-1]]
    # assert: full chunks, then one shorter remainder, contiguous offsets
    total = numel * 4
    assert [d.offset for d in data] == list(range(0, total, CHUNK))
    assert all(len(d.payload) == CHUNK for d in data[:-1])
    assert len(data[-1].payload) == total - CHUNK * (len(data) - 1)
    assert pb.Chunk.FromString(frames[-1]).trailer.num_chunks == len(data)


def test_empty_params_round_trip():
    # execute
    snap = decode_frames(_frames(torch.empty(0)), EXPECT)
    # assert
    assert snap.params.numel() == 0


@settings(max_examples=60, deadline=None)
@given(offset=st.integers(0, 2**40), crc=st.integers(0, 2**32 - 1), payload=st.binary(max_size=300))
def test_fast_data_frames_match_protobuf_both_ways(offset, crc, payload):
    # execute
    ours = encode_data_frame(offset, crc, memoryview(payload))
    theirs = pb.Chunk(data=pb.DataChunk(offset=offset, crc32=crc, payload=payload)).SerializeToString()
    parsed = parse_data_frame(memoryview(theirs))
    # assert
    assert ours == theirs
    assert parsed is not None and parsed[0] == offset and parsed[1] == crc and bytes(parsed[2]) == payload


def test_header_proto_round_trip():
    # prepare
    header = SnapshotHeader(
        total_bytes=40 + 6,
        chunk_bytes=CHUNK,
        tensors=(
            TensorSpec("params", torch.float32, (10,), 40),
            TensorSpec("embedding", torch.float16, (3,), 6),
        ),
        **FIELDS,
    )
    # execute
    back = header_from_proto(pb.SnapshotHeader.FromString(header_to_proto(header).SerializeToString()))
    # assert
    assert back == header


def test_hello_and_pull_request_round_trip():
    # prepare
    record = PeerRecord("a", "127.0.0.1:5", 3, "fp", ("fp16",))
    hello = Hello("swarm", record)
    pull = PullRequest("swarm", "a", 4, True, "fp", torch.float16, 123)
    # execute
    hello_back = hello_request_from_proto(hello_request_to_proto(hello))
    reply_back = hello_reply_from_proto(hello_reply_to_proto(hello))
    pull_back = pull_request_from_proto(pull_request_to_proto(pull))
    # assert
    assert hello_back == hello and reply_back == hello and pull_back == pull


def test_invalid_pull_request_is_refused_with_a_status():
    # execute / assert
    with pytest.raises(Refused) as info:
        pull_request_from_proto(pb.PullRequest(mode=pb.PULL_MODE_NEWEST, wire_dtype=42))
    assert info.value.status == pb.STATUS_UNSUPPORTED_DTYPE
    with pytest.raises(Refused) as info:
        pull_request_from_proto(pb.PullRequest(wire_dtype=pb.DTYPE_FLOAT32))
    assert info.value.status == pb.STATUS_REFUSED


# ---- refusal of bad streams ----------------------------------------------------------------


def _data_frames(frames):
    return [k for k in range(1, len(frames) - 1)]


def test_truncated_stream_is_detected():
    # prepare
    frames = _frames(torch.randn(5000))
    # execute / assert: missing trailer
    with pytest.raises(TruncatedStream, match="without a trailer"):
        decode_frames(frames[:-1], EXPECT)
    # missing last data chunk, trailer present
    with pytest.raises(TruncatedStream, match="received"):
        decode_frames(frames[:-2] + frames[-1:], EXPECT)


def test_corrupted_chunk_fails_the_checksum():
    # prepare
    frames = _frames(torch.randn(5000))
    k = _data_frames(frames)[1]
    bad = bytearray(frames[k])
    bad[-10] ^= 0x01
    frames[k] = bytes(bad)
    # execute / assert
    with pytest.raises(CorruptStream, match="checksum mismatch"):
        decode_frames(frames, EXPECT)


def test_reordered_or_duplicated_chunks_are_refused():
    # prepare
    frames = _frames(torch.randn(5000))
    a, b = _data_frames(frames)[:2]
    swapped = list(frames)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    duplicated = frames[:b] + [frames[a]] + frames[b:]
    # execute / assert
    for stream in (swapped, duplicated):
        with pytest.raises(CorruptStream, match="offset"):
            decode_frames(stream, EXPECT)


def test_garbage_and_missing_header_are_refused():
    # prepare
    frames = _frames(torch.randn(100))
    # execute / assert
    with pytest.raises(CorruptStream, match="expected the header"):
        decode_frames(frames[1:], EXPECT)
    with pytest.raises(CorruptStream, match="undecodable"):
        decode_frames([b"\xff\xff\xff"], EXPECT)
    with pytest.raises(CorruptStream, match="after the trailer"):
        decode_frames(frames + frames[-1:], EXPECT)


@pytest.mark.parametrize(
    "fields, status",
    [
        (dict(layout_fingerprint="other"), pb.STATUS_LAYOUT_MISMATCH),
        (dict(swarm_id="elsewhere"), pb.STATUS_SWARM_MISMATCH),
        (dict(round=6), pb.STATUS_REFUSED),
        (dict(peer_id="mallory"), pb.STATUS_REFUSED),
    ],
)
def test_header_mismatches_are_refused(fields, status):
    # prepare
    frames = _frames(torch.randn(100), **fields)
    # execute / assert
    with pytest.raises(Refused) as info:
        decode_frames(frames, EXPECT)
    assert info.value.status == status
    assert str(info.value).startswith("refused (")


def test_oversized_stream_is_refused_before_allocating():
    # prepare
    frames = _frames(torch.randn(5000))
    allocations = []
    assembler = SnapshotAssembler(
        Expectation("swarm", "layout-1", max_payload_bytes=1000), allocate=allocations.append
    )
    # execute / assert
    with pytest.raises(Refused, match="limit 1000") as info:
        assembler.feed(frames[0])
    assert info.value.status == pb.STATUS_TOO_LARGE
    assert allocations == []


def test_inconsistent_header_is_refused():
    # prepare: spec says 10 float32 (40 bytes) but nbytes 44
    msg = pb.SnapshotHeader(
        total_bytes=44,
        chunk_bytes=CHUNK,
        checksum_kind=pb.CHECKSUM_KIND_CRC32,
        tensors=[pb.TensorSpec(name="params", dtype=pb.DTYPE_FLOAT32, shape=[10], nbytes=44)],
    )
    frame = pb.Chunk(header=msg).SerializeToString()
    # execute / assert
    with pytest.raises(CorruptStream, match="header says 44"):
        decode_frames([frame], Expectation("", ""))


def test_refusal_frame_raises_with_its_status():
    # prepare
    frame = refusal_frame(pb.STATUS_NOT_YET, "round 9 not published yet", server_round=8)
    # execute / assert
    with pytest.raises(Refused, match="not_yet") as info:
        decode_frames([frame], EXPECT)
    assert info.value.server_round == 8


def test_chunk_size_limits():
    # execute / assert
    with pytest.raises(ValueError, match="chunk_bytes"):
        snapshot_payload(FIELDS, [("params", torch.randn(4))], chunk_bytes=8 * MiB)
    with pytest.raises(ValueError, match="cannot travel"):
        snapshot_payload(FIELDS, [("params", torch.arange(4))], chunk_bytes=CHUNK)
