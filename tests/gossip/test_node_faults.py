"""A neighbour that dies, stops or hangs mid-round costs at most the pull deadline, and the round
completes with the others: our buffer ends fully mixed over those who answered, never half-applied."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gossip.node import GossipNode, NodeConfig

ROOT = Path(__file__).resolve().parents[2]
BIG = 8 * 1024 * 1024  # 32 MiB of float32: far more than gRPC's flow-control windows hold in flight

_SERVE = """
import asyncio, sys, torch
from gossip.node import GossipNode, NodeConfig
async def main():
    config = NodeConfig(swarm_id="swarm", peer_id="victim", layout_fingerprint="layout")
    node = await GossipNode.create(config)
    node.publish(torch.ones(int(sys.argv[1])), 0)
    print(node.address, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _config(peer_id: str, **overrides) -> NodeConfig:
    values = dict(swarm_id="swarm", peer_id=peer_id, layout_fingerprint="layout", pull_deadline_s=20.0)
    values.update(overrides)
    return NodeConfig(**values)


def _kill_on_header(node: GossipNode, victim: str, action) -> None:
    """Run ``action`` when ``victim``'s header has been accepted, i.e. mid-stream (test hook)."""
    original = node._reuse_buffer

    def reuse_buffer(peer_id):
        allocate = original(peer_id)
        if peer_id != victim:
            return allocate

        def on_header(nbytes):
            action()
            return allocate(nbytes)

        return on_header

    node._reuse_buffer = reuse_buffer


async def _mix_two(node: GossipNode, survivor: GossipNode, victim_address: str):
    return await node.mix(
        0, {"b": survivor.address, "victim": victim_address}, 1 / 3, {"b": 1 / 3, "victim": 1 / 3}
    )


def _assert_mixed_without_victim(result, own: torch.Tensor, survivor: torch.Tensor) -> None:
    victim = next(r for r in result.neighbours if r.peer_id == "victim")
    assert not victim.answered and victim.weight == 0.0 and victim.error, victim
    assert result.answered == 1
    torch.testing.assert_close(result.params, own * 2 / 3 + survivor / 3, rtol=0, atol=1e-6)


@pytest.mark.slow
async def test_neighbour_process_sigkilled_mid_stream(reaper):
    # prepare: the victim is a separate process serving 32 MiB of ones
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(BIG)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    reaper.append(proc)
    victim_address = (await asyncio.to_thread(proc.stdout.readline)).strip()
    assert victim_address, "victim process did not start"
    a, b = await GossipNode.create(_config("a")), await GossipNode.create(_config("b"))
    try:
        own, theirs = torch.zeros(BIG), torch.full((BIG,), 3.0)
        a.publish(own, 0)
        b.publish(theirs, 0)
        _kill_on_header(a, "victim", lambda: os.killpg(proc.pid, signal.SIGKILL))
        # execute
        result = await _mix_two(a, b, victim_address)
        # assert
        assert proc.wait(timeout=10) == -signal.SIGKILL
        _assert_mixed_without_victim(result, own, theirs)
        assert result.pull_seconds < a.config.pull_deadline_s
    finally:
        await a.close()
        await b.close()


async def test_neighbour_stopped_mid_stream():
    # prepare
    nodes = [await GossipNode.create(_config(p, close_grace_s=0.0)) for p in ("a", "b", "victim")]
    a, b, victim = nodes
    try:
        own, theirs = torch.zeros(BIG), torch.full((BIG,), 3.0)
        a.publish(own, 0)
        b.publish(theirs, 0)
        victim.publish(torch.ones(BIG), 0)
        stopping = []
        _kill_on_header(a, "victim", lambda: stopping.append(asyncio.ensure_future(victim.close())))
        # execute
        result = await _mix_two(a, b, victim.address)
        await asyncio.gather(*stopping)
        # assert
        assert stopping, "the victim's header never arrived"
        _assert_mixed_without_victim(result, own, theirs)
    finally:
        for node in nodes:
            await node.close()


async def test_hung_neighbour_costs_at_most_the_deadline():
    # prepare: a TCP port whose backlog accepts connections that nobody ever answers
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    deadline = 1.0
    a, b = (
        await GossipNode.create(_config("a", pull_deadline_s=deadline)),
        await GossipNode.create(_config("b")),
    )
    try:
        own, theirs = torch.zeros(1000), torch.full((1000,), 3.0)
        a.publish(own, 0)
        b.publish(theirs, 0)
        # execute
        result = await asyncio.wait_for(_mix_two(a, b, f"127.0.0.1:{hole.getsockname()[1]}"), 30)
        # assert
        _assert_mixed_without_victim(result, own, theirs)
        victim = next(r for r in result.neighbours if r.peer_id == "victim")
        assert victim.error.startswith("deadline")
        assert victim.seconds >= deadline * 0.9
    finally:
        hole.close()
        await a.close()
        await b.close()


async def test_neighbour_that_never_publishes_the_round_costs_the_deadline():
    # prepare
    deadline = 1.0
    nodes = [await GossipNode.create(_config(p, pull_deadline_s=deadline)) for p in ("a", "b", "victim")]
    a, b, victim = nodes
    try:
        own, theirs = torch.zeros(1000), torch.full((1000,), 3.0)
        a.publish(own, 0)
        b.publish(theirs, 0)
        # execute
        result = await asyncio.wait_for(_mix_two(a, b, victim.address), 30)
        # assert
        _assert_mixed_without_victim(result, own, theirs)
        assert next(r for r in result.neighbours if r.peer_id == "victim").error.startswith(
            "refused (not_yet)"
        )
    finally:
        for node in nodes:
            await node.close()


@pytest.mark.parametrize("wire_dtype", ["fp32", "fp16"])
async def test_closing_a_node_wakes_its_waiting_pullers(wire_dtype):
    # prepare
    a, b = await GossipNode.create(_config("a", wire_dtype=wire_dtype)), await GossipNode.create(_config("b"))
    try:
        pull = asyncio.create_task(a.pull("b", b.address, 0))
        while not b._store.waiting and not pull.done():
            await asyncio.sleep(0.005)
        # execute
        await b.close()
        outcome = await asyncio.wait_for(pull, 30)
        # assert
        assert outcome.snapshot is None
        assert outcome.error.startswith(("refused (refused)", "unavailable", "cancelled")), outcome.error
    finally:
        await a.close()
        await b.close()
