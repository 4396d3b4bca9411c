"""The PNG plots of one swarm run's report, each drawn from its diagnostics (:mod:`analysis.diagnostics`).

Every plot is over gossip rounds and marks the run's fault / crash / restart events (``events``:
:func:`analysis.run_report.fault_events`) as vertical lines; a plot without data returns None.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.plots import log_if_positive, mark_events, plt, save


def plot_knn(diag: dict, events: list[dict], path: Path) -> Path | None:
    """kNN accuracy of every peer at each of its evaluations (x = round)."""
    series = {p: [e for e in s["evals"] if e.get("knn") is not None] for p, s in diag["per_peer"].items()}
    if not any(series.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for peer, evals in sorted(series.items()):
        if evals:
            ax.plot([e["round"] for e in evals], [e["knn"] for e in evals], marker="o", label=peer)
    mark_events(ax, events)
    ax.set(xlabel="gossip round", ylabel="kNN accuracy", title="Per-peer kNN accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path, integer_x=True)


def _proxy_panel(ax: plt.Axes, rounds: list[dict], events: list[dict]) -> None:
    """Mean neighbour distance per round (log when positive)."""
    dist = [
        r["neighbour_distance_mean"] if r["neighbour_distance_mean"] is not None else np.nan for r in rounds
    ]
    ax.plot([r["round"] for r in rounds], dist, marker=".", color="tab:blue")
    log_if_positive(ax, dist)
    ax.set(ylabel="mean ||θ_i − nbr mean||²", title="Consensus proxy (mean neighbour distance)")
    ax.grid(alpha=0.3)
    mark_events(ax, events)


def _exact_panel(ax: plt.Axes, exact: list[dict], events: list[dict]) -> None:
    """The exact consensus distance at the snapshot rounds (markers, log when positive)."""
    values = [e["consensus_distance"] for e in exact]
    ax.plot(
        [e["round"] for e in exact],
        values,
        linestyle="none",
        marker="D",
        markersize=5,
        color="tab:purple",
        label="(1/N) Σ‖θ_i − θ̄‖² of the published params",
    )
    encoder = [(e["round"], e.get("encoder_consensus_distance")) for e in exact]
    encoder = [(r, v) for r, v in encoder if v is not None]
    if encoder:
        ax.plot(
            *zip(*encoder),
            linestyle="none",
            marker="o",
            markersize=5,
            color="tab:green",
            label="the same over the encoder's parameters only",
        )
        values = values + [v for _, v in encoder]
    log_if_positive(ax, values)
    ax.set(ylabel="(1/N) Σ‖θ_i − θ̄‖²", title="Exact consensus distance (parameter snapshots, pre-mix)")
    ax.grid(alpha=0.3)
    mark_events(ax, events)
    ax.legend(fontsize=8, loc="best")


def _gap_panel(ax: plt.Axes, rounds: list[dict], events: list[dict]) -> None:
    """The realised spectral gap per round."""
    gaps = [r["spectral_gap"] if r["spectral_gap"] is not None else np.nan for r in rounds]
    ax.plot([r["round"] for r in rounds], gaps, marker=".", color="tab:green", label="spectral gap 1−|λ₂|")
    ax.set(
        xlabel="gossip round",
        ylabel="1 − |λ₂(W)|",
        title="Spectral gap of the realised W",
        ylim=(-0.05, 1.05),
    )
    ax.grid(alpha=0.3)
    mark_events(ax, events)
    ax.legend(fontsize=8, loc="best")


def plot_consensus(diag: dict, events: list[dict], path: Path) -> Path | None:
    """Panels over rounds: mean neighbour distance (log), the exact consensus distance at snapshot
    rounds (log, markers; only when snapshots exist) and the realised spectral gap."""
    rounds = diag["rounds"]
    if not rounds:
        return None
    exact = diag.get("consensus_exact_rounds") or []
    fig, axes = plt.subplots(3 if exact else 2, 1, figsize=(7, 8.5 if exact else 6), sharex=True)
    _proxy_panel(axes[0], rounds, events)
    if exact:
        _exact_panel(axes[1], exact, events)
    _gap_panel(axes[-1], rounds, events)
    return save(fig, path, integer_x=True)


def plot_representation(diag: dict, events: list[dict], path: Path) -> Path | None:
    """Two panels over rounds, one line per peer: collapse std of the probe embeddings (SimSiam §4.1:
    ~1 healthy, 0 collapsed) and the A-MMD between the local and the neighbourhood-averaged model's
    embeddings (docs/paper.md Eq. 6)."""
    series = {p: s.get("probes") or [] for p, s in diag["per_peer"].items()}
    if not any(series.values()):
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for peer, probes in sorted(series.items()):
        std = [(q["round"], q["collapse_std"]) for q in probes if q.get("collapse_std") is not None]
        mmd = [(q["round"], q["a_mmd"]) for q in probes if q.get("a_mmd") is not None]
        if std:
            top.plot(*zip(*std), marker=".", label=peer)
        if mmd:
            bottom.plot(*zip(*mmd), marker=".", label=peer)
    top.set(ylabel="√d · std of z/‖z‖", title="Collapse indicator on the probe batch (0 = collapsed)")
    top.set_ylim(bottom=0)
    bottom.axhline(0.0, color="grey", linewidth=0.8)
    bottom.set(
        xlabel="gossip round",
        ylabel="A-MMD(local, mixed)",
        title="A-MMD between local and neighbourhood-averaged embeddings",
    )
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        mark_events(ax, events)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return save(fig, path, integer_x=True)


def plot_bytes(diag: dict, events: list[dict], path: Path) -> Path | None:
    """Bytes sent (served to neighbours) per round, per peer and in total."""
    if not diag["rounds"]:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for peer, s in sorted(diag["per_peer"].items()):
        pts = [(r["round"], r["bytes_out"] / 1e6) for r in s["rounds"] if r.get("bytes_out") is not None]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=peer)
    ax.plot(
        [r["round"] for r in diag["rounds"]],
        [r["bytes_out"] / 1e6 for r in diag["rounds"]],
        color="black",
        linewidth=2,
        label="swarm total",
    )
    mark_events(ax, events)
    ax.set(xlabel="gossip round", ylabel="MB sent in the round", title="Bytes sent per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path, integer_x=True)
