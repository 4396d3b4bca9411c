"""The sweep report's plots over training: consensus and spectral gap per condition, the learning
curves (periodic kNN) per condition, and each fault condition's run beside the same seed's
fault-free run, its fault events marked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.plots import MaxNLocator, mark_events, palette, plt, save
from analysis.run_report import fault_events
from analysis.sweep_dir import (
    MATCH_COLUMNS,
    Sweep,
    as_float,
    group_by,
    read_rounds,
    round_series,
    topology_label,
)
from analysis.sweep_plots import Plot
from peer.rundir import DIAGNOSTICS_FILE, ROUNDS_CSV

MAX_LINES = 8  # more conditions than this: the consensus plot draws one line per topology instead


def _runs_by_condition(sweep: Sweep) -> tuple[dict[str, list[Path]], str]:
    """Run dirs with a rounds.csv per condition (or per topology when there are too many
    conditions to tell apart), and what the lines are."""
    with_rounds = [
        r
        for r in sweep.complete
        if sweep.run_dir(r) is not None and (sweep.run_dir(r) / ROUNDS_CSV).is_file()
    ]
    by_condition = group_by(with_rounds, sweep.condition)
    if len(by_condition) <= MAX_LINES:
        return {k: [sweep.run_dir(r) for r in v] for k, v in by_condition.items()}, " / ".join(
            sweep.condition_columns
        )
    by_topology = group_by(with_rounds, topology_label)
    return {k: [sweep.run_dir(r) for r in v] for k, v in by_topology.items()}, "topology (all conditions)"


def plot_consensus(sweep: Sweep, path: Path) -> Plot:
    runs, what = _runs_by_condition(sweep)
    if not runs:
        return None, "consensus over rounds skipped: no complete run has a rounds.csv."
    rows = [r for rs in runs.values() for run in rs for r in read_rounds(run)]
    panels = [
        ("neighbour_distance_mean", "mean ‖θᵢ − nbr mean‖²", "Consensus proxy (mean neighbour distance)")
    ]
    if any(r.get("consensus_distance_exact") is not None for r in rows):
        panels.append(("consensus_distance_exact", "(1/N) Σ‖θᵢ − θ̄‖²", "Exact consensus distance"))
    if any(r.get("encoder_consensus_distance_exact") is not None for r in rows):
        panels.append(
            (
                "encoder_consensus_distance_exact",
                "(1/N) Σ‖eᵢ − ē‖²",
                "Exact consensus distance of the encoder",
            )
        )
    panels.append(("spectral_gap", "1 − |λ₂(W)|", "Spectral gap of the realised W"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3 * len(panels)), sharex=True)
    colours = palette(len(runs))
    for ax, (column, ylabel, title) in zip(axes, panels):
        for (name, rs), colour in zip(sorted(runs.items()), colours):
            xs, ys = round_series(rs, column)
            ax.plot(xs, ys, marker=".", color=colour, label=f"{name} (n={len(rs)})")
        finite = [line.get_ydata() for line in ax.get_lines()]
        if column != "spectral_gap" and finite and np.nanmin(np.concatenate(finite), initial=np.inf) > 0:
            ax.set_yscale("log")
        ax.set(ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=what, title_fontsize=7)
    axes[-1].set_xlabel("gossip round")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return save(fig, path), (
        f"Consensus and the realised spectral gap over rounds, one line per {what} (mean over its runs)."
    )


def _knn_curve(run: Path) -> list[dict]:
    path = run / DIAGNOSTICS_FILE
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8")).get("knn_curve") or []


def plot_learning_curves(sweep: Sweep, path: Path) -> Plot:
    """Mean periodic kNN over the peers against the training step, one line per condition (mean over
    its runs), from each run's ``knn_curve`` (train.eval_every)."""
    curves: dict[str, dict[int, list[float]]] = {}
    for row in sweep.complete:
        run = sweep.run_dir(row)
        for point in _knn_curve(run) if run is not None else []:
            curves.setdefault(sweep.condition(row), {}).setdefault(point["step"], []).append(
                point["knn_mean"]
            )
    if not curves:
        return None, "learning curves skipped: no complete run evaluated on a schedule (train.eval_every)."
    fig, ax = plt.subplots(figsize=(10, 4))
    for (name, points), colour in zip(sorted(curves.items()), palette(len(curves))):
        steps = sorted(points)
        ax.plot(steps, [np.mean(points[s]) for s in steps], marker="o", color=colour, label=name)
    ax.set(xlabel="training step", ylabel="kNN accuracy (curve test set)", title="Learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save(fig, path), (
        "Learning curves: the peers' mean kNN at each periodic evaluation (a fixed subset of the test "
        "set), one line per condition, mean over its runs; a flat end means the runs plateaued."
    )


def _baseline(sweep: Sweep, row: dict) -> dict | None:
    """The fault-free complete run with the same resolved settings and seed (most shared axes wins)."""
    same = [
        r
        for r in sweep.complete
        if not r.get("faults") and all(r.get(c, "") == row.get(c, "") for c in MATCH_COLUMNS)
    ]
    return max(same, key=lambda r: sum(r.get(a) == row.get(a) for a in sweep.axes), default=None)


def _peer_knn(run: Path) -> dict[str, list[tuple[float, float]]]:
    path = run / DIAGNOSTICS_FILE
    if not path.is_file():
        return {}
    per_peer = json.loads(path.read_text(encoding="utf-8")).get("per_peer", {})
    return {
        peer: [
            (e["round"], e["knn"])
            for e in s.get("evals", [])
            if e.get("knn") is not None and e.get("round") is not None
        ]
        for peer, s in per_peer.items()
    }


def _gap_and_consensus_lines(axes: tuple, row: dict, run: Path, base_row: dict | None, base: Path | None):
    """Spectral gap and mean neighbour distance over rounds: the fault run solid, the baseline dotted."""
    gap_ax, dist_ax = axes
    for label, rdir, style in (
        (f"with faults ({row.get('run')})", run, "-"),
        (f"fault-free ({base_row.get('run')})" if base_row else None, base, ":"),
    ):
        if rdir is None or label is None:
            continue
        for ax, column in ((gap_ax, "spectral_gap"), (dist_ax, "neighbour_distance_mean")):
            xs, ys = round_series([rdir], column)
            ax.plot(xs, ys, style, marker=".", color="black" if style == "-" else "tab:grey", label=label)


def _knn_lines(knn_ax: plt.Axes, run: Path, base: Path | None) -> None:
    """Per-peer kNN of the fault run, and the baseline's mean over its peers (dotted)."""
    for peer, points in sorted(_peer_knn(run).items()):
        knn_ax.plot(*zip(*sorted(points)), marker="o", label=f"peer {peer}")
    base_points = [p for pts in _peer_knn(base).values() for p in pts] if base is not None else []
    if base_points:
        xs = sorted({x for x, _ in base_points})
        knn_ax.plot(
            xs,
            [np.mean([y for x2, y in base_points if x2 == x]) for x in xs],
            ":",
            marker="s",
            color="tab:grey",
            label="fault-free, peer mean",
        )


def plot_fault_run(sweep: Sweep, row: dict, path: Path) -> Plot:
    """One fault run (its lowest seed) beside the same seed's fault-free run."""
    run = sweep.run_dir(row)
    rounds = read_rounds(run) if run else []
    if not rounds:
        return None, f"fault run {row.get('run')} skipped: no rounds.csv."
    base_row = _baseline(sweep, row)
    base = sweep.run_dir(base_row) if base_row else None
    timed = [r for r in rounds if r.get("round") is not None and r.get("time_first") is not None]
    events = fault_events(run, timed)
    fig, (gap_ax, dist_ax, knn_ax) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    knn_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _gap_and_consensus_lines((gap_ax, dist_ax), row, run, base_row, base)
    _knn_lines(knn_ax, run, base)
    title = f"Fault run {sweep.condition(row)} (seed {row.get('seed')})"
    gap_ax.set(ylabel="1 − |λ₂(W)|", title=title, ylim=(-0.05, 1.1))
    dist_ax.set(ylabel="mean ‖θᵢ − nbr mean‖²", title="Consensus proxy (mean neighbour distance)")
    knn_ax.set(ylabel="kNN accuracy", xlabel="gossip round", title="Per-peer kNN accuracy")
    for ax in (gap_ax, dist_ax, knn_ax):
        mark_events(ax, events, label="fault events", y=0.98)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    caption = (
        f"Fault condition {sweep.condition(row)}, seed {row.get('seed')}: realised spectral gap, consensus "
        f"and per-peer kNN over rounds with {len(events)} fault event(s) marked, beside "
        + (f"the fault-free run {base_row.get('run')}." if base_row else "no matching fault-free run.")
    )
    return save(fig, path), caption


def plot_faults(sweep: Sweep, out_dir: Path) -> list[Plot]:
    rows = [r for r in sweep.complete if r.get("faults")]
    if not rows:
        return [(None, "fault timelines skipped: the sweep has no complete run with a fault schedule.")]
    out = []
    for i, (_, group) in enumerate(sorted(group_by(rows, sweep.condition).items())):
        first = min(
            group,
            key=lambda r: (as_float(r.get("seed")) is None, as_float(r.get("seed")) or 0, r.get("seed")),
        )
        out.append(plot_fault_run(sweep, first, out_dir / f"report_faults_{i + 1}.png"))
    return out
