"""Compressed (CHOCO) gossip between real GossipNodes on 127.0.0.1: steps instead of parameters,
the network average kept, full copies after a restart, plain neighbours, hostile steps refused."""

from __future__ import annotations

import pytest
import torch

from gossip.choco import Delta
from gossip.choco_round import ChocoConfig, ChocoState
from gossip.node import GossipNode
from protocol.codec import encoded_bytes
from tests.gossip.test_node import _config, _nodes

DIM = 40_000


async def _round(nodes: list[GossipNode], x: list[torch.Tensor], r: int, w: float) -> list[torch.Tensor]:
    """Every node publishes round r, then mixes with all the others (weight w each)."""
    for node, xi in zip(nodes, x):
        node.publish(xi, r)
    results = []
    for node in nodes:
        others = {o.config.peer_id: o.address for o in nodes if o is not node}
        results.append(await node.mix(r, others, 1 - w * len(others), dict.fromkeys(others, w)))
    return results


async def test_steps_keep_the_average_reach_consensus_and_cost_a_quarter_of_the_bytes():
    # prepare: 3 nodes, all-to-all weights 1/3 (symmetric, doubly stochastic), int8 steps
    configs = [_config(p, compression="int8", choco_gamma=0.8) for p in "abc"]
    async with _nodes(*configs) as nodes:
        gen = torch.Generator().manual_seed(0)
        x = [torch.randn(DIM, generator=gen) for _ in nodes]
        mean, spread0 = torch.stack(x).mean(0), max((xi - torch.stack(x).mean(0)).norm() for xi in x)
        # execute
        first = await _round(nodes, x, 0, 1 / 3)
        x = [r.params for r in first]
        later = []
        for r in range(1, 25):
            results = await _round(nodes, x, r, 1 / 3)
            x = [res.params for res in results]
            later.append(results)
        # assert: round 0 carried full copies, later rounds steps of exactly the int8 size
        assert all(n.bytes_in > DIM * 4 for res in first for n in res.neighbours)
        step = encoded_bytes("int8", DIM)
        assert all(n.answered and n.bytes_in < step + 1024 for res in later[-1] for n in res.neighbours)
        torch.testing.assert_close(torch.stack(x).mean(0), mean, atol=1e-4, rtol=0)
        assert max((xi - mean).norm() for xi in x) < 0.05 * spread0


async def test_a_restarted_neighbour_is_taken_in_full_never_stepped_from_the_old_copy():
    async with _nodes(_config("a", compression="int8")) as (a,):
        # prepare: a holds b's public copy at round 4
        async with _nodes(_config("b", compression="int8")) as (b,):
            for r in range(5):
                a.publish(torch.zeros(DIM), r)
                b.publish(torch.full((DIM,), float(r)), r)
                await a.mix(r, {"b": b.address}, 0.5, {"b": 0.5})
        old_copy = a._choco.holds("b")
        # execute: b restarts (a new public copy) at round 4, then steps to round 5 from its round 4
        async with _nodes(_config("b", compression="int8")) as (b2,):
            b2.publish(torch.full((DIM,), 7.0), 4)
            b2.publish(torch.full((DIM,), 7.0), 5)
            a.publish(torch.zeros(DIM), 5)
            result = await a.mix(5, {"b": b2.address}, 0.5, {"b": 0.5})
            new_copy = b2._store.get(5)
    # assert: same base round, other copy: b2 sent its public copy in full, now a's replica
    assert old_copy[1] == new_copy.delta.base == 4 and old_copy[0] != new_copy.copy_id
    report = result.neighbours[0]
    assert report.answered and report.bytes_in > DIM * 4
    assert a._choco.holds("b") == (new_copy.copy_id, 5)
    assert torch.equal(a._choco.replicas["b"].value, new_copy.public)


async def test_a_plain_neighbour_is_mixed_with_its_parameters():
    async with _nodes(_config("a", compression="topk", topk_fraction=0.05), _config("b")) as (a, b):
        # prepare
        a.publish(torch.zeros(DIM), 0)
        b.publish(torch.ones(DIM), 0)
        # execute
        result = await a.mix(0, {"b": b.address}, 0.5, {"b": 0.5})
        # assert: b knows no codec and sent its fp32 parameters; x_a + γ·w·(x_b − x̂_a)
        assert result.neighbours[0].answered
        torch.testing.assert_close(result.params, torch.full((DIM,), 0.5 * 0.5))
        assert "b" not in a._choco.replicas


async def test_a_step_that_does_not_apply_costs_the_round_and_the_replica():
    async with _nodes(_config("a", compression="int8"), _config("b", compression="int8")) as (a, b):
        # prepare: a holds b's copy at round 0, then its replica is corrupted to another base
        a.publish(torch.zeros(DIM), 0)
        b.publish(torch.ones(DIM), 0)
        await a.mix(0, {"b": b.address}, 0.5, {"b": 0.5})
        b.publish(2 * torch.ones(DIM), 1)
        a.publish(torch.zeros(DIM), 1)
        state: ChocoState = a._choco
        await b.ready()  # the step's frames are built at publish: replace them, not just the step
        snapshot = b._store.get(1)
        real = snapshot.delta
        snapshot.delta = Delta(real.copy_id, real.base, real.version, b"\x00" * len(real.payload))
        snapshot._encoded.clear()
        # execute
        result = await a.mix(1, {"b": b.address}, 0.5, {"b": 0.5})
        # assert: refused as corrupt, nothing mixed, the replica dropped (next pull is in full)
        report = result.neighbours[0]
        assert not report.answered and "corrupt" in report.error
        assert torch.equal(result.params, torch.zeros(DIM))
        assert "b" not in state.replicas


def test_bad_choco_settings_are_refused():
    for kwargs in (
        {"codec": "zip"},
        {"codec": "topk", "topk_fraction": 0.0},
        {"codec": "int8", "gamma": 1.5},
    ):
        with pytest.raises(ValueError):
            ChocoConfig(**kwargs)
    with pytest.raises(ValueError, match="compression"):
        _config("a", compression="gzip")
