"""Mixing weights and the weighted average, as pure functions.

Decentralised SGD (D-PSGD, Lian et al. 2017) mixes x_i <- sum_j W_ij x_j with a row-stochastic W
that respects the graph. Two rules:

* Metropolis-Hastings (Xiao & Boyd 2004): W_ij = 1 / (1 + max(d_i, d_j)) for each edge, W_ii takes
  the rest. Symmetric and doubly stochastic for an undirected graph, so the average is preserved.
* uniform: W_ij = 1 / |A_i| over the closed neighbourhood A_i = {i} + N(i) (the paper's Alg. 2).
  Row-stochastic; doubly stochastic only on regular graphs.

When some neighbours did not answer in a round, their weight returns to the self-weight so the
realised row still sums to one (``renormalise``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import networkx as nx
import numpy as np
import torch

RULES = ("metropolis_hastings", "uniform")


def mixing_row(graph: nx.Graph, node: str, rule: str = "metropolis_hastings") -> tuple[float, dict[str, float]]:
    """Return (W_ii, {j: W_ij}) for ``node``'s neighbours in ``graph`` under ``rule``."""
    neighbours = sorted(n for n in graph.neighbors(node) if n != node)
    if rule == "metropolis_hastings":
        d_i = graph.degree(node)
        weights = {j: 1.0 / (1.0 + max(d_i, graph.degree(j))) for j in neighbours}
    elif rule == "uniform":
        weights = {j: 1.0 / (1.0 + len(neighbours)) for j in neighbours}
    else:
        raise ValueError(f"unknown mixing rule {rule!r}; choose one of {', '.join(RULES)}")
    return 1.0 - sum(weights.values()), weights


def mixing_matrix(graph: nx.Graph, rule: str = "metropolis_hastings") -> np.ndarray:
    """The full W over ``sorted(graph.nodes)`` (rows and columns in that order)."""
    nodes = sorted(graph.nodes)
    index = {n: k for k, n in enumerate(nodes)}
    w = np.zeros((len(nodes), len(nodes)))
    for n in nodes:
        self_w, row = mixing_row(graph, n, rule)
        w[index[n], index[n]] = self_w
        for j, w_ij in row.items():
            w[index[n], index[j]] = w_ij
    return w


def renormalise(
    self_weight: float, weights: Mapping[str, float], answered: Collection[str]
) -> tuple[float, dict[str, float]]:
    """Drop the neighbours that did not answer; their weight goes back to the self-weight."""
    kept = {j: w for j, w in weights.items() if j in answered}
    lost = sum(w for j, w in weights.items() if j not in answered)
    return self_weight + lost, kept


def weighted_average(
    buffers: Sequence[torch.Tensor], weights: Sequence[float], out: torch.Tensor | None = None
) -> torch.Tensor:
    """sum_k weights[k] * buffers[k] in float32 (inputs may be fp16 from the wire).

    ``out`` (if given) receives the result and may alias ``buffers[0]``; otherwise a new tensor.
    """
    if len(buffers) != len(weights) or not buffers:
        raise ValueError(f"need one weight per buffer, got {len(buffers)} buffers, {len(weights)} weights")
    shape = buffers[0].shape
    for b in buffers[1:]:
        if b.shape != shape:
            raise ValueError(f"buffer shapes differ: {tuple(b.shape)} vs {tuple(shape)}")
    if out is None:
        out = torch.empty(shape, dtype=torch.float32)
    # write the first term in place (works when out aliases buffers[0]), then accumulate
    torch.mul(buffers[0], weights[0], out=out)
    for buffer, weight in zip(buffers[1:], weights[1:]):
        out.add_(buffer, alpha=float(weight))
    return out


def spectral_gap(w: np.ndarray) -> float:
    """1 - |lambda_2(W)|: the second-largest eigenvalue modulus sets the consensus rate."""
    if w.shape[0] < 2:
        return 1.0
    moduli = np.sort(np.abs(np.linalg.eigvals(w)))[::-1]
    return float(1.0 - moduli[1])
