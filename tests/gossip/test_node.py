"""GossipNode over real gRPC on 127.0.0.1 (port 0): pulls, refusals, sync waits, async staleness, mixing."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest
import torch

from gossip import _grpc
from gossip.client import pull_timeout
from gossip.node import BindError, GossipNode, NodeConfig
from protocol import gossip_pb2 as pb
from protocol import gossip_pb2_grpc
from protocol.frames import MIN_CHUNK_BYTES

CHUNK = MIN_CHUNK_BYTES  # many chunks even for small test tensors


def _config(peer_id: str, **overrides) -> NodeConfig:
    values = dict(
        swarm_id="swarm", peer_id=peer_id, layout_fingerprint="layout", chunk_bytes=CHUNK, pull_deadline_s=5.0
    )
    values.update(overrides)
    return NodeConfig(**values)


@contextlib.asynccontextmanager
async def _nodes(*configs: NodeConfig):
    nodes = [await GossipNode.create(c) for c in configs]
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.close()


async def test_pull_returns_the_published_snapshot():
    async with _nodes(_config("a"), _config("b")) as (a, b):
        # prepare
        params, embedding = torch.randn(20_000), torch.randn(8)
        b.publish(params, round=0, embedding=embedding)
        # execute
        outcome = await a.pull("b", b.address, 0)
        # assert
        assert outcome.error is None
        assert torch.equal(outcome.snapshot.params, params)
        assert torch.equal(outcome.snapshot.embedding, embedding)
        assert outcome.bytes_in > params.numel() * 4


async def test_publish_copies_so_later_changes_do_not_leak():
    async with _nodes(_config("a"), _config("b")) as (a, b):
        # prepare
        params = torch.zeros(1000)
        b.publish(params, round=0)
        params += 1.0
        # execute
        outcome = await a.pull("b", b.address, 0)
        # assert
        assert torch.count_nonzero(outcome.snapshot.params) == 0


async def test_fp16_wire_and_mix_widens_to_fp32():
    async with _nodes(_config("a", wire_dtype="fp16"), _config("b")) as (a, b):
        # prepare
        xa, xb = torch.randn(10_000), torch.randn(10_000)
        a.publish(xa, 0)
        b.publish(xb, 0)
        # execute
        outcome = await a.pull("b", b.address, 0)
        result = await a.mix(0, {"b": b.address}, 0.5, {"b": 0.5})
        # assert
        assert outcome.snapshot.params.dtype == torch.float16
        assert outcome.bytes_in < xb.numel() * 4 * 0.6
        assert result.params.dtype == torch.float32
        torch.testing.assert_close(result.params, (xa + xb.half().float()) / 2)


async def test_hello_reports_identity_and_incompatibility():
    async with _nodes(_config("a"), _config("b"), _config("c", layout_fingerprint="other")) as (a, b, c):
        # prepare
        b.publish(torch.randn(4), round=3)
        # execute
        hello = await a.hello(b.address)
        mismatch = await c.hello(b.address)
        # assert
        assert hello.ok and hello.record.peer_id == "b" and hello.record.round == 3
        assert hello.record.address == b.address and "fp16" in hello.record.capabilities
        assert mismatch.status == pb.STATUS_LAYOUT_MISMATCH


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (dict(layout_fingerprint="other"), "refused (layout_mismatch)"),
        (dict(swarm_id="elsewhere"), "refused (swarm_mismatch)"),
        (dict(max_payload_bytes=1000), "refused (too_large)"),
    ],
)
async def test_incompatible_pulls_are_refused_over_grpc(overrides, expected):
    async with _nodes(_config("a", **overrides), _config("b")) as (a, b):
        # prepare
        b.publish(torch.randn(5000), 0)
        # execute
        outcome = await a.pull("b", b.address, 0)
        # assert
        assert outcome.snapshot is None
        assert outcome.error.startswith(expected), outcome.error


async def test_sync_pull_waits_for_the_round_without_polling():
    async with _nodes(_config("a"), _config("b")) as (a, b):
        # prepare
        b.publish(torch.zeros(100), 0)
        pull = asyncio.create_task(a.pull("b", b.address, 1))
        # poll until the server holds the request, waiting for round 1
        await asyncio.wait_for(_until(lambda: b._store.waiting or pull.done()), 5)
        assert not pull.done()
        # execute
        b.publish(torch.ones(100), 1)
        outcome = await pull
        # assert
        assert outcome.error is None and outcome.snapshot.header.round == 1
        assert torch.equal(outcome.snapshot.params, torch.ones(100))


async def _until(predicate):
    while not predicate():
        await asyncio.sleep(0.005)


async def test_sync_pull_for_a_future_round_refuses_not_yet_at_the_deadline():
    async with _nodes(_config("a", pull_deadline_s=0.5), _config("b")) as (a, b):
        # prepare
        b.publish(torch.zeros(100), 0)
        # execute
        outcome = await a.pull("b", b.address, 5)
        # assert
        assert outcome.snapshot is None and outcome.error.startswith("refused (not_yet)")
        assert outcome.seconds < 5.0


async def test_previous_round_is_still_served_and_older_ones_are_gone():
    async with _nodes(_config("a"), _config("b")) as (a, b):
        # prepare
        for r in range(3):
            b.publish(torch.full((100,), float(r)), r)
        # execute
        previous = await a.pull("b", b.address, 1)
        gone = await a.pull("b", b.address, 0)
        # assert
        assert torch.equal(previous.snapshot.params, torch.full((100,), 1.0))
        assert gone.error.startswith("refused (round_gone)")


async def test_async_mode_takes_the_newest_and_records_staleness():
    async with _nodes(_config("a", mode="async"), _config("b")) as (a, b):
        # prepare
        a.publish(torch.zeros(100), 5)
        b.publish(torch.ones(100), 2)
        # execute
        result = await a.mix(5, {"b": b.address}, 0.5, {"b": 0.5})
        # assert
        report = result.neighbours[0]
        assert report.answered and report.round == 2 and report.staleness == 3
        torch.testing.assert_close(result.params, torch.full((100,), 0.5))


async def test_async_pull_before_anything_is_published_is_refused():
    async with _nodes(_config("a", mode="async"), _config("b")) as (a, b):
        # execute
        outcome = await a.pull("b", b.address, 0)
        # assert
        assert outcome.error.startswith("refused (no_snapshot)")


async def test_mix_weights_embedding_distance_and_accounting():
    async with _nodes(_config("a"), _config("b"), _config("c")) as (a, b, c):
        # prepare
        xs = {n.config.peer_id: torch.randn(3000) for n in (a, b, c)}
        for n, emb in ((a, torch.ones(4)), (b, torch.zeros(4)), (c, None)):
            n.publish(xs[n.config.peer_id], 0, embedding=emb)
        # execute
        result = await a.mix(0, {"b": b.address, "c": c.address}, 0.5, {"b": 0.25, "c": 0.25})
        # assert
        torch.testing.assert_close(result.params, 0.5 * xs["a"] + 0.25 * xs["b"] + 0.25 * xs["c"])
        torch.testing.assert_close(result.embedding, torch.full((4,), 0.5))
        assert [e.tolist() for e in result.embeddings] == [[1.0] * 4, [0.0] * 4]  # own first; c has none
        expected = float(((xs["a"] - (xs["b"] + xs["c"]) / 2) ** 2).sum())
        assert result.neighbour_distance_sq == pytest.approx(expected, rel=1e-4)
        assert result.answered == 2 and result.self_weight == 0.5
        assert result.bytes_in == sum(r.bytes_in for r in result.neighbours) > 2 * 3000 * 4
        assert result.params.data_ptr() != xs["a"].data_ptr()


async def test_mix_with_an_unreachable_neighbour_renormalises():
    async with _nodes(_config("a", pull_deadline_s=2.0), _config("b"), _config("gone")) as (a, b, gone):
        # prepare
        dead_address = gone.address
        await gone.close()
        xa, xb = torch.randn(1000), torch.randn(1000)
        a.publish(xa, 0)
        b.publish(xb, 0)
        # execute
        result = await a.mix(0, {"b": b.address, "gone": dead_address}, 1 / 3, {"b": 1 / 3, "gone": 1 / 3})
        # assert
        lost = next(r for r in result.neighbours if r.peer_id == "gone")
        assert not lost.answered and lost.weight == 0.0 and lost.error
        assert result.self_weight == pytest.approx(2 / 3)
        torch.testing.assert_close(result.params, xa * 2 / 3 + xb / 3)


async def test_a_neighbour_that_moved_leaves_no_channel_to_its_old_address():
    async with _nodes(_config("a"), _config("b"), _config("b"), _config("c")) as (a, b_old, b_new, c):
        # prepare: "b" answered at one address; "c" is pulled too
        for node in (b_old, b_new, c):
            node.publish(torch.zeros(100), 0)
        assert (await a.pull("b", b_old.address, 0)).error is None
        assert (await a.pull("c", c.address, 0)).error is None
        # execute: "b" restarted at another address
        outcome = await a.pull("b", b_new.address, 0)
        # assert: its old address's channel is gone, the others stay
        assert outcome.error is None
        assert sorted(a.channel_addresses) == sorted([b_new.address, c.address])


async def test_a_channel_another_peer_now_uses_is_kept_when_its_old_owner_moves():
    async with _nodes(_config("a"), _config("x"), _config("y")) as (a, x, y):
        # prepare: "b" was at x's address, then "c" took that address (a freed port re-used)
        x.publish(torch.zeros(100), 0)
        y.publish(torch.zeros(100), 0)
        await a.pull("b", x.address, 0)
        await a.pull("c", x.address, 0)
        # execute: "b" now answers at y's address
        await a.pull("b", y.address, 0)
        # assert: the channel "c" uses stays open
        assert sorted(a.channel_addresses) == sorted([x.address, y.address])


async def test_mix_requires_a_published_round_and_matching_ids():
    async with _nodes(_config("a")) as (a,):
        # execute / assert
        with pytest.raises(ValueError, match="not been published"):
            await a.mix(0, {}, 1.0, {})
        a.publish(torch.zeros(3), 0)
        with pytest.raises(ValueError, match="different peers"):
            await a.mix(0, {"b": "127.0.0.1:1"}, 1.0, {})


async def test_binding_a_taken_port_fails_clearly():
    async with _nodes(_config("a")) as (a,):
        # execute / assert
        with pytest.raises(BindError, match="cannot bind"):
            await GossipNode.create(_config("b", listen=a.address))


async def test_stream_is_readable_by_a_plain_protobuf_client():
    async with _nodes(_config("b")) as (b,):
        # prepare
        params = torch.randn(3000)
        b.publish(params, 0)
        request = pb.PullRequest(
            swarm_id="swarm",
            peer_id="x",
            round=0,
            mode=pb.PULL_MODE_EXACT_ROUND,
            layout_fingerprint="layout",
            wire_dtype=pb.DTYPE_FLOAT32,
        )
        # execute: the generated stub decodes every frame with protobuf itself
        async with grpc.aio.insecure_channel(b.address, options=_grpc.CHANNEL_OPTIONS) as channel:
            chunks = [c async for c in gossip_pb2_grpc.GossipStub(channel).Pull(request, timeout=5)]
        # assert
        assert chunks[0].WhichOneof("body") == "header" and chunks[-1].WhichOneof("body") == "trailer"
        payload = b"".join(c.data.payload for c in chunks[1:-1])
        assert torch.equal(torch.frombuffer(bytearray(payload), dtype=torch.float32), params)


async def test_recycled_result_buffer_is_reused_and_fully_overwritten():
    async with _nodes(_config("a"), _config("b")) as (a, b):
        # prepare
        xa, xb = torch.randn(5000), torch.randn(5000)
        a.publish(xa, 0)
        b.publish(xb, 0)
        first = await a.mix(0, {"b": b.address}, 0.5, {"b": 0.5})
        a.recycle(first.params)
        first.params.fill_(float("nan"))  # stale content must not leak into the next round
        a.publish(xa, 1)
        b.publish(xb, 1)
        # execute
        second = await a.mix(1, {"b": b.address}, 0.5, {"b": 0.5})
        # assert
        assert second.params.data_ptr() == first.params.data_ptr()
        torch.testing.assert_close(second.params, (xa + xb) / 2)


def test_a_pull_leaves_a_margin_of_its_round_deadline_for_the_mix():
    # execute / assert: 5 % of the deadline, at most a quarter second
    assert pull_timeout(0.5) == 0.475
    assert pull_timeout(10.0) == 9.5
    assert pull_timeout(100.0) == 99.5
