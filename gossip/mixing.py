"""Mixing weights and the weighted average, as pure functions.

Decentralised SGD (D-PSGD, Lian et al. 2017) mixes x_i <- sum_j W_ij x_j with a row-stochastic W
that respects the graph. Two rules:

* Metropolis-Hastings (Xiao & Boyd 2004): W_ij = 1 / (1 + max(d_i, d_j)) for each edge, W_ii takes
  the rest. Symmetric and doubly stochastic for an undirected graph, so the average is preserved.
* uniform: W_ij = 1 / |A_i| over the closed neighbourhood A_i = {i} + N(i) (the paper's Alg. 2).
  Row-stochastic; doubly stochastic only on regular graphs.

When some neighbours did not answer in a round, their weight returns to the self-weight so the
realised row still sums to one (``renormalise``).

Directed graphs (``networkx.DiGraph``, e.g. the one-peer exponential graph) are pull graphs: node i
averages over its successors, W_ij > 0 for the edges i -> j. Only the uniform rule applies there;
Metropolis-Hastings needs a symmetric neighbour relation and raises a ValueError on a DiGraph. Self-loops
in the input are ignored (the self-weight is always W_ii).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import networkx as nx
import numpy as np
import torch

RULES = ("metropolis_hastings", "uniform")


def mixing_row(
    graph: nx.Graph, node: str, rule: str = "metropolis_hastings"
) -> tuple[float, dict[str, float]]:
    """Return (W_ii, {j: W_ij}) for ``node``'s neighbours (successors in a DiGraph) under ``rule``."""
    if rule not in RULES:
        raise ValueError(f"unknown mixing rule {rule!r}; choose one of {', '.join(RULES)}")
    if node not in graph:
        raise ValueError(f"node {node!r} is not in the graph")
    neighbours = _neighbours(graph, node)
    if rule == "metropolis_hastings":
        if graph.is_directed():
            raise ValueError(
                "Metropolis-Hastings weights need an undirected graph; use rule='uniform' for a directed "
                "topology such as exponential_one_peer"
            )
        d_i = len(neighbours)
        weights = {j: 1.0 / (1.0 + max(d_i, len(_neighbours(graph, j)))) for j in neighbours}
    else:
        weights = {j: 1.0 / (1.0 + len(neighbours)) for j in neighbours}
    return 1.0 - sum(weights.values()), weights


def _neighbours(graph: nx.Graph, node: str) -> list[str]:
    """The peers ``node`` averages with: neighbours (successors in a DiGraph), self-loops dropped."""
    return sorted(n for n in graph.neighbors(node) if n != node)


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
    """sum_k weights[k] * buffers[k], accumulated in float32 (inputs may be fp16 from the wire).

    ``out`` (if given) receives the result in its own dtype and may alias any of ``buffers``
    (typically ``buffers[0]``, the local model); otherwise a new float32 tensor is returned.
    """
    if len(buffers) != len(weights) or not buffers:
        raise ValueError(f"need one weight per buffer, got {len(buffers)} buffers, {len(weights)} weights")
    shape = buffers[0].shape
    for b in buffers[1:]:
        if b.shape != shape:
            raise ValueError(f"buffer shapes differ: {tuple(b.shape)} vs {tuple(shape)}")
    if out is not None and out.shape != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, buffers have {tuple(shape)}")
    # accumulate straight into ``out`` only when it is float32 and aliases no buffer read after the
    # first term; otherwise into a float32 scratch tensor that is copied into ``out`` at the end
    direct = (
        out is not None and out.dtype == torch.float32 and not any(shares_memory(out, b) for b in buffers[1:])
    )
    acc = out if direct else torch.empty(shape, dtype=torch.float32, device=buffers[0].device)
    if buffers[0].dtype == torch.float32:
        torch.mul(buffers[0], float(weights[0]), out=acc)  # one pass; fine when acc aliases buffers[0]
    else:
        acc.copy_(buffers[0]).mul_(float(weights[0]))  # upcast first: torch.mul would multiply in fp16
    scratch: torch.Tensor | None = None  # float32 copy of a lower-precision buffer
    for buffer, weight in zip(buffers[1:], weights[1:]):
        if buffer.dtype != torch.float32:
            # measured here (11.7 M elements): copy-then-add 27 ms vs a mixed-dtype add_ 54 ms
            scratch = torch.empty_like(acc) if scratch is None else scratch
            buffer = scratch.copy_(buffer)
        acc.add_(buffer, alpha=float(weight))
    if out is None or acc is out:
        return acc
    return out.copy_(acc)


def shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when the two tensors are views of the same storage (conservative overlap test)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def spectral_gap(w: np.ndarray) -> float:
    """1 - |lambda_2(W)|: the second-largest eigenvalue modulus sets the consensus rate.

    Symmetric W uses the symmetric eigensolver (real, accurate spectrum); any other square W the
    general one. A disconnected graph gives 0 (up to rounding).
    """
    w = np.asarray(w, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"W must be a square matrix, got shape {w.shape}")
    if w.shape[0] < 2:
        return 1.0
    eigenvalues = np.linalg.eigvalsh(w) if np.allclose(w, w.T) else np.linalg.eigvals(w)
    moduli = np.sort(np.abs(eigenvalues))[::-1]
    return float(1.0 - moduli[1])
