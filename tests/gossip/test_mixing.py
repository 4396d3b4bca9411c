"""Mixing: weight rules, stochasticity, spectral gaps, renormalisation and the flat-buffer average."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import mixing, topology

UNDIRECTED = [
    "ring",
    "torus",
    "full",
    "random_regular:k=3",
    "erdos_renyi:p=0.4",
    "exponential",
    "ring:time_varying=true",
    "random_regular:k=4,time_varying=true",
]


def ids(n: int) -> list[str]:
    return [f"p{i:02d}" for i in range(n)]


def gap_of_ring_mh(n: int) -> float:
    """Ring with MH weights: all degrees 2, so W = circulant(1/3, 1/3, 1/3) with eigenvalues
    1/3 + 2/3 cos(2 pi k / n); the gap is 1 - the largest modulus over k = 1..n-1."""
    return 1 - max(abs(1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / n)) for k in range(1, n))


def flat(row: tuple[float, dict[str, float]]) -> dict[str, float]:
    """(W_ii, {j: W_ij}) as one flat dict with the self-weight under "self", for pytest.approx."""
    self_w, weights = row
    return {"self": self_w, **weights}


# --- weight rules ---------------------------------------------------------------------------------


def test_rules_on_a_path():
    path = nx.path_graph(["a", "b", "c"])  # degrees 1, 2, 1
    assert flat(mixing.mixing_row(path, "a")) == pytest.approx({"self": 2 / 3, "b": 1 / 3})
    assert flat(mixing.mixing_row(path, "b")) == pytest.approx({"self": 1 / 3, "a": 1 / 3, "c": 1 / 3})
    assert flat(mixing.mixing_row(path, "a", "uniform")) == pytest.approx({"self": 1 / 2, "b": 1 / 2})
    third = pytest.approx({"self": 1 / 3, "a": 1 / 3, "c": 1 / 3})
    assert flat(mixing.mixing_row(path, "b", "uniform")) == third


def test_self_loops_are_ignored():
    path = nx.path_graph(["a", "b", "c"])
    looped = path.copy()
    looped.add_edges_from([("a", "a"), ("b", "b")])
    for rule in mixing.RULES:
        assert np.allclose(mixing.mixing_matrix(looped, rule), mixing.mixing_matrix(path, rule))


def test_unknown_rule_and_node_raise():
    graph = nx.path_graph(["a", "b"])
    with pytest.raises(ValueError, match="unknown mixing rule 'push_sum'"):
        mixing.mixing_row(graph, "a", "push_sum")
    with pytest.raises(ValueError, match="not in the graph"):
        mixing.mixing_row(graph, "z")


@pytest.mark.parametrize("text", UNDIRECTED)
@pytest.mark.parametrize("n", [1, 2, 3, 6, 11])
@pytest.mark.parametrize("rule", mixing.RULES)
def test_w_is_row_stochastic_nonnegative_and_respects_the_graph(text, n, rule):
    graph = topology.parse(text).graph(ids(n), round=2, seed=1)
    w = mixing.mixing_matrix(graph, rule)
    assert np.all(w >= 0)
    assert np.allclose(w.sum(axis=1), 1.0)
    adjacency = nx.to_numpy_array(graph, nodelist=sorted(graph.nodes)) + np.eye(n)
    assert np.all(w[adjacency == 0] == 0)
    assert np.all(np.diag(w) > 0)  # aperiodic: every peer keeps part of its own model


@pytest.mark.parametrize("text", UNDIRECTED)
@pytest.mark.parametrize("n", [2, 5, 12])
def test_metropolis_hastings_is_symmetric_and_doubly_stochastic(text, n):
    w = mixing.mixing_matrix(topology.parse(text).graph(ids(n), round=0, seed=3))
    assert np.allclose(w, w.T)
    assert np.allclose(w.sum(axis=0), 1.0)


def test_uniform_is_not_doubly_stochastic_on_an_irregular_graph():
    w = mixing.mixing_matrix(nx.star_graph(4), "uniform")
    assert np.allclose(w.sum(axis=1), 1.0)
    assert not np.allclose(w.sum(axis=0), 1.0)


def test_directed_graphs_pull_from_successors_uniformly():
    graph = nx.DiGraph([("a", "b"), ("a", "c"), ("b", "c"), ("c", "a")])
    third = pytest.approx({"self": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    assert flat(mixing.mixing_row(graph, "a", "uniform")) == third
    # b's predecessor a is not in b's row: b only pulls from c
    assert flat(mixing.mixing_row(graph, "b", "uniform")) == pytest.approx({"self": 1 / 2, "c": 1 / 2})
    w = mixing.mixing_matrix(graph, "uniform")
    assert np.allclose(w.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="Metropolis-Hastings weights need an undirected graph"):
        mixing.mixing_row(graph, "a")


def test_one_peer_exponential_uniform_weights_are_doubly_stochastic():
    spec = topology.parse("exponential_one_peer")
    for n in (5, 8):
        for r in range(3):
            w = mixing.mixing_matrix(spec.graph(ids(n), round=r, seed=0), "uniform")
            assert np.allclose(w.sum(axis=0), 1.0) and np.allclose(w.sum(axis=1), 1.0)
            assert np.allclose(w[w > 0], 0.5)


# --- spectral gap ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 4, 8, 13])
def test_ring_spectral_gap_matches_closed_form(n):
    w = mixing.mixing_matrix(topology.parse("ring").graph(ids(n), round=0, seed=0))
    assert np.allclose(w[w > 0], 1 / 3)
    assert mixing.spectral_gap(w) == pytest.approx(gap_of_ring_mh(n))


def test_closed_form_values_for_n_4_and_8():
    """Independent of the eigensolver: n=4 has moduli 1/3, 1/3, 1/3; n=8 has 1/3 + sqrt(2)/3 on top."""
    assert gap_of_ring_mh(4) == pytest.approx(2 / 3)
    assert gap_of_ring_mh(8) == pytest.approx(1 - (1 + math.sqrt(2)) / 3)


def test_full_graph_uniform_gap_is_one_and_disconnected_gap_is_zero():
    for n in (2, 5, 9):
        w = mixing.mixing_matrix(topology.parse("full").graph(ids(n), round=0, seed=0), "uniform")
        assert np.allclose(w, 1.0 / n)
        assert mixing.spectral_gap(w) == pytest.approx(1.0)
    two_pairs = nx.Graph([("a", "b"), ("c", "d")])
    assert mixing.spectral_gap(mixing.mixing_matrix(two_pairs)) == pytest.approx(0.0, abs=1e-12)
    assert mixing.spectral_gap(np.ones((1, 1))) == 1.0
    with pytest.raises(ValueError, match="square"):
        mixing.spectral_gap(np.ones((2, 3)))


def test_non_symmetric_w_uses_the_general_spectrum():
    # directed 3-cycle pulled with (1/2, 1/2): eigenvalues (1 + w)/2 for the cube roots of unity w
    graph = nx.DiGraph([("a", "b"), ("b", "c"), ("c", "a")])
    expected = 1 - abs((1 + np.exp(2j * np.pi / 3)) / 2)
    assert mixing.spectral_gap(mixing.mixing_matrix(graph, "uniform")) == pytest.approx(expected)


# --- consensus ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["ring", "torus", "random_regular:k=3", "erdos_renyi:p=0.3", "exponential"])
def test_mixing_preserves_the_average_and_contracts_by_the_spectral_gap(text):
    w = mixing.mixing_matrix(topology.parse(text).graph(ids(12), round=0, seed=7))
    gap = mixing.spectral_gap(w)
    assert gap > 0
    x = np.random.default_rng(0).normal(size=(12, 5))
    mean = x.mean(axis=0)
    disagreement = np.linalg.norm(x - mean)
    for _ in range(30):
        x = w @ x
        assert np.allclose(x.mean(axis=0), mean)
        new = np.linalg.norm(x - mean)
        assert new <= (1 - gap) * disagreement + 1e-12
        disagreement = new
    assert disagreement < 0.5 * np.linalg.norm(np.random.default_rng(0).normal(size=(12, 5)) - mean)


def test_one_gossip_round_with_flat_buffers_equals_w_times_x():
    graph = topology.parse("random_regular:k=3").graph(ids(8), round=0, seed=2)
    nodes = sorted(graph.nodes)
    x = {n: torch.randn(1000, generator=torch.Generator().manual_seed(i)) for i, n in enumerate(nodes)}
    w = mixing.mixing_matrix(graph)
    stacked = torch.stack([x[n] for n in nodes]).double().numpy()
    for i, node in enumerate(nodes):
        self_w, row = mixing.mixing_row(graph, node)
        mixed = mixing.weighted_average([x[node], *(x[j] for j in row)], [self_w, *row.values()])
        assert np.allclose(mixed.numpy(), w[i] @ stacked, atol=1e-5)


# --- renormalisation ------------------------------------------------------------------------------


def test_renormalise_returns_lost_weight_to_self():
    self_w, row = mixing.renormalise(0.4, {"a": 0.3, "b": 0.2, "c": 0.1}, answered={"a", "c", "stranger"})
    assert row == {"a": 0.3, "c": 0.1}
    assert self_w == pytest.approx(0.6)
    assert flat(mixing.renormalise(0.4, {"a": 0.6}, answered=())) == pytest.approx({"self": 1.0})


@given(
    degree=st.integers(min_value=0, max_value=8),
    answered=st.sets(st.integers(min_value=0, max_value=8)),
    rule=st.sampled_from(mixing.RULES),
)
@settings(max_examples=50, deadline=None)
def test_renormalised_rows_stay_stochastic(degree, answered, rule):
    graph = nx.star_graph(degree)
    graph = nx.relabel_nodes(graph, {k: f"n{k}" for k in graph.nodes})
    self_w, row = mixing.mixing_row(graph, "n0", rule)
    kept_self, kept = mixing.renormalise(self_w, row, {f"n{k}" for k in answered})
    assert set(kept) == set(row) & {f"n{k}" for k in answered}
    assert kept_self + sum(kept.values()) == pytest.approx(1.0)
    assert all(kept[j] == row[j] for j in kept)
    assert kept_self >= self_w


# --- weighted average of flat buffers -------------------------------------------------------------


def _buffers(dtype: torch.dtype, count: int = 3, size: int = 20_000) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(size, generator=gen).to(dtype) for _ in range(count)]


def _reference(buffers: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    return sum(w * b.double() for b, w in zip(buffers, weights))


def test_fp16_inputs_are_averaged_in_float32():
    buffers, weights = _buffers(torch.float16), [0.1, 0.3, 0.6]
    result = mixing.weighted_average(buffers, weights)
    assert result.dtype == torch.float32
    # float32 accumulation of exactly representable fp16 inputs: error at float32 rounding level
    assert (result.double() - _reference(buffers, weights)).abs().max() < 1e-6


def test_out_may_alias_the_first_buffer():
    buffers, weights = _buffers(torch.float32), [0.5, 0.25, 0.25]
    expected = _reference(buffers, weights)
    local = buffers[0]
    result = mixing.weighted_average(buffers, weights, out=local)
    assert result is local
    assert torch.allclose(local.double(), expected, atol=1e-6)


def test_out_may_alias_a_later_buffer():
    buffers, weights = _buffers(torch.float32), [0.2, 0.5, 0.3]
    expected = _reference(buffers, weights)
    result = mixing.weighted_average(buffers, weights, out=buffers[2])
    assert result is buffers[2]
    assert torch.allclose(result.double(), expected, atol=1e-6)


def test_fp16_out_aliasing_the_first_buffer():
    buffers, weights = _buffers(torch.float16), [0.5, 0.25, 0.25]
    expected = _reference(buffers, weights)
    result = mixing.weighted_average(buffers, weights, out=buffers[0])
    assert result.dtype == torch.float16 and result is buffers[0]
    assert torch.allclose(result.double(), expected, atol=2e-3)


def test_mixed_dtypes_and_inputs_left_untouched():
    buffers = [_buffers(torch.float32, 1)[0], _buffers(torch.float16, 1)[0]]
    copies = [b.clone() for b in buffers]
    result = mixing.weighted_average(buffers, [0.75, 0.25])
    assert torch.allclose(result.double(), _reference(buffers, [0.75, 0.25]), atol=1e-6)
    assert all(torch.equal(b, c) for b, c in zip(buffers, copies))


def test_weighted_average_rejects_bad_input():
    a, b = torch.zeros(4), torch.zeros(5)
    with pytest.raises(ValueError, match="one weight per buffer"):
        mixing.weighted_average([a], [0.5, 0.5])
    with pytest.raises(ValueError, match="one weight per buffer"):
        mixing.weighted_average([], [])
    with pytest.raises(ValueError, match="shapes differ"):
        mixing.weighted_average([a, b], [0.5, 0.5])
    with pytest.raises(ValueError, match="out has shape"):
        mixing.weighted_average([a, a], [0.5, 0.5], out=torch.zeros(3))
