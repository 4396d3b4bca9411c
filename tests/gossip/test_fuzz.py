"""Hostile and malformed input against live nodes over real gRPC (seeded, replayable).

1. **Server side**: > 600 bad requests (garbage bytes, wrong swarm / layout / mode / dtype, negative
   and absurd rounds, tiny size limits, oversized requests, unknown methods) sent to a live node's
   gRPC server. Each is refused with a specific status (a Refusal frame or a gRPC status code) and
   our handlers log every refusal they make; the node keeps serving, its parameters stay
   bit-for-bit unchanged, and RSS stays flat.
2. **Client side**: our node only pulls, so a hostile in-test gRPC server answers its Pull with
   > 500 malformed streams (truncated, bad checksums, oversized chunks and totals, wrong dtype /
   shape / layout / swarm / peer / round, NaN/Inf and norm-jump payloads, garbage frames, aborts).
   Every one is refused with a specific error kind; the mix result equals our own parameters (and,
   with an honest neighbour beside the hostile one, exactly the mix over the honest one).
"""

from __future__ import annotations

import gc
import logging
import math
import random

import grpc
import psutil
import torch

from gossip import _grpc, mixing
from gossip.node import GossipNode, NodeConfig
from protocol import gossip_pb2 as pb
from protocol import serde

SEED = 20261124
CHUNK = serde.MIN_CHUNK_BYTES
N = 8_000  # params of the victim: 32 KB fp32 = 8 chunks
SWARM, LAYOUT = "swarm", "layout"
RSS_GROWTH_LIMIT = 48 << 20  # the barrage must not grow the process by more than this


def _config(peer_id: str, **kw) -> NodeConfig:
    return NodeConfig(swarm_id=SWARM, peer_id=peer_id, layout_fingerprint=LAYOUT, chunk_bytes=CHUNK,
                      pull_deadline_s=3.0, **kw)


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


# ---- 1. bad requests to a live server ----------------------------------------------------------

def _pull_bytes(**fields) -> bytes:
    values = dict(swarm_id=SWARM, peer_id="fuzzer", round=5, mode=pb.PULL_MODE_EXACT_ROUND,
                  layout_fingerprint=LAYOUT, wire_dtype=pb.DTYPE_FLOAT32, max_payload_bytes=0)
    values.update(fields)
    return pb.PullRequest(**values).SerializeToString()


def _bad_requests(rng: random.Random, total_bytes: int):
    """(method, raw request bytes, the refusal we expect): a status name or a gRPC code name."""
    garbage = lambda: rng.randbytes(rng.randint(1, 2000))  # noqa: E731
    makers = [
        lambda: ("pull", garbage(), {"INVALID_ARGUMENT", "refused", "unsupported_dtype", "swarm_mismatch"}),
        lambda: ("pull", _pull_bytes(swarm_id=rng.choice(["", "other", "swarm ", "x" * 300])), {"swarm_mismatch"}),
        lambda: ("pull", _pull_bytes(layout_fingerprint=rng.choice(["", "layout2", "\x00"])), {"layout_mismatch"}),
        lambda: ("pull", _pull_bytes(mode=rng.choice([0, 3, 77, -1])), {"refused"}),
        lambda: ("pull", _pull_bytes(wire_dtype=rng.choice([0, 4, 99, -5])), {"unsupported_dtype"}),
        lambda: ("pull", _pull_bytes(round=-rng.randint(1, 1 << 62)), {"refused"}),
        lambda: ("pull", _pull_bytes(round=rng.randint(2000, 1 << 62)), {"refused"}),
        lambda: ("pull", _pull_bytes(round=rng.randint(0, 3)), {"round_gone"}),
        lambda: ("pull", _pull_bytes(max_payload_bytes=rng.randint(1, total_bytes - 1)), {"too_large"}),
        lambda: ("pull", _pull_bytes(peer_id="p" * rng.randint(70_000, 200_000)), {"RESOURCE_EXHAUSTED"}),
        lambda: ("hello", garbage(), {"INVALID_ARGUMENT", "swarm_mismatch"}),
        lambda: ("hello", pb.HelloRequest(swarm_id=rng.choice(["", "other"]), peer_id="f").SerializeToString(),
                 {"swarm_mismatch"}),
        lambda: ("hello", pb.HelloRequest(swarm_id=SWARM, layout_fingerprint="other").SerializeToString(),
                 {"layout_mismatch"}),
        lambda: (rng.choice(["Push", "Delete", "Pulls"]), garbage(), {"UNIMPLEMENTED"}),
    ]
    for i in range(650):
        yield makers[i % len(makers)]()


async def _send(channel: grpc.aio.Channel, method: str, raw: bytes) -> str:
    """Send raw request bytes; return the refusal: a Refusal status name, a Hello status, or a gRPC code."""
    try:
        if method == "pull":
            call = channel.unary_stream(_grpc.PULL_METHOD, request_serializer=None, response_deserializer=None)
            frames = [frame async for frame in call(raw, timeout=5.0)]
            chunks = [pb.Chunk.FromString(f) for f in frames]
            if len(chunks) == 1 and chunks[0].WhichOneof("body") == "refusal":
                return serde.status_name(chunks[0].refusal.status)
            return f"served {len(chunks)} frames"
        if method == "hello":
            call = channel.unary_unary(_grpc.HELLO_METHOD, request_serializer=None, response_deserializer=None)
            reply = pb.HelloReply.FromString(await call(raw, timeout=5.0))
            return serde.status_name(reply.status)
        call = channel.unary_unary(f"/{_grpc.SERVICE_NAME}/{method}", request_serializer=None,
                                   response_deserializer=None)
        await call(raw, timeout=5.0)
        return "answered"
    except grpc.aio.AioRpcError as exc:
        return exc.code().name


async def test_server_refuses_a_barrage_of_bad_requests_and_keeps_serving(caplog):
    caplog.set_level(logging.INFO, logger="gossip.service")
    rng = random.Random(SEED)
    victim = await GossipNode.create(_config("victim"))
    client = await GossipNode.create(_config("honest-client"))
    channel = grpc.aio.insecure_channel(victim.address)
    try:
        # prepare: rounds 4 and 5 published (older ones are gone)
        params = torch.randn(N)
        expected = params.clone()
        victim.publish(params * 0, 4)
        victim.publish(params, 5)
        await victim.ready()
        total = victim._store.latest.encoded(victim._service.identity, torch.float32, CHUNK).header.total_bytes
        rss_before = _rss()
        # execute
        mismatches, handled = [], 0
        for method, raw, expect in _bad_requests(rng, total):
            got = await _send(channel, method, raw)
            if got not in expect:
                mismatches.append((method, len(raw), got, expect))
            handled += got not in {"RESOURCE_EXHAUSTED", "UNIMPLEMENTED"}  # refused by grpcio itself
        rss_growth = _rss() - rss_before
        outcome = await client.pull("victim", victim.address, 5)
        # assert
        assert mismatches == []
        refusal_lines = [r for r in caplog.records if r.name == "gossip.service" and
                         ("refusing" in r.getMessage() or r.getMessage().startswith("hello from"))]
        assert victim._service.refused == handled == len(refusal_lines)
        assert outcome.error is None and torch.equal(outcome.snapshot.params, expected)
        assert torch.equal(victim._store.get(5).params, expected)  # bit for bit
        assert rss_growth < RSS_GROWTH_LIMIT, f"RSS grew {rss_growth / 2**20:.1f} MiB"
    finally:
        await channel.close()
        await victim.close()
        await client.close()


# ---- 2. malformed streams answering our pulls --------------------------------------------------

def _header(**over) -> pb.SnapshotHeader:
    spec = dict(name="params", dtype=pb.DTYPE_FLOAT32, shape=[N], nbytes=4 * N)
    spec.update(over.pop("spec", {}))
    values = dict(swarm_id=SWARM, peer_id="evil", round=0, layout_fingerprint=LAYOUT, total_bytes=4 * N,
                  tensors=[pb.TensorSpec(**spec)], checksum_kind=pb.CHECKSUM_KIND_CRC32, chunk_bytes=CHUNK)
    values.update(over)
    return pb.SnapshotHeader(**values)


def _frames(x: torch.Tensor, **header) -> list[bytes]:
    fields = dict(swarm_id=SWARM, peer_id="evil", round=0, layout_fingerprint=LAYOUT)
    fields.update(header)
    return list(serde.snapshot_payload(fields, [("params", x)], CHUNK).frames)


def _encode(chunk: pb.Chunk) -> bytes:
    return chunk.SerializeToString()


def _data(offset: int, payload: bytes, crc: int | None = None) -> bytes:
    return serde.encode_data_frame(offset, serde.CHECKSUMS[pb.CHECKSUM_KIND_CRC32C](payload) if crc is None else crc, payload)


class Hostile:
    """A gRPC server that answers Pull with whatever ``frames`` holds (raw bytes), then maybe aborts."""

    def __init__(self):
        self.frames: list[bytes] = []
        self.abort: grpc.StatusCode | None = None
        self.server: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        async def pull(request, context):
            for frame in self.frames:
                yield frame
            if self.abort is not None:
                await context.abort(self.abort, "hostile abort")

        handler = grpc.method_handlers_generic_handler(_grpc.SERVICE_NAME, {
            "Pull": grpc.unary_stream_rpc_method_handler(pull, request_deserializer=None,
                                                         response_serializer=None)})
        self.server = grpc.aio.server(options=[("grpc.max_send_message_length", 32 << 20)])
        self.server.add_generic_rpc_handlers((handler,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"


def _streams(rng: random.Random, x: torch.Tensor):
    """(name, frames, abort code, allowed error prefixes) for malformed answers to a round-0 pull."""
    good = _frames(x)
    n = len(good)  # header, data..., trailer

    def add(name, frames, kinds, abort=None):
        return name, frames, abort, kinds

    def nonfinite():
        y = x.clone()
        for _ in range(rng.randint(1, 3)):
            y[rng.randrange(N)] = rng.choice([math.nan, math.inf, -math.inf])
        return y

    makers = [
        lambda: add("truncated", good[:rng.randrange(0, n - 1)], ("truncated",)),
        lambda: add("cut mid-frame", (lambda k: good[:k] + [good[k][:rng.randrange(1, len(good[k]))]])(
            rng.randrange(1, n)), ("corrupt", "truncated")),
        lambda: add("bad checksum", (lambda k: good[:k] + [_flip(good[k], rng)] + good[k + 1:])(rng.randrange(1, n - 1)),
                    ("corrupt",)),
        lambda: add("oversized chunk", [good[0], _data(0, rng.randbytes(CHUNK * rng.randint(2, 64)))] + good[2:],
                    ("corrupt",)),
        lambda: add("oversized total", [_encode(pb.Chunk(header=_header(
            total_bytes=(t := rng.randint(1 << 30, 1 << 40) * 4), spec=dict(shape=[t // 4], nbytes=t))))],
            ("refused (too_large)",)),
        lambda: add("huge embedding", [_encode(pb.Chunk(header=_header(
            total_bytes=4 * N + (e := rng.randint(1 << 27, 1 << 33) * 4),
            tensors=[pb.TensorSpec(name="params", dtype=pb.DTYPE_FLOAT32, shape=[N], nbytes=4 * N),
                     pb.TensorSpec(name="embedding", dtype=pb.DTYPE_FLOAT32, shape=[e // 4], nbytes=e)])))],
            ("refused (too_large)",)),
        lambda: add("frame over the gRPC limit", [good[0], _data(0, bytes(9 << 20))], ("rpc resource_exhausted",)),
        lambda: add("wrong dtype", [_encode(pb.Chunk(header=_header(spec=dict(dtype=rng.choice([0, 4, 99])))))]
                    + good[1:], ("corrupt",)),
        lambda: add("fp16 shape, fp32 bytes", [_encode(pb.Chunk(header=_header(spec=dict(dtype=pb.DTYPE_FLOAT16))))]
                    + good[1:], ("corrupt",)),
        lambda: add("inconsistent shape", [_encode(pb.Chunk(header=_header(spec=dict(shape=[N + rng.randint(1, 9)]))))]
                    + good[1:], ("corrupt",)),
        lambda: add("2-D params", [_encode(pb.Chunk(header=_header(spec=dict(shape=[N // 2, 2]))))] + good[1:],
                    ("refused (layout_mismatch)",)),
        lambda: add("other model size", _frames(torch.randn(N + 8 * rng.randint(1, 50))), ("refused (layout_mismatch)",)),
        lambda: add("wrong layout", _frames(x, layout_fingerprint=rng.choice(["", "l2", "layout\x00"])),
                    ("refused (layout_mismatch)",)),
        lambda: add("unknown swarm", _frames(x, swarm_id=rng.choice(["", "evil-swarm"])),
                    ("refused (swarm_mismatch)",)),
        lambda: add("wrong peer", _frames(x, peer_id=rng.choice(["", "good", "a"])), ("refused (refused)",)),
        lambda: add("negative round", [_encode(pb.Chunk(header=_header(round=-rng.randint(1, 1 << 62))))] + good[1:],
                    ("refused (refused)",)),
        lambda: add("absurd round", [_encode(pb.Chunk(header=_header(round=rng.randint(1, 1 << 62))))] + good[1:],
                    ("refused (refused)",)),
        lambda: add("NaN/Inf payload", _frames(nonfinite()), ("rejected: non-finite",)),
        lambda: add("norm jump", _frames(x * rng.choice([1e3, -50.0])), ("rejected: norm jump",)),
        lambda: add("norm collapse", _frames(x * rng.choice([0.0, 1e-4])), ("rejected: norm collapse",)),
        lambda: add("garbage frames", [rng.randbytes(rng.randint(1, 3000)) for _ in range(rng.randint(1, 4))],
                    ("corrupt", "truncated", "refused")),
        lambda: add("garbage after header", good[:1] + [rng.randbytes(rng.randint(1, 3000))],
                    ("corrupt", "truncated", "refused")),
        lambda: add("refusal with status ok", [serde.refusal_frame(rng.choice([0, 1, 77]), "")], ("refused",)),
        lambda: add("frame after trailer", good + [good[1]], ("corrupt",)),
        lambda: add("duplicate header", good[:2] + [good[0]] + good[2:], ("corrupt",)),
        lambda: add("data before header", good[1:], ("corrupt",)),
        lambda: add("offset gap", [good[0], good[2]] + good[3:], ("corrupt",)),
        lambda: add("zero-length chunk", [good[0], _data(0, b"")] + good[1:], ("corrupt",)),
        lambda: add("trailer miscounts", good[:-1] + [_encode(pb.Chunk(trailer=pb.Trailer(
            total_bytes=4 * N, num_chunks=n - 2 + rng.choice([-1, 1, 1000]))))], ("corrupt",)),
        lambda: add("trailer short total", good[:-1] + [_encode(pb.Chunk(trailer=pb.Trailer(
            total_bytes=rng.randint(0, 4 * N - 1), num_chunks=n - 2)))], ("truncated",)),
        lambda: add("abort mid-stream", good[:rng.randrange(1, n - 1)], ("rpc internal", "rpc unknown",
                                                                           "rpc data_loss"),
                    abort=rng.choice([grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS])),
        lambda: add("empty stream", [], ("truncated",)),
    ]
    for i in range(530):
        yield makers[i % len(makers)]()  # one case alive at a time: the 9 MiB frames are not kept


def _flip(frame: bytes, rng: random.Random) -> bytes:
    """One bit flipped in the payload part of a data frame (its CRC no longer matches)."""
    out = bytearray(frame)
    out[-rng.randint(1, CHUNK)] ^= 1 << rng.randrange(8)
    return bytes(out)


async def test_pulling_node_refuses_every_malformed_stream_and_mixes_only_honest_neighbours(caplog):
    rng = random.Random(SEED + 1)
    hostile = Hostile()
    await hostile.start()
    victim = await GossipNode.create(_config("a"))
    good = await GossipNode.create(_config("good"))
    try:
        # prepare
        own, theirs = torch.randn(N), torch.randn(N)
        victim.publish(own, 0)
        good.publish(theirs, 0)
        honest_mix = mixing.weighted_average([own, theirs], [0.75, 0.25])
        rss_before = _rss()
        # execute
        failures = []
        for i, (name, frames, abort, kinds) in enumerate(_streams(rng, own)):
            hostile.frames, hostile.abort = frames, abort
            with_honest = i % 10 == 0
            neighbours = {"evil": hostile.address} | ({"good": good.address} if with_honest else {})
            weights = {"evil": 0.25} | ({"good": 0.25} if with_honest else {})
            result = await victim.mix(0, neighbours, 1.0 - sum(weights.values()), weights)
            report = next(r for r in result.neighbours if r.peer_id == "evil")
            expected = honest_mix if with_honest else own
            if report.answered or not report.error.startswith(kinds) or not torch.equal(result.params, expected):
                failures.append((i, name, report.error))
        rss_growth = _rss() - rss_before
        # assert
        assert failures == []
        assert i + 1 >= 500
        assert torch.equal(victim._store.get(0).params, own)  # our snapshot, bit for bit
        assert rss_growth < RSS_GROWTH_LIMIT, f"RSS grew {rss_growth / 2**20:.1f} MiB"
        rejected = [r for r in caplog.records if "rejected evil's snapshot" in r.getMessage()]
        assert len(rejected) >= 3 * 530 // 32  # NaN/Inf, norm jump, collapse cases are each logged
    finally:
        await victim.close()
        await good.close()
        await hostile.server.stop(0)
