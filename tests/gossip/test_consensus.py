"""Several GossipNodes over real gRPC reach consensus, at the rate the spectral gap promises."""

from __future__ import annotations

import asyncio

import networkx as nx
import numpy as np
import pytest
import torch

from gossip import mixing, topology
from gossip.node import GossipNode, NodeConfig


async def _swarm(n: int, **overrides) -> dict[str, GossipNode]:
    nodes = {}
    for k in range(n):
        peer = f"p{k}"
        cfg = dict(
            swarm_id="swarm",
            peer_id=peer,
            layout_fingerprint="layout",
            pull_deadline_s=20.0,
            chunk_bytes=4096,
        )
        cfg.update(overrides)
        nodes[peer] = await GossipNode.create(NodeConfig(**cfg))
    return nodes


async def _round(nodes, graph, values, r, rule="metropolis_hastings"):
    """Every node publishes round r and mixes with its graph neighbours, all at once."""
    for peer, node in nodes.items():
        node.publish(values[peer], r)

    async def one(peer):
        self_w, weights = mixing.mixing_row(graph, peer, rule)
        return await nodes[peer].mix(r, {j: nodes[j].address for j in weights}, self_w, weights)

    results = await asyncio.gather(*(one(peer) for peer in nodes))
    return {peer: res for peer, res in zip(nodes, results)}


def _stack(values):
    return torch.stack([values[p] for p in sorted(values)]).double()


def _disagreement(values) -> float:
    x = _stack(values)
    return float((x - x.mean(dim=0)).norm())


@pytest.mark.parametrize("n", [6])
async def test_ring_reaches_consensus_at_the_spectral_rate(n):
    # prepare
    nodes = await _swarm(n)
    try:
        ids = sorted(nodes)
        graph = topology.parse("ring").graph(ids, 0, 0)
        lambda_2 = 1.0 - mixing.spectral_gap(mixing.mixing_matrix(graph))
        torch.manual_seed(0)
        values = {p: torch.randn(5000) for p in ids}
        mean = _stack(values).mean(dim=0)
        errors = [_disagreement(values)]
        # execute
        for r in range(8):
            results = await _round(nodes, graph, values, r)
            assert all(res.answered == 2 for res in results.values())
            values = {p: res.params for p, res in results.items()}
            errors.append(_disagreement(values))
        # assert: shrinks every round, at least as fast as |lambda_2| (W symmetric), average kept
        for before, after in zip(errors, errors[1:]):
            assert after < before
            assert after <= lambda_2 * before * (1 + 1e-4)
        assert errors[-1] < 0.1 * errors[0]
        torch.testing.assert_close(_stack(values).mean(dim=0), mean, rtol=0, atol=1e-5)
    finally:
        for node in nodes.values():
            await node.close()


async def test_metropolis_hastings_preserves_the_average_on_an_irregular_graph():
    # prepare: a star plus a tail (degrees 1..4): MH is still doubly stochastic
    nodes = await _swarm(5)
    try:
        ids = sorted(nodes)
        graph = nx.relabel_nodes(nx.Graph([(0, 1), (0, 2), (0, 3), (0, 4), (3, 4)]), dict(enumerate(ids)))
        torch.manual_seed(1)
        values = {p: torch.randn(3000) for p in ids}
        mean = _stack(values).mean(dim=0)
        w = mixing.mixing_matrix(graph)
        expected = torch.from_numpy(w) @ _stack(values)
        # execute
        results = await _round(nodes, graph, values, 0)
        # assert
        mixed = _stack({p: res.params for p, res in results.items()})
        torch.testing.assert_close(mixed, expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(mixed.mean(dim=0), mean, rtol=0, atol=1e-5)
        assert np.allclose(w.sum(axis=0), 1.0)
        for peer, res in results.items():
            assert res.self_weight == pytest.approx(w[ids.index(peer), ids.index(peer)])
    finally:
        for node in nodes.values():
            await node.close()


async def test_fp16_wire_still_converges():
    # prepare
    nodes = await _swarm(4, wire_dtype="fp16")
    try:
        ids = sorted(nodes)
        graph = topology.parse("ring").graph(ids, 0, 0)
        torch.manual_seed(2)
        values = {p: torch.randn(2000) for p in ids}
        start = _disagreement(values)
        # execute
        for r in range(6):
            values = {p: res.params for p, res in (await _round(nodes, graph, values, r)).items()}
        # assert: fp16 rounding (~1e-3 relative) bounds how close they get, not whether they get there
        assert _disagreement(values) < 0.05 * start
    finally:
        for node in nodes.values():
            await node.close()
