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
from dataclasses import dataclass

import grpc
import psutil
import torch

from gossip import _grpc, mixing
from gossip.node import GossipNode, NodeConfig
from gossip.round_mixer import RoundMixer
from protocol import gossip_pb2 as pb
from protocol.frames import CHECKSUMS, MIN_CHUNK_BYTES, encode_data_frame, refusal_frame, status_name
from protocol.payload import snapshot_payload

SEED = 20261124
CHUNK = MIN_CHUNK_BYTES
N = 8_000  # params of the victim: 32 KB fp32 = 8 chunks
SWARM, LAYOUT = "swarm", "layout"
RSS_GROWTH_LIMIT = 48 << 20  # the barrage must not grow the process by more than this


def _config(peer_id: str, **kw) -> NodeConfig:
    return NodeConfig(
        swarm_id=SWARM,
        peer_id=peer_id,
        layout_fingerprint=LAYOUT,
        chunk_bytes=CHUNK,
        pull_deadline_s=3.0,
        **kw,
    )


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


# ---- 1. bad requests to a live server ----------------------------------------------------------


def _pull_bytes(**fields) -> bytes:
    values = dict(
        swarm_id=SWARM,
        peer_id="fuzzer",
        round=5,
        mode=pb.PULL_MODE_EXACT_ROUND,
        layout_fingerprint=LAYOUT,
        wire_dtype=pb.DTYPE_FLOAT32,
        max_payload_bytes=0,
    )
    values.update(fields)
    return pb.PullRequest(**values).SerializeToString()


def _bad_requests(rng: random.Random, total_bytes: int):
    """(method, raw request bytes, the refusal we expect): a status name or a gRPC code name."""
    garbage = lambda: rng.randbytes(rng.randint(1, 2000))  # noqa: E731
    makers = [
        lambda: ("pull", garbage(), {"INVALID_ARGUMENT", "refused", "unsupported_dtype", "swarm_mismatch"}),
        lambda: (
            "pull",
            _pull_bytes(swarm_id=rng.choice(["", "other", "swarm ", "x" * 300])),
            {"swarm_mismatch"},
        ),
        lambda: (
            "pull",
            _pull_bytes(layout_fingerprint=rng.choice(["", "layout2", "\x00"])),
            {"layout_mismatch"},
        ),
        lambda: ("pull", _pull_bytes(mode=rng.choice([0, 3, 77, -1])), {"refused"}),
        lambda: ("pull", _pull_bytes(wire_dtype=rng.choice([0, 4, 99, -5])), {"unsupported_dtype"}),
        lambda: ("pull", _pull_bytes(round=-rng.randint(1, 1 << 62)), {"refused"}),
        lambda: ("pull", _pull_bytes(round=rng.randint(2000, 1 << 62)), {"refused"}),
        lambda: ("pull", _pull_bytes(round=rng.randint(0, 3)), {"round_gone"}),
        lambda: ("pull", _pull_bytes(max_payload_bytes=rng.randint(1, total_bytes - 1)), {"too_large"}),
        lambda: ("pull", _pull_bytes(peer_id="p" * rng.randint(70_000, 200_000)), {"RESOURCE_EXHAUSTED"}),
        lambda: ("hello", garbage(), {"INVALID_ARGUMENT", "swarm_mismatch"}),
        lambda: (
            "hello",
            pb.HelloRequest(swarm_id=rng.choice(["", "other"]), peer_id="f").SerializeToString(),
            {"swarm_mismatch"},
        ),
        lambda: (
            "hello",
            pb.HelloRequest(swarm_id=SWARM, layout_fingerprint="other").SerializeToString(),
            {"layout_mismatch"},
        ),
        lambda: (rng.choice(["Push", "Delete", "Pulls"]), garbage(), {"UNIMPLEMENTED"}),
    ]
    for i in range(650):
        yield makers[i % len(makers)]()


async def _send(channel: grpc.aio.Channel, method: str, raw: bytes) -> str:
    """Send raw request bytes; return the refusal: a Refusal status name, a Hello status, or a gRPC code."""
    try:
        if method == "pull":
            call = channel.unary_stream(
                _grpc.PULL_METHOD, request_serializer=None, response_deserializer=None
            )
            frames = [frame async for frame in call(raw, timeout=5.0)]
            chunks = [pb.Chunk.FromString(f) for f in frames]
            if len(chunks) == 1 and chunks[0].WhichOneof("body") == "refusal":
                return status_name(chunks[0].refusal.status)
            return f"served {len(chunks)} frames"
        if method == "hello":
            call = channel.unary_unary(
                _grpc.HELLO_METHOD, request_serializer=None, response_deserializer=None
            )
            reply = pb.HelloReply.FromString(await call(raw, timeout=5.0))
            return status_name(reply.status)
        call = channel.unary_unary(
            f"/{_grpc.SERVICE_NAME}/{method}", request_serializer=None, response_deserializer=None
        )
        await call(raw, timeout=5.0)
        return "answered"
    except grpc.aio.AioRpcError as exc:
        return exc.code().name


def _refusal_lines(caplog) -> list[logging.LogRecord]:
    """The service's log lines for refused requests (pulls and hellos)."""
    return [
        r
        for r in caplog.records
        if r.name == "gossip.service"
        and ("refusing" in r.getMessage() or r.getMessage().startswith("hello from"))
    ]


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
        total = victim._store.latest.encoded(
            victim._service.identity, torch.float32, CHUNK
        ).header.total_bytes
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
        assert victim._service.refused == handled == len(_refusal_lines(caplog))
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
    values = dict(
        swarm_id=SWARM,
        peer_id="evil",
        round=0,
        layout_fingerprint=LAYOUT,
        total_bytes=4 * N,
        tensors=[pb.TensorSpec(**spec)],
        checksum_kind=pb.CHECKSUM_KIND_CRC32,
        chunk_bytes=CHUNK,
    )
    values.update(over)
    return pb.SnapshotHeader(**values)


def _frames(x: torch.Tensor, **header) -> list[bytes]:
    fields = dict(swarm_id=SWARM, peer_id="evil", round=0, layout_fingerprint=LAYOUT)
    fields.update(header)
    return list(snapshot_payload(fields, [("params", x)], CHUNK).frames)


def _encode(chunk: pb.Chunk) -> bytes:
    return chunk.SerializeToString()


def _data(offset: int, payload: bytes, crc: int | None = None) -> bytes:
    return encode_data_frame(
        offset, CHECKSUMS[pb.CHECKSUM_KIND_CRC32C](payload) if crc is None else crc, payload
    )


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

        handler = grpc.method_handlers_generic_handler(
            _grpc.SERVICE_NAME,
            {
                "Pull": grpc.unary_stream_rpc_method_handler(
                    pull, request_deserializer=None, response_serializer=None
                )
            },
        )
        self.server = grpc.aio.server(options=[("grpc.max_send_message_length", 32 << 20)])
        self.server.add_generic_rpc_handlers((handler,))
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        self.address = f"127.0.0.1:{port}"


@dataclass(frozen=True)
class _Stream:
    """What a malformed-stream builder draws from: the seeded rng, our params, their honest frames."""

    rng: random.Random
    x: torch.Tensor
    good: list[bytes]  # header, data..., trailer

    @property
    def n(self) -> int:
        return len(self.good)


def _header_frame(**over) -> list[bytes]:
    return [_encode(pb.Chunk(header=_header(**over)))]


def _nonfinite(s: _Stream) -> torch.Tensor:
    y = s.x.clone()
    for _ in range(s.rng.randint(1, 3)):
        y[s.rng.randrange(N)] = s.rng.choice([math.nan, math.inf, -math.inf])
    return y


def _cut_mid_frame(s: _Stream) -> list[bytes]:
    k = s.rng.randrange(1, s.n)
    return s.good[:k] + [s.good[k][: s.rng.randrange(1, len(s.good[k]))]]


def _bad_checksum(s: _Stream) -> list[bytes]:
    k = s.rng.randrange(1, s.n - 1)
    return s.good[:k] + [_flip(s.good[k], s.rng)] + s.good[k + 1 :]


def _oversized_total(s: _Stream) -> list[bytes]:
    t = s.rng.randint(1 << 30, 1 << 40) * 4
    return _header_frame(total_bytes=t, spec=dict(shape=[t // 4], nbytes=t))


def _huge_embedding(s: _Stream) -> list[bytes]:
    e = s.rng.randint(1 << 27, 1 << 33) * 4
    tensors = [
        pb.TensorSpec(name="params", dtype=pb.DTYPE_FLOAT32, shape=[N], nbytes=4 * N),
        pb.TensorSpec(name="embedding", dtype=pb.DTYPE_FLOAT32, shape=[e // 4], nbytes=e),
    ]
    return _header_frame(total_bytes=4 * N + e, tensors=tensors)


def _trailer_miscounts(s: _Stream) -> list[bytes]:
    count = s.n - 2 + s.rng.choice([-1, 1, 1000])
    return s.good[:-1] + [_encode(pb.Chunk(trailer=pb.Trailer(total_bytes=4 * N, num_chunks=count)))]


def _trailer_short_total(s: _Stream) -> list[bytes]:
    total = s.rng.randint(0, 4 * N - 1)
    return s.good[:-1] + [_encode(pb.Chunk(trailer=pb.Trailer(total_bytes=total, num_chunks=s.n - 2)))]


def _abort_mid_stream(s: _Stream) -> tuple[list[bytes], grpc.StatusCode]:
    frames = s.good[: s.rng.randrange(1, s.n - 1)]
    return frames, s.rng.choice(
        [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS]
    )


# (name, allowed error prefixes, builder): a builder returns the frames the hostile server answers a
# round-0 pull with, or (frames, gRPC status it then aborts with)
_MALFORMED_STREAMS = [
    ("truncated", ("truncated",), lambda s: s.good[: s.rng.randrange(0, s.n - 1)]),
    ("cut mid-frame", ("corrupt", "truncated"), _cut_mid_frame),
    ("bad checksum", ("corrupt",), _bad_checksum),
    (
        "oversized chunk",
        ("corrupt",),
        lambda s: [s.good[0], _data(0, s.rng.randbytes(CHUNK * s.rng.randint(2, 64)))] + s.good[2:],
    ),
    ("oversized total", ("refused (too_large)",), _oversized_total),
    ("huge embedding", ("refused (too_large)",), _huge_embedding),
    (
        "frame over the gRPC limit",
        ("rpc resource_exhausted",),
        lambda s: [s.good[0], _data(0, bytes(9 << 20))],
    ),
    (
        "wrong dtype",
        ("corrupt",),
        lambda s: _header_frame(spec=dict(dtype=s.rng.choice([0, 4, 99]))) + s.good[1:],
    ),
    (
        "fp16 shape, fp32 bytes",
        ("corrupt",),
        lambda s: _header_frame(spec=dict(dtype=pb.DTYPE_FLOAT16)) + s.good[1:],
    ),
    (
        "inconsistent shape",
        ("corrupt",),
        lambda s: _header_frame(spec=dict(shape=[N + s.rng.randint(1, 9)])) + s.good[1:],
    ),
    (
        "2-D params",
        ("refused (layout_mismatch)",),
        lambda s: _header_frame(spec=dict(shape=[N // 2, 2])) + s.good[1:],
    ),
    (
        "other model size",
        ("refused (layout_mismatch)",),
        lambda s: _frames(torch.randn(N + 8 * s.rng.randint(1, 50))),
    ),
    (
        "wrong layout",
        ("refused (layout_mismatch)",),
        lambda s: _frames(s.x, layout_fingerprint=s.rng.choice(["", "l2", "layout\x00"])),
    ),
    (
        "unknown swarm",
        ("refused (swarm_mismatch)",),
        lambda s: _frames(s.x, swarm_id=s.rng.choice(["", "evil-swarm"])),
    ),
    ("wrong peer", ("refused (refused)",), lambda s: _frames(s.x, peer_id=s.rng.choice(["", "good", "a"]))),
    (
        "negative round",
        ("refused (refused)",),
        lambda s: _header_frame(round=-s.rng.randint(1, 1 << 62)) + s.good[1:],
    ),
    (
        "absurd round",
        ("refused (refused)",),
        lambda s: _header_frame(round=s.rng.randint(1, 1 << 62)) + s.good[1:],
    ),
    ("NaN/Inf payload", ("rejected: non-finite",), lambda s: _frames(_nonfinite(s))),
    ("norm jump", ("rejected: norm jump",), lambda s: _frames(s.x * s.rng.choice([1e3, -50.0]))),
    ("norm collapse", ("rejected: norm collapse",), lambda s: _frames(s.x * s.rng.choice([0.0, 1e-4]))),
    (
        "garbage frames",
        ("corrupt", "truncated", "refused"),
        lambda s: [s.rng.randbytes(s.rng.randint(1, 3000)) for _ in range(s.rng.randint(1, 4))],
    ),
    (
        "garbage after header",
        ("corrupt", "truncated", "refused"),
        lambda s: s.good[:1] + [s.rng.randbytes(s.rng.randint(1, 3000))],
    ),
    ("refusal with status ok", ("refused",), lambda s: [refusal_frame(s.rng.choice([0, 1, 77]), "")]),
    ("frame after trailer", ("corrupt",), lambda s: s.good + [s.good[1]]),
    ("duplicate header", ("corrupt",), lambda s: s.good[:2] + [s.good[0]] + s.good[2:]),
    ("data before header", ("corrupt",), lambda s: s.good[1:]),
    ("offset gap", ("corrupt",), lambda s: [s.good[0], s.good[2]] + s.good[3:]),
    ("zero-length chunk", ("corrupt",), lambda s: [s.good[0], _data(0, b"")] + s.good[1:]),
    ("trailer miscounts", ("corrupt",), _trailer_miscounts),
    ("trailer short total", ("truncated",), _trailer_short_total),
    ("abort mid-stream", ("rpc internal", "rpc unknown", "rpc data_loss"), _abort_mid_stream),
    ("empty stream", ("truncated",), lambda s: []),
]


def _streams(rng: random.Random, x: torch.Tensor, count: int = 530):
    """(name, frames, abort code, allowed error prefixes) for malformed answers to a round-0 pull."""
    stream = _Stream(rng, x, _frames(x))
    for i in range(count):  # one case alive at a time: the 9 MiB frames are not kept
        name, kinds, build = _MALFORMED_STREAMS[i % len(_MALFORMED_STREAMS)]
        built = build(stream)
        frames, abort = built if isinstance(built, tuple) else (built, None)
        yield name, frames, abort, kinds


def _flip(frame: bytes, rng: random.Random) -> bytes:
    """One bit flipped in the payload part of a data frame (its CRC no longer matches)."""
    out = bytearray(frame)
    out[-rng.randint(1, CHUNK)] ^= 1 << rng.randrange(8)
    return bytes(out)


async def _mix_with_hostile(victim: GossipNode, hostile: Hostile, good: GossipNode | None):
    """Round 0 of ``victim`` mixing with the hostile server (and ``good`` beside it, if given):
    (the hostile neighbour's report, the mixed params)."""
    neighbours = {"evil": hostile.address} | ({"good": good.address} if good else {})
    weights = {"evil": 0.25} | ({"good": 0.25} if good else {})
    result = await victim.mix(0, neighbours, 1.0 - sum(weights.values()), weights)
    return next(r for r in result.neighbours if r.peer_id == "evil"), result.params


def _mixed_alone(own: torch.Tensor, theirs: torch.Tensor) -> torch.Tensor:
    """What the victim's mix is when the honest neighbour alone answers (the bits a hostile one must
    not change)."""
    mixer = RoundMixer(own, 0.75, {"good": 0.25})
    mixer.attach("good", theirs)
    mixer.progress("good", 4 * theirs.numel())
    return mixer.finish()[0]


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
        honest_mix = _mixed_alone(own, theirs)
        torch.testing.assert_close(honest_mix, mixing.weighted_average([own, theirs], [0.75, 0.25]))
        rss_before = _rss()
        # execute
        failures = []
        for i, (name, frames, abort, kinds) in enumerate(_streams(rng, own)):
            hostile.frames, hostile.abort = frames, abort
            with_honest = i % 10 == 0
            report, params = await _mix_with_hostile(victim, hostile, good if with_honest else None)
            expected = honest_mix if with_honest else own
            if report.answered or not report.error.startswith(kinds) or not torch.equal(params, expected):
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
