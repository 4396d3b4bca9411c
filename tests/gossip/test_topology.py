"""Topology: spec parsing, graph shapes, determinism without a coordinator, and graph statistics."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import mixing, topology

SPECS = [
    "ring",
    "torus",
    "full",
    "random_regular:k=4",
    "erdos_renyi:p=0.3",
    "exponential",
    "exponential_one_peer",
]
TIME_VARYING = [s + (",time_varying=true" if ":" in s else ":time_varying=true") for s in SPECS]
ALL_SPECS = SPECS + TIME_VARYING
RANDOM_SPECS = ["random_regular:k=4", "erdos_renyi:p=0.3"]


def ids(n: int) -> list[str]:
    return [f"peer-{i:02d}" for i in range(n)]


def edge_set(graph: nx.Graph) -> set:
    if graph.is_directed():
        return set(graph.edges)
    return {frozenset(e) for e in graph.edges}


# --- spec parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ALL_SPECS)
def test_str_round_trips_through_parse(text):
    spec = topology.parse(text)
    assert topology.parse(str(spec)) == spec
    assert str(topology.parse(str(spec))) == str(spec)


def test_parse_reads_the_parameters():
    assert topology.parse("random_regular:k=4") == topology.TopologySpec("random_regular", k=4)
    assert topology.parse("erdos_renyi:p=0.3").p == 0.3
    assert topology.parse(" ring , time_varying = TRUE ") == topology.get("ring", time_varying=True)
    assert topology.parse("ring:time_varying=true") == topology.parse("ring,time_varying=true")
    assert topology.parse("torus:time_varying=false") == topology.parse("torus")
    assert topology.parse("random_regular:k=4,time_varying=true").time_varying is True
    spec = topology.get("random_regular", k=4, time_varying=True)
    assert str(spec) == "random_regular:k=4,time_varying=true"


@given(
    kind=st.sampled_from(topology.KINDS),
    k=st.integers(min_value=2, max_value=64),
    p=st.floats(min_value=1e-6, max_value=1.0, allow_nan=False),
    time_varying=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_any_valid_spec_round_trips(kind, k, p, time_varying):
    params = {"random_regular": {"k": k}, "erdos_renyi": {"p": p}}.get(kind, {})
    spec = topology.get(kind, time_varying=time_varying, **params)
    assert topology.parse(str(spec)) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty topology spec"),
        ("hypercube", "unknown topology kind 'hypercube'"),
        ("random_regular", "needs k="),
        ("erdos_renyi", "needs p="),
        ("ring:k=4", "takes no k="),
        ("full:p=0.5", "takes no p="),
        ("random_regular:k=1", "k >= 2"),
        ("random_regular:k=four", "bad value 'four' for k"),
        ("random_regular:k=4.5", "bad value '4.5' for k"),
        ("erdos_renyi:p=0", "0 < p <= 1"),
        ("erdos_renyi:p=1.5", "0 < p <= 1"),
        ("erdos_renyi:p=nan", "bad value 'nan' for p"),
        ("random_regular:k=4,k=5", "given twice"),
        ("random_regular:k", "expected key=value"),
        ("ring,time_varying=maybe", "time_varying must be true or false"),
        ("ring,colour=red", "unknown topology parameter"),
    ],
)
def test_bad_specs_raise_clear_errors(text, message):
    with pytest.raises(ValueError, match=message):
        topology.parse(text)


def test_get_validates_like_parse():
    with pytest.raises(ValueError, match="unknown topology parameter"):
        topology.get("ring", degree=3)
    with pytest.raises(ValueError, match="must be an integer"):
        topology.get("random_regular", k="4")
    with pytest.raises(ValueError, match="must be an integer"):
        topology.get("random_regular", k=True)
    with pytest.raises(ValueError, match="must be a boolean"):
        topology.get("ring", time_varying="yes")
    with pytest.raises(dataclasses.FrozenInstanceError):
        topology.get("ring").kind = "full"  # type: ignore[misc]


# --- every kind: shape invariants ---------------------------------------------------------------


@pytest.mark.parametrize("text", ALL_SPECS)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 12])
def test_graph_has_every_peer_no_self_loops_and_is_connected(text, n):
    spec = topology.parse(text)
    peers = ids(n)
    graph = spec.graph(peers, round=3, seed=11)
    assert sorted(graph.nodes) == peers
    assert nx.number_of_selfloops(graph) == 0
    assert graph.is_directed() == spec.directed
    assert graph.graph["topology"] == str(spec)
    if spec.kind == "exponential_one_peer":
        # one round is a single shift; tau = ceil(log2 n) consecutive rounds cover every power of two
        tau = max(1, math.ceil(math.log2(n))) if n > 1 else 1
        union = nx.compose_all([spec.graph(peers, round=r, seed=11) for r in range(tau)])
        assert topology.is_connected(union)
    else:
        assert topology.is_connected(graph)


@pytest.mark.parametrize("text", ALL_SPECS)
def test_degenerate_sizes(text):
    spec = topology.parse(text)
    assert spec.graph(["solo"], round=0, seed=0).number_of_edges() == 0
    pair = spec.graph(["b", "a"], round=0, seed=0)
    expected = {("a", "b"), ("b", "a")} if spec.directed else {frozenset(("a", "b"))}
    assert edge_set(pair) == expected
    if not spec.directed and spec.kind != "erdos_renyi":
        # every other undirected kind on 3 peers is the triangle
        assert pair.number_of_nodes() == 2
        assert spec.graph(["c", "a", "b"], round=0, seed=0).number_of_edges() == 3


@pytest.mark.parametrize("text", ALL_SPECS)
def test_same_graph_for_any_input_order_and_repeated_calls(text):
    spec = topology.parse(text)
    peers = ids(12)
    reference = edge_set(spec.graph(peers, round=5, seed=3))
    shuffled = peers[:]
    for attempt in range(3):
        random.Random(attempt).shuffle(shuffled)
        assert edge_set(spec.graph(tuple(shuffled), round=5, seed=3)) == reference
    assert edge_set(topology.parse(text).graph(peers, round=5, seed=3)) == reference


def test_same_graph_in_another_process_with_another_hash_seed():
    """Seeds come from SHA-256, not Python's salted hash(): another interpreter agrees."""
    repo = Path(__file__).resolve().parents[2]
    script = (
        "import json\nfrom gossip import topology\n"
        f"specs = {RANDOM_SPECS + ['ring:time_varying=true']!r}\n"
        "print(json.dumps([sorted(map(sorted, topology.parse(s).graph("
        f"{ids(10)!r}, round=2, seed=9).edges)) for s in specs]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    here = [
        sorted(map(sorted, topology.parse(s).graph(ids(10), round=2, seed=9).edges))
        for s in RANDOM_SPECS + ["ring:time_varying=true"]
    ]
    assert json.loads(result.stdout) == here


@pytest.mark.parametrize("text", [s for s in SPECS if s != "exponential_one_peer"])
def test_static_graphs_do_not_change_with_round(text):
    spec = topology.parse(text)
    assert not spec.varies_by_round
    graphs = [edge_set(spec.graph(ids(10), round=r, seed=4)) for r in range(6)]
    assert all(g == graphs[0] for g in graphs)


@pytest.mark.parametrize("text", [s for s in TIME_VARYING if not s.startswith("full")])
def test_time_varying_graphs_change_across_rounds_and_repeat_per_round(text):
    spec = topology.parse(text)
    assert spec.varies_by_round
    graphs = [edge_set(spec.graph(ids(10), round=r, seed=4)) for r in range(6)]
    assert len({frozenset(g) for g in graphs}) > 1
    assert edge_set(spec.graph(ids(10), round=3, seed=4)) == graphs[3]


@pytest.mark.parametrize("text", RANDOM_SPECS + [s for s in TIME_VARYING if not s.startswith("full")])
def test_seed_and_live_set_change_random_graphs(text):
    spec = topology.parse(text)
    peers = ids(12)
    base = edge_set(spec.graph(peers, round=1, seed=0))
    assert edge_set(spec.graph(peers, round=1, seed=1)) != base
    fewer = spec.graph(peers[:-1], round=1, seed=0)
    assert sorted(fewer.nodes) == peers[:-1]
    assert topology.is_connected(fewer)


# --- each kind's structure ----------------------------------------------------------------------


def test_ring_follows_sorted_ids():
    peers = ["c", "a", "e", "b", "d"]
    graph = topology.parse("ring").graph(peers, round=0, seed=0)
    assert edge_set(graph) == {frozenset(p) for p in ["ab", "bc", "cd", "de", "ea"]}


def test_time_varying_ring_is_a_ring_every_round():
    spec = topology.parse("ring,time_varying=true")
    for r in range(5):
        graph = spec.graph(ids(9), round=r, seed=2)
        assert all(d == 2 for _, d in graph.degree) and nx.is_connected(graph)


@pytest.mark.parametrize(("n", "degree"), [(12, 4), (9, 4), (16, 4), (6, 3), (4, 2), (7, 2), (13, 2)])
def test_torus_uses_most_square_factorisation_and_falls_back_to_ring_for_primes(n, degree):
    graph = topology.parse("torus").graph(ids(n), round=0, seed=0)
    assert {d for _, d in graph.degree} == {degree}
    assert graph.number_of_edges() == n * degree // 2


def test_torus_3x4_is_the_grid():
    graph = topology.parse("torus").graph(ids(12), round=0, seed=0)
    assert nx.is_isomorphic(graph, nx.grid_2d_graph(3, 4, periodic=True))


@pytest.mark.parametrize(
    ("k", "n", "expected"), [(4, 12, 4), (3, 9, 4), (3, 10, 3), (6, 4, 3), (4, 5, 4), (2, 7, 2)]
)
def test_random_regular_degree_is_clipped_and_made_even(k, n, expected):
    assert topology.effective_degree(k, n) == expected
    graph = topology.get("random_regular", k=k).graph(ids(n), round=0, seed=5)
    assert {d for _, d in graph.degree} == {expected}


def test_erdos_renyi_that_cannot_connect_raises_clearly():
    with pytest.raises(ValueError, match="no connected graph on 30 peers.*connectivity threshold"):
        topology.parse("erdos_renyi:p=0.001").graph(ids(30), round=0, seed=0)


def test_erdos_renyi_density_follows_p():
    n, p = 40, 0.3
    graph = topology.get("erdos_renyi", p=p).graph(ids(n), round=0, seed=1)
    expected = p * n * (n - 1) / 2
    assert abs(graph.number_of_edges() - expected) < 4 * math.sqrt(expected)


def test_exponential_all_powers_neighbours():
    graph = topology.parse("exponential").graph(ids(8), round=0, seed=0)
    assert sorted(graph.neighbors("peer-00")) == ["peer-01", "peer-02", "peer-04", "peer-06", "peer-07"]
    assert {d for _, d in graph.degree} == {5}


def test_one_peer_exponential_steps_through_powers_of_two():
    spec = topology.parse("exponential_one_peer")
    peers = ids(8)
    for r, step in zip(range(6), [1, 2, 4, 1, 2, 4]):
        graph = spec.graph(peers, round=r, seed=0)
        assert sorted(graph.edges) == sorted((peers[i], peers[(i + step) % 8]) for i in range(8))


def test_one_peer_exponential_averages_exactly_in_log2_n_rounds():
    """Ying et al. 2021: with weights (1/2, 1/2), tau = log2 n rounds multiply to the averaging matrix."""
    spec = topology.parse("exponential_one_peer")
    n = 16
    product = np.eye(n)
    for r in range(4):
        w = mixing.mixing_matrix(spec.graph(ids(n), round=r, seed=0), "uniform")
        assert np.allclose(w.sum(axis=0), 1.0) and np.allclose(w.sum(axis=1), 1.0)
        product = w @ product
    assert np.allclose(product, np.full((n, n), 1.0 / n))


def test_full_graph_is_complete():
    graph = topology.parse("full:time_varying=true").graph(ids(7), round=3, seed=0)
    assert graph.number_of_edges() == 21


# --- statistics ---------------------------------------------------------------------------------


def test_connectivity_statistics_on_known_graphs():
    ring = topology.parse("ring").graph(ids(10), round=0, seed=0)
    assert topology.average_connectivity(ring) == topology.harmonic_connectivity(ring) == 3.0
    full = topology.parse("full").graph(ids(20), round=0, seed=0)
    assert topology.average_connectivity(full) == 20.0
    one_peer = topology.parse("exponential_one_peer").graph(ids(8), round=0, seed=0)
    assert topology.average_connectivity(one_peer) == 2.0
    star = nx.star_graph(4)  # centre 0 with four leaves: |A_i| = 5, 2, 2, 2, 2
    assert topology.average_connectivity(star) == pytest.approx(13 / 5)
    assert topology.harmonic_connectivity(star) == pytest.approx(5 / (1 / 5 + 4 / 2))
    assert topology.average_connectivity(nx.empty_graph(3)) == 1.0


def test_harmonic_never_exceeds_average_connectivity():
    for seed in range(5):
        graph = topology.parse("erdos_renyi:p=0.3").graph(ids(15), round=0, seed=seed)
        assert topology.harmonic_connectivity(graph) <= topology.average_connectivity(graph) + 1e-12


def test_spectral_gap_of_ring_matches_closed_form():
    n = 8
    expected = 1 - max(abs(1 / 3 + 2 / 3 * math.cos(2 * math.pi * k / n)) for k in range(1, n))
    assert topology.spectral_gap_of(topology.parse("ring"), ids(n)) == pytest.approx(expected)
    assert topology.spectral_gap_of(topology.parse("full"), ids(n), rule="uniform") == pytest.approx(1.0)


def test_bad_graph_inputs_raise():
    spec = topology.parse("ring")
    with pytest.raises(ValueError, match="no live peers"):
        spec.graph([], round=0, seed=0)
    with pytest.raises(ValueError, match="duplicate peer ids"):
        spec.graph(["a", "b", "a"], round=0, seed=0)
    with pytest.raises(ValueError, match="must be strings"):
        spec.graph(["a", 2], round=0, seed=0)
    with pytest.raises(ValueError, match="round must be >= 0"):
        spec.graph(["a"], round=-1, seed=0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        spec.graph(["a"], round=0, seed=1.5)
