"""Communication graphs computed by every peer alike, with no coordinator, and their statistics.

A topology is a small validated spec (``TopologySpec``) built from a string (``parse("ring")``,
``parse("random_regular:k=4,time_varying=true")``) or by name (``get("erdos_renyi", p=0.3)``). Its
``graph(peer_ids, round, seed)`` is a pure function of (spec, the *sorted* live peer ids, round, seed):
every peer that sees the same live set derives the same graph. Random choices use seeds derived with
SHA-256 over those inputs (never Python's salted ``hash()``), so the graph is also stable across
processes, machines and the order in which the ids were listed.

Kinds (n = number of live peers, positions 0..n-1 are the peer ids in sorted order):

* ``ring``: i -- i+1 (mod n).
* ``torus``: an r x c wrap-around grid with r the largest divisor of n not above sqrt(n) (the most
  square factorisation). A prime n has only 1 x n, which is the ring: that is the fallback.
* ``random_regular`` (``k``): a uniformly random k-regular graph (networkx). k is clipped to n-1 (then it
  is the full graph); when n*k is odd (no k-regular graph exists) k+1 is used. Redrawn with fresh
  derived seeds until connected, at most ``MAX_ATTEMPTS`` times.
* ``erdos_renyi`` (``p``): G(n, p), redrawn until connected, at most ``MAX_ATTEMPTS`` times, then a
  ValueError that names the connectivity threshold ln(n)/n.
* ``exponential``: the static all-powers exponential graph, undirected: i -- i +- 2^j (mod n) for
  j = 0..ceil(log2 n)-1 (Ying et al., "Exponential Graph is Provably Efficient for Decentralized Deep
  Training", NeurIPS 2021).
* ``exponential_one_peer``: the one-peer exponential graph of the same paper, a **directed** graph
  (``networkx.DiGraph``): in round t node i pulls from its single successor i + 2^(t mod tau) (mod n),
  tau = ceil(log2 n). One round alone is not connected in general; tau consecutive rounds are, and for
  n a power of two they average exactly. With uniform weights (1/2, 1/2) its W is doubly stochastic.
  Metropolis-Hastings weights are undefined on directed graphs (``mixing.mixing_row`` says so).
* ``full``: the complete graph (with uniform weights: FedAvg without a server).

``time_varying=true`` redraws the graph every round from (seed, round): random kinds are resampled, the
deterministic kinds are laid over a fresh seeded permutation of the peers (a random ring, a random
torus, ...). ``full`` is the same graph under any permutation. Without it the graph changes only when
the live set or the seed changes (``exponential_one_peer`` still steps through its powers of two).

Graphs never contain self-loops, always contain every live peer id (even for n = 1, 2, 3) and carry
``graph.graph["topology"]`` (the spec string) and ``graph.graph["round"]`` for logging.

Statistics: ``average_connectivity`` (|A-bar|, the mean closed-neighbourhood size, self included, as in
the D-SSL paper, Chen et al. ICLR 2026 §3.1), ``harmonic_connectivity`` (the harmonic mean of the same
sizes, which the paper's bound really averages on irregular graphs, its A.6.2) and ``spectral_gap_of``.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

import networkx as nx
import numpy as np

from gossip import mixing

KINDS = (
    "ring",
    "torus",
    "random_regular",
    "erdos_renyi",
    "exponential",
    "exponential_one_peer",
    "full",
)
# the parameter each kind needs (and the only one it accepts besides time_varying)
_REQUIRED = {"random_regular": "k", "erdos_renyi": "p"}
# redraws allowed when a random graph comes out disconnected
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class TopologySpec:
    """A validated topology: ``kind`` plus its parameter (``k`` or ``p``) and ``time_varying``."""

    kind: str
    k: int | None = None  # degree of random_regular
    p: float | None = None  # edge probability of erdos_renyi
    time_varying: bool = False  # redraw the graph every round from (seed, round)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown topology kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        needed = _REQUIRED.get(self.kind)
        for name in ("k", "p"):
            value = getattr(self, name)
            if name == needed and value is None:
                raise ValueError(f"topology {self.kind!r} needs {name}=..., e.g. {_example(self.kind)!r}")
            if name != needed and value is not None:
                raise ValueError(f"topology {self.kind!r} takes no {name}= parameter")
        if self.k is not None:
            if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer):
                raise ValueError(f"random_regular k must be an integer, got {self.k!r}")
            if self.k < 2:
                raise ValueError(
                    f"random_regular needs k >= 2 (k={self.k}: a 1-regular graph is a "
                    "matching, never connected beyond 2 peers)"
                )
            object.__setattr__(self, "k", int(self.k))
        if self.p is not None:
            if isinstance(self.p, bool) or not isinstance(self.p, int | float | np.floating | np.integer):
                raise ValueError(f"erdos_renyi p must be a number, got {self.p!r}")
            if not 0.0 < float(self.p) <= 1.0:
                raise ValueError(f"erdos_renyi needs 0 < p <= 1, got p={self.p!r}")
            object.__setattr__(self, "p", float(self.p))
        if not isinstance(self.time_varying, bool | np.bool_):
            raise ValueError(f"time_varying must be a boolean, got {self.time_varying!r}")
        object.__setattr__(self, "time_varying", bool(self.time_varying))

    def __str__(self) -> str:
        params = [
            f"{f.name}={_format(getattr(self, f.name))}"
            for f in fields(self)[1:]
            if getattr(self, f.name) not in (None, False)
        ]
        return self.kind + (":" + ",".join(params) if params else "")

    @property
    def directed(self) -> bool:
        """True when ``graph`` returns a DiGraph (a node pulls from its successors)."""
        return self.kind == "exponential_one_peer"

    @property
    def varies_by_round(self) -> bool:
        """True when the graph may differ between rounds for the same live set and seed."""
        return self.time_varying or self.kind == "exponential_one_peer"

    def graph(self, peer_ids: Sequence[str], round: int, seed: int) -> nx.Graph:
        """This round's graph over ``peer_ids`` (nodes are the id strings; input order is irrelevant)."""
        ids = _sorted_ids(peer_ids)
        round, seed = _non_negative_int("round", round), _non_negative_int("seed", seed)
        if self.kind == "exponential_one_peer":
            edges = _one_peer_edges(len(ids), round)
        elif self.kind in ("random_regular", "erdos_renyi"):
            edges = self._random_edges(ids, round, seed)
        else:
            edges = _DETERMINISTIC[self.kind](len(ids))
        labels = ids
        if self.time_varying and self.kind not in ("random_regular", "erdos_renyi"):
            order = np.random.default_rng(_derived_seed(self, ids, round, seed, "permutation"))
            labels = [ids[k] for k in order.permutation(len(ids))]
        graph = nx.DiGraph() if self.directed else nx.Graph()
        graph.add_nodes_from(ids)
        graph.add_edges_from(sorted((labels[u], labels[v]) for u, v in edges if u != v))
        graph.graph.update(topology=str(self), round=round)
        return graph

    def _random_edges(self, ids: list[str], round: int, seed: int) -> list[tuple[int, int]]:
        """Draw random_regular / erdos_renyi until connected; seeds derived per attempt."""
        n = len(ids)
        if self.kind == "random_regular":
            k = effective_degree(self.k, n)
            if k == n - 1:
                return list(nx.complete_graph(n).edges)
        for attempt in range(MAX_ATTEMPTS):
            draw_seed = _derived_seed(self, ids, round, seed, f"attempt={attempt}")
            if self.kind == "random_regular":
                candidate = nx.random_regular_graph(k, n, seed=draw_seed)
            else:
                candidate = nx.gnp_random_graph(n, self.p, seed=draw_seed)
            if nx.is_connected(candidate):
                return list(candidate.edges)
        hint = (
            f"; raise p above the connectivity threshold ln(n)/n = {math.log(n) / n:.3f}"
            if self.kind == "erdos_renyi"
            else ""
        )
        raise ValueError(
            f"topology {self} drew no connected graph on {n} peers in {MAX_ATTEMPTS} attempts{hint}"
        )


def get(kind: str, **params: object) -> TopologySpec:
    """The validated spec for ``kind`` (``k=`` for random_regular, ``p=`` for erdos_renyi,
    ``time_varying=`` for any); ValueError names what is wrong."""
    allowed = {f.name for f in fields(TopologySpec)} - {"kind"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(
            f"unknown topology parameter(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    return TopologySpec(kind, **params)  # type: ignore[arg-type]


def parse(text: str) -> TopologySpec:
    """Parse ``"kind[:key=value[,key=value]...]"`` (``"kind,key=value"`` works too), the form
    ``str(spec)`` writes. Values: k an integer, p a number, time_varying true/false."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty topology spec {text!r}; e.g. 'ring' or 'random_regular:k=4'")
    head, *rest = [part.strip() for part in text.split(",")]
    kind, _, first = (part.strip() for part in head.partition(":"))
    params: dict[str, object] = {}
    for item in ([first] if first else []) + rest:
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise ValueError(f"bad topology parameter {item!r} in {text!r}: expected key=value")
        if key in params:
            raise ValueError(f"topology parameter {key!r} given twice in {text!r}")
        params[key] = _parse_value(key, value, text)
    return get(kind, **params)


def effective_degree(k: int, n: int) -> int:
    """The degree random_regular really uses on n peers: min(k, n-1), plus one when n*k is odd."""
    k = min(k, max(n - 1, 0))
    return k + 1 if (n * k) % 2 else k


def average_connectivity(graph: nx.Graph) -> float:
    """|A-bar| = mean over nodes of |A_i|, A_i = {i} + the peers i averages with (successors in a
    DiGraph); 1 <= |A_i| <= n, and n for the full graph (federated learning)."""
    sizes = _closed_neighbourhood_sizes(graph)
    return float(np.mean(sizes))


def harmonic_connectivity(graph: nx.Graph) -> float:
    """Harmonic mean of the closed-neighbourhood sizes |A_i|: n / sum_i 1/|A_i|. Equals |A-bar| on
    regular graphs and is smaller on irregular ones (the paper's bound averages 1/|A_i|)."""
    sizes = _closed_neighbourhood_sizes(graph)
    return float(len(sizes) / np.sum(1.0 / sizes))


def spectral_gap_of(
    spec: TopologySpec,
    peer_ids: Sequence[str],
    rule: str = "metropolis_hastings",
    round: int = 0,
    seed: int = 0,
) -> float:
    """1 - |lambda_2(W)| of ``spec``'s graph in ``round`` under mixing ``rule``."""
    return mixing.spectral_gap(mixing.mixing_matrix(spec.graph(peer_ids, round, seed), rule))


def is_connected(graph: nx.Graph) -> bool:
    """Connected (strongly, for a DiGraph): information from every peer reaches every other."""
    if graph.number_of_nodes() == 0:
        return False
    return nx.is_strongly_connected(graph) if graph.is_directed() else nx.is_connected(graph)


def _ring(n: int) -> Iterable[tuple[int, int]]:
    return nx.cycle_graph(n).edges


def _torus(n: int) -> Iterable[tuple[int, int]]:
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    cols = n // rows
    grid = nx.grid_2d_graph(rows, cols, periodic=True)
    return [(a * cols + b, c * cols + d) for (a, b), (c, d) in grid.edges]


def _exponential(n: int) -> Iterable[tuple[int, int]]:
    powers = [2**j for j in range(_tau(n))]
    return [(i, (i + step) % n) for i in range(n) for step in powers]


def _full(n: int) -> Iterable[tuple[int, int]]:
    return nx.complete_graph(n).edges


_DETERMINISTIC = {"ring": _ring, "torus": _torus, "exponential": _exponential, "full": _full}


def _one_peer_edges(n: int, round: int) -> list[tuple[int, int]]:
    """Edge i -> i + 2^(round mod tau): node i pulls from that single successor."""
    tau = _tau(n)
    if tau == 0:
        return []
    step = 2 ** (round % tau)
    return [(i, (i + step) % n) for i in range(n)]


def _tau(n: int) -> int:
    """ceil(log2 n): the number of distinct powers of two below n."""
    return (n - 1).bit_length() if n > 1 else 0


def _closed_neighbourhood_sizes(graph: nx.Graph) -> np.ndarray:
    if graph.number_of_nodes() == 0:
        raise ValueError("the graph has no nodes")
    return np.array([1 + sum(1 for j in graph.neighbors(i) if j != i) for i in graph.nodes], dtype=float)


def _derived_seed(spec: TopologySpec, ids: list[str], round: int, seed: int, purpose: str) -> int:
    """A 64-bit seed from SHA-256 over (spec, seed, round or 'static', sorted ids, purpose)."""
    payload = json.dumps(
        [str(spec), seed, round if spec.time_varying else "static", ids, purpose], separators=(",", ":")
    )
    return int.from_bytes(hashlib.sha256(payload.encode()).digest()[:8], "big")


def _sorted_ids(peer_ids: Sequence[str]) -> list[str]:
    ids = list(peer_ids)
    if not ids:
        raise ValueError("no live peers: a topology needs at least one peer id")
    if not all(isinstance(i, str) for i in ids):
        raise ValueError(f"peer ids must be strings, got {[type(i).__name__ for i in ids]}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate peer ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    return sorted(ids)


def _non_negative_int(name: str, value: int) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _parse_value(key: str, value: str, text: str) -> object:
    try:
        if key == "k":
            return int(value)
        if key == "p":
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
    except ValueError:
        raise ValueError(f"bad value {value!r} for {key} in topology spec {text!r}") from None
    if key == "time_varying":
        flag = value.lower()
        if flag not in ("true", "false", "1", "0"):
            raise ValueError(f"time_varying must be true or false, got {value!r} in {text!r}")
        return flag in ("true", "1")
    return value  # an unknown key: get() rejects it with the list of allowed ones


def _format(value: object) -> str:
    return "true" if value is True else repr(value) if isinstance(value, float) else str(value)


def _example(kind: str) -> str:
    return {"random_regular": "random_regular:k=4", "erdos_renyi": "erdos_renyi:p=0.3"}[kind]
