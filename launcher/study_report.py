"""``dssl report <sweep dir>``: the robustness study's Markdown report with PNG plots (issue 7 §2).

Input: a sweep directory written by ``dssl sweep`` — ``grid.yaml`` (maybe with ``claims:``),
``results.csv`` (one row per run: status, seed, the grid's axis labels, the resolved objective /
partition / topology / faults and the run's summary figures) and per run the swarm run directory
(``rounds.csv``, ``diagnostics.json``, ``timeline.jsonl``). Only ``complete`` runs enter statistics.

Output, in the sweep dir: ``report.md``, ``report_*.png`` and (when the grid has claims)
``claims.csv``. Plots, each skipped with a one-line reason when the sweep has no data for it:

1. kNN accuracy vs Dirichlet α per method (IID drawn at α = 1e5, feature skew in a side panel);
2. the accuracy drop from IID per method and non-IID partition (paired by seed);
3. accuracy vs realised average connectivity |Ā| per topology;
4. consensus (mean neighbour distance, exact consensus distance) and spectral gap over rounds;
5. bytes sent vs accuracy, one point per run;
6. per fault condition: its spectral gap, consensus and per-peer kNN over rounds with the fault
   events marked, next to the same seed's fault-free run.

Means carry 95 % Student-t confidence intervals over seeds (:func:`launcher.claims.mean_ci`).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import yaml
from matplotlib.ticker import MaxNLocator

from launcher.claims import (
    ClaimResult,
    complete_rows,
    evaluate_claims,
    load_claims,
    mean_ci,
    write_claims_csv,
)
from launcher.report import fault_events
from launcher.grid import FIXED_COLUMNS

IID_ALPHA = 1e5  # the paper's tables write IID as Dirichlet α = 1e5
METRIC = "knn_mean"
# results.csv columns that are not grid axes (everything else is an axis label column)
RESOLVED_COLUMNS = FIXED_COLUMNS
FALLBACK_CONDITION = ("objective", "partition", "topology", "peers", "steps", "period", "faults")
_DIRICHLET = re.compile(r"^dirichlet[a-z_]*:(?:alpha=)?([0-9.eE+-]+)$")
_MATCH_COLUMNS = ("objective", "partition", "topology", "peers", "steps", "period", "seed")


@dataclass
class Sweep:
    """A loaded sweep directory: its rows, axis columns and grid."""

    path: Path
    rows: list[dict]
    fields: list[str]
    grid: dict

    @property
    def complete(self) -> list[dict]:
        return complete_rows(self.rows)

    @property
    def axes(self) -> list[str]:
        return [f for f in self.fields if f not in RESOLVED_COLUMNS]

    @property
    def condition_columns(self) -> list[str]:
        """What makes a condition: the grid's axes (or the resolved columns when there are none)."""
        return self.axes or [c for c in FALLBACK_CONDITION if c in self.fields]

    def condition(self, row: dict, columns: list[str] | None = None) -> str:
        cols = self.condition_columns if columns is None else columns
        return " / ".join(str(row.get(c, "")) for c in cols) or "all runs"

    def run_dir(self, row: dict) -> Path | None:
        return (self.path / row["run_dir"]) if row.get("run_dir") else None


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Read ``results.csv`` (and ``grid.yaml`` when present) of a sweep directory."""
    path = Path(sweep_dir)
    with (path / "results.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fields = list(reader.fieldnames or [])
    grid_path = path / "grid.yaml"
    grid = (yaml.safe_load(grid_path.read_text(encoding="utf-8")) or {}) if grid_path.is_file() else {}
    return Sweep(path=path, rows=rows, fields=fields, grid=grid)


# ---------------------------------------------------------------- helpers


def _float(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(out) else out


def alpha_of(partition: str) -> float | None:
    """Dirichlet α of a resolved partition spec (IID → 1e5); None for feature skew, shards, ..."""
    if partition == "iid":
        return IID_ALPHA
    match = _DIRICHLET.match(partition or "")
    return float(match.group(1)) if match else None


def _determined_by(rows: list[dict], column: str, key: Callable[[dict], object]) -> bool:
    """True when ``column``'s value is a function of ``key(row)`` over these rows."""
    seen: dict[object, str] = {}
    for r in rows:
        if seen.setdefault(key(r), r.get(column, "")) != r.get(column, ""):
            return False
    return True


def _series_columns(sweep: Sweep, rows: list[dict], key: Callable[[dict], object]) -> list[str]:
    """Condition columns that vary independently of the plotted x dimension ``key``."""
    return [c for c in sweep.condition_columns if not _determined_by(rows, c, key)]


def _per_seed(rows: list[dict], column: str) -> dict[str, float]:
    """Seed -> mean of ``column`` over these rows (empty cells skipped)."""
    by_seed: dict[str, list[float]] = {}
    for r in rows:
        v = _float(r.get(column))
        if v is not None:
            by_seed.setdefault(r.get("seed", ""), []).append(v)
    return {s: float(np.mean(v)) for s, v in by_seed.items()}


def _group(rows: list[dict], key: Callable[[dict], object]) -> dict[object, list[dict]]:
    groups: dict[object, list[dict]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return groups


def _err(mean: float | None, low: float | None) -> float:
    return 0.0 if mean is None or low is None else mean - low


def _pm(values: list[float], spec: str = ".3g") -> str:
    mean, low, _ = mean_ci(values)
    if mean is None:
        return "-"
    if low is None:
        return f"{mean:{spec}} (n=1)"
    return f"{mean:{spec}} ± {mean - low:{spec}}"


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _colours(n: int) -> list:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def read_rounds(run_dir: Path) -> list[dict]:
    """A run's ``rounds.csv`` as dicts of floats (empty cells → None); [] when absent."""
    path = run_dir / "rounds.csv"
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: _float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _round_series(runs: list[Path], column: str) -> tuple[np.ndarray, np.ndarray]:
    """Round numbers and the mean of ``column`` over runs at each round (NaN where none has it)."""
    per_round: dict[float, list[float]] = {}
    for run in runs:
        for r in read_rounds(run):
            if r.get("round") is not None:
                per_round.setdefault(r["round"], [])
                if r.get(column) is not None:
                    per_round[r["round"]].append(r[column])
    xs = sorted(per_round)
    return np.array(xs), np.array([np.mean(per_round[x]) if per_round[x] else np.nan for x in xs])


# ---------------------------------------------------------------- plots

Plot = tuple[Path | None, str]  # (png or None, caption or the reason it was skipped)


def plot_accuracy_vs_alpha(sweep: Sweep, path: Path) -> Plot:
    rows = [r for r in sweep.complete if _float(r.get(METRIC)) is not None]
    on_axis = [r for r in rows if alpha_of(r.get("partition", "")) is not None]
    skew = [r for r in rows if r.get("partition") == "feature_skew"]
    if len({alpha_of(r["partition"]) for r in on_axis}) < 2:
        return None, "accuracy vs α skipped: fewer than two IID / Dirichlet levels with complete runs."
    cols = _series_columns(sweep, on_axis + skew, lambda r: r.get("partition"))
    series = _group(on_axis, lambda r: sweep.condition(r, cols))
    skew_series = _group(skew, lambda r: sweep.condition(r, cols))
    names = sorted(set(series) | set(skew_series))
    colours = dict(zip(names, _colours(len(names))))
    if skew:
        fig, (ax, side) = plt.subplots(1, 2, figsize=(9, 4.5), sharey=True, gridspec_kw={"width_ratios": [4, 1]})
    else:
        fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, name in enumerate(names):
        offset = 10 ** (0.04 * (i - (len(names) - 1) / 2))  # spread error bars of one α apart
        points = []
        for alpha, group in sorted(_group(series.get(name, []), lambda r: alpha_of(r["partition"])).items()):
            mean, low, _ = mean_ci(list(_per_seed(group, METRIC).values()))
            points.append((alpha * offset, mean, _err(mean, low)))
        if points:
            xs, ys, es = zip(*points)
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=colours[name], label=name)
    alphas = sorted({alpha_of(r["partition"]) for r in on_axis})
    ax.set_xscale("log")
    ax.set_xticks(alphas)
    ax.set_xticklabels(["IID" if a == IID_ALPHA else f"{a:g}" for a in alphas])
    ax.minorticks_off()
    ax.set(xlabel="Dirichlet α (label skew; IID drawn at α = 1e5)", ylabel="kNN accuracy (mean ± 95 % CI)",
           title="Accuracy vs label skew")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title=" / ".join(cols) or None, title_fontsize=8)
    if skew:
        skew_names = sorted(skew_series)
        for i, name in enumerate(skew_names):
            mean, low, _ = mean_ci(list(_per_seed(skew_series[name], METRIC).values()))
            side.errorbar([i], [mean], yerr=[_err(mean, low)], marker="s", capsize=3, color=colours[name])
        side.set_xticks(range(len(skew_names)))
        side.set_xticklabels(skew_names, rotation=45, ha="right", fontsize=7)
        side.set(title="feature skew", xlim=(-0.7, len(skew_names) - 0.3))
        side.grid(alpha=0.3)
    return _save(fig, path), ("kNN accuracy against the Dirichlet α of the label split, per method, mean over "
                              "seeds with 95 % CIs" + ("; feature-skew runs in the side panel." if skew else "."))


def plot_drop(sweep: Sweep, path: Path) -> Plot:
    rows = [r for r in sweep.complete if _float(r.get(METRIC)) is not None]
    cols = _series_columns(sweep, rows, lambda r: r.get("partition"))
    series = _group(rows, lambda r: sweep.condition(r, cols))
    bars: dict[str, dict[str, tuple[float, float, int]]] = {}
    for name, group in series.items():
        by_part = _group(group, lambda r: r.get("partition"))
        if "iid" not in by_part:
            continue
        iid = _per_seed(by_part["iid"], METRIC)
        for part, prow in by_part.items():
            if part == "iid":
                continue
            other = _per_seed(prow, METRIC)
            drops = [iid[s] - other[s] for s in other if s in iid]
            if drops:
                mean, low, _ = mean_ci(drops)
                bars.setdefault(name, {})[part] = (mean, _err(mean, low), len(drops))
    if not bars:
        return None, "accuracy drop skipped: no condition has both IID and non-IID runs of the same seed."
    parts = sorted({p for b in bars.values() for p in b}, key=lambda p: (alpha_of(p) is None, -(alpha_of(p) or 0), p))
    names = sorted(bars)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(parts) + 3), 4.5))
    for i, (name, colour) in enumerate(zip(names, _colours(len(names)))):
        xs = [j + (i - (len(names) - 1) / 2) * width for j, p in enumerate(parts) if p in bars[name]]
        vals = [bars[name][p] for p in parts if p in bars[name]]
        ax.bar(xs, [v[0] for v in vals], width=width, yerr=[v[1] for v in vals], capsize=3, color=colour, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(parts)))
    ax.set_xticklabels(parts)
    ax.set(xlabel="non-IID partition", ylabel="kNN accuracy drop from IID (mean ± 95 % CI)",
           title="Accuracy drop from IID (paired by seed; smaller is more robust)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, title=" / ".join(cols) or None, title_fontsize=8)
    return _save(fig, path), "kNN accuracy at IID minus at each non-IID partition, paired by seed, mean with 95 % CIs."


def _topology_label(row: dict) -> str:
    return row.get("topology", "") + (" + faults" if row.get("faults") else "")


def plot_accuracy_vs_connectivity(sweep: Sweep, path: Path) -> Plot:
    rows = [r for r in sweep.complete
            if _float(r.get(METRIC)) is not None and _float(r.get("average_connectivity_mean")) is not None]
    if not rows:
        return None, "accuracy vs |Ā| skipped: no complete run has both kNN accuracy and average connectivity."
    cols = _series_columns(sweep, rows, _topology_label)
    topologies = sorted({_topology_label(r) for r in rows})
    colours = dict(zip(topologies, _colours(len(topologies))))
    others = sorted({sweep.condition(r, cols) for r in rows})
    markers = dict(zip(others, "os^DvP*X<>" * 3))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for (topo, other), group in sorted(_group(rows, lambda r: (_topology_label(r), sweep.condition(r, cols))).items()):
        x, y = _per_seed(group, "average_connectivity_mean"), _per_seed(group, METRIC)
        ax.scatter(list(x.values()), [y[s] for s in x], color=colours[topo], marker=markers[other], alpha=0.35, s=20)
        mx, lx, _ = mean_ci(list(x.values()))
        my, ly, _ = mean_ci(list(y.values()))
        ax.errorbar([mx], [my], xerr=[_err(mx, lx)], yerr=[_err(my, ly)], color=colours[topo],
                    marker=markers[other], markersize=8, capsize=3, markeredgecolor="black")
    for topo, group in _group(rows, _topology_label).items():  # one label per topology, above its points
        ax.annotate(topo, (np.mean([float(r["average_connectivity_mean"]) for r in group]),
                           max(float(r[METRIC]) for r in group)),
                    textcoords="offset points", xytext=(0, 12), ha="center", fontsize=8, color=colours[topo],
                    fontweight="bold")
    handles = [plt.Line2D([], [], color=colours[t], marker="o", linestyle="", label=t) for t in topologies]
    if len(others) > 1:
        handles += [plt.Line2D([], [], color="grey", marker=markers[o], linestyle="", label=o) for o in others]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="colour: topology" + (f"; marker: {' / '.join(cols)}" if len(others) > 1 else ""), title_fontsize=7)
    ax.margins(y=0.12)
    ax.set(xlabel="realised average connectivity |Ā| (mean over rounds)", ylabel="kNN accuracy",
           title="Accuracy vs realised connectivity (faint: one run; solid: mean ± 95 % CI)")
    ax.grid(alpha=0.3)
    return _save(fig, path), ("kNN accuracy against the realised average closed-neighbourhood size |Ā|, one faint "
                              "point per run and the mean with 95 % CIs per topology.")


MAX_LINES = 8  # more conditions than this: the consensus plot draws one line per topology instead


def _runs_by_condition(sweep: Sweep) -> tuple[dict[str, list[Path]], str]:
    """Run dirs with a rounds.csv per condition (or per topology when there are too many
    conditions to tell apart), and what the lines are."""
    with_rounds = [r for r in sweep.complete if sweep.run_dir(r) is not None and (sweep.run_dir(r) / "rounds.csv").is_file()]
    by_condition = _group(with_rounds, sweep.condition)
    if len(by_condition) <= MAX_LINES:
        return {k: [sweep.run_dir(r) for r in v] for k, v in by_condition.items()}, " / ".join(sweep.condition_columns)
    by_topology = _group(with_rounds, _topology_label)
    return {k: [sweep.run_dir(r) for r in v] for k, v in by_topology.items()}, "topology (all conditions)"


def plot_consensus(sweep: Sweep, path: Path) -> Plot:
    runs, what = _runs_by_condition(sweep)
    if not runs:
        return None, "consensus over rounds skipped: no complete run has a rounds.csv."
    has_exact = any(r.get("consensus_distance_exact") is not None for rs in runs.values() for run in rs
                    for r in read_rounds(run))
    panels = [("neighbour_distance_mean", "mean ‖θᵢ − nbr mean‖²", "Consensus proxy (mean neighbour distance)")]
    if has_exact:
        panels.append(("consensus_distance_exact", "(1/N) Σ‖θᵢ − θ̄‖²", "Exact consensus distance"))
    panels.append(("spectral_gap", "1 − |λ₂(W)|", "Spectral gap of the realised W"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3 * len(panels)), sharex=True)
    colours = _colours(len(runs))
    for ax, (column, ylabel, title) in zip(axes, panels):
        for (name, rs), colour in zip(sorted(runs.items()), colours):
            xs, ys = _round_series(rs, column)
            ax.plot(xs, ys, marker=".", color=colour, label=f"{name} (n={len(rs)})")
        finite = [line.get_ydata() for line in ax.get_lines()]
        if column != "spectral_gap" and finite and np.nanmin(np.concatenate(finite), initial=np.inf) > 0:
            ax.set_yscale("log")
        ax.set(ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=what, title_fontsize=7)
    axes[-1].set_xlabel("gossip round")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path), (f"Consensus and the realised spectral gap over rounds, one line per {what} "
                              "(mean over its runs).")


def plot_bytes(sweep: Sweep, path: Path) -> Plot:
    rows = [r for r in sweep.complete
            if _float(r.get(METRIC)) is not None and _float(r.get("bytes_out_total")) is not None]
    if not rows:
        return None, "bytes vs accuracy skipped: no complete run has both bytes sent and kNN accuracy."
    groups = _group(rows, sweep.condition)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for (name, group), colour in zip(sorted(groups.items()), _colours(len(groups))):
        ax.scatter([float(r["bytes_out_total"]) / 1e6 for r in group], [float(r[METRIC]) for r in group],
                   color=colour, label=name, s=30)
    ax.set(xlabel="MB sent by the swarm over the run", ylabel="kNN accuracy",
           title="Communication vs accuracy (one point per run)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=" / ".join(sweep.condition_columns),
              title_fontsize=7)
    return _save(fig, path), "Total bytes the swarm sent against the final kNN accuracy, one point per run."


def _baseline(sweep: Sweep, row: dict) -> dict | None:
    """The fault-free complete run with the same resolved settings and seed (most shared axes wins)."""
    same = [r for r in sweep.complete if not r.get("faults")
            and all(r.get(c, "") == row.get(c, "") for c in _MATCH_COLUMNS)]
    return max(same, key=lambda r: sum(r.get(a) == row.get(a) for a in sweep.axes), default=None)


def _peer_knn(run: Path) -> dict[str, list[tuple[float, float]]]:
    path = run / "diagnostics.json"
    if not path.is_file():
        return {}
    per_peer = json.loads(path.read_text(encoding="utf-8")).get("per_peer", {})
    return {peer: [(e["round"], e["knn"]) for e in s.get("evals", [])
                   if e.get("knn") is not None and e.get("round") is not None]
            for peer, s in per_peer.items()}


def _mark(ax: plt.Axes, events: list[dict]) -> None:
    for i, e in enumerate(events):
        ax.axvline(e["x"], color="red", linestyle="--", linewidth=1, alpha=0.7, label="fault events" if i == 0 else None)
        ax.annotate(e["label"], (e["x"], 0.98), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                    color="red", va="top", ha="right")


def plot_fault_run(sweep: Sweep, row: dict, path: Path) -> Plot:
    """One fault run (its lowest seed) beside the same seed's fault-free run."""
    run = sweep.run_dir(row)
    rounds = read_rounds(run) if run else []
    if not rounds:
        return None, f"fault run {row.get('run')} skipped: no rounds.csv."
    base_row = _baseline(sweep, row)
    base = sweep.run_dir(base_row) if base_row else None
    events = fault_events(run, [r for r in rounds if r.get("round") is not None and r.get("time_first") is not None])
    fig, (gap_ax, dist_ax, knn_ax) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    knn_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for label, rdir, style in ((f"with faults ({row.get('run')})", run, "-"),
                               (f"fault-free ({base_row.get('run')})" if base_row else None, base, ":")):
        if rdir is None or label is None:
            continue
        for ax, column in ((gap_ax, "spectral_gap"), (dist_ax, "neighbour_distance_mean")):
            xs, ys = _round_series([rdir], column)
            ax.plot(xs, ys, style, marker=".", color="black" if style == "-" else "tab:grey", label=label)
    for peer, points in sorted(_peer_knn(run).items()):
        knn_ax.plot(*zip(*sorted(points)), marker="o", label=f"peer {peer}")
    if base is not None:
        base_points = [p for pts in _peer_knn(base).values() for p in pts]
        if base_points:
            xs = sorted({x for x, _ in base_points})
            knn_ax.plot(xs, [np.mean([y for x2, y in base_points if x2 == x]) for x in xs], ":", marker="s",
                        color="tab:grey", label="fault-free, peer mean")
    gap_ax.set(ylabel="1 − |λ₂(W)|", title=f"Fault run {sweep.condition(row)} (seed {row.get('seed')})", ylim=(-0.05, 1.1))
    dist_ax.set(ylabel="mean ‖θᵢ − nbr mean‖²", title="Consensus proxy (mean neighbour distance)")
    knn_ax.set(ylabel="kNN accuracy", xlabel="gossip round", title="Per-peer kNN accuracy")
    for ax in (gap_ax, dist_ax, knn_ax):
        _mark(ax, events)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    caption = (f"Fault condition {sweep.condition(row)}, seed {row.get('seed')}: realised spectral gap, consensus "
               f"and per-peer kNN over rounds with {len(events)} fault event(s) marked, beside "
               + (f"the fault-free run {base_row.get('run')}." if base_row else "no matching fault-free run."))
    return _save(fig, path), caption


def plot_faults(sweep: Sweep, out_dir: Path) -> list[Plot]:
    rows = [r for r in sweep.complete if r.get("faults")]
    if not rows:
        return [(None, "fault timelines skipped: the sweep has no complete run with a fault schedule.")]
    out = []
    for i, (_, group) in enumerate(sorted(_group(rows, sweep.condition).items())):
        first = min(group, key=lambda r: (_float(r.get("seed")) is None, _float(r.get("seed")) or 0, r.get("seed")))
        out.append(plot_fault_run(sweep, first, out_dir / f"report_faults_{i + 1}.png"))
    return out


# ---------------------------------------------------------------- markdown


def _summary(sweep: Sweep, out: Path) -> list[str]:
    statuses = _group(sweep.rows, lambda r: r.get("status") or "unknown")
    seeds = sorted({r.get("seed", "") for r in sweep.complete}, key=lambda s: (_float(s) is None, _float(s) or 0, s))
    conditions = {sweep.condition(r) for r in sweep.rows}
    excluded = len(sweep.rows) - len(sweep.complete)
    lines = ["## Sweep", "",
             (f"* runs: {len(sweep.rows)} ({', '.join(f'{k} {len(v)}' for k, v in sorted(statuses.items()))}); "
              f"{excluded} not complete and excluded from every statistic"),
             f"* seeds with complete runs: {', '.join(seeds) or 'none'}; conditions: {len(conditions)}"]
    walls = [w for w in (_float(r.get("wall_s")) for r in sweep.rows) if w is not None]
    if walls:
        lines.append(f"* wall time of the runs, summed: {sum(walls) / 60:.1f} min (one after another on one host)")
    for axis in sweep.axes:
        values = list(dict.fromkeys(r.get(axis, "") for r in sweep.rows))
        lines.append(f"* axis `{axis}`: {', '.join(values)}")
    if (out / "grid.yaml").is_file():
        lines.append("* grid: [grid.yaml](grid.yaml); every run: [results.csv](results.csv)")
    return lines + [""]


def _results_table(sweep: Sweep) -> list[str]:
    columns = [("kNN acc", METRIC, ".3g", 1), ("linear acc", "linear_mean", ".3g", 1), ("\\|Ā\\|", "average_connectivity_mean", ".3g", 1),
               ("spectral gap", "spectral_gap_mean", ".3g", 1), ("consensus dist.", "consensus_distance", ".3g", 1),
               ("MB sent", "bytes_out_total", ".4g", 1e-6), ("wall s", "wall_s", ".4g", 1)]
    head = "| condition | complete / runs | " + " | ".join(c[0] for c in columns) + " |"
    lines = ["## Results per condition", "",
             (f"Mean ± 95 % CI half-width over seeds (Student t); only complete runs. Condition = "
              f"{' / '.join(sweep.condition_columns)}."), "", head, "|" + "---|" * (len(columns) + 2)]
    all_groups = _group(sweep.rows, sweep.condition)
    for name, group in sorted(all_groups.items()):
        done = complete_rows(group)
        cells = [_pm([v * scale for v in _per_seed(done, col).values()], spec) for _, col, spec, scale in columns]
        lines.append(f"| {name} | {len(done)} / {len(group)} | " + " | ".join(cells) + " |")
    return lines + [""]


def _ci(low: float | None, high: float | None) -> str:
    return "n < 2: no CI" if low is None else f"[{low:.3g}, {high:.3g}]"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def claims_markdown(results: list[ClaimResult]) -> list[str]:
    """The claims table: both sides, the paired difference, the monotone check and the verdict."""
    lines = ["## Claims", "",
             ("reproduced = the means satisfy the claim, the 95 % CI of the per-seed difference a − b excludes 0 "
              "on the claimed side, and the monotone order (if any) holds on the means. "
              "Raw numbers: [claims.csv](claims.csv)."), "",
             "| claim | a | mean a [95 % CI] | b | mean b [95 % CI] | a − b [95 % CI] | seeds | monotone | reproduced |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        mono = "-"
        if r.monotone is not None:
            steps = " → ".join(f"{k} {_num(v)}" for k, v in r.monotone.means.items())
            mono = f"{'holds' if r.monotone.holds else 'violated'}: {steps}"
        pairing = "paired" if r.pairing == "paired" else "Welch"
        lines.append(
            f"| {r.claim.label} | {r.a.description} | {_num(r.a.mean)} {_ci(r.a.low, r.a.high)} | {r.b.description} | "
            f"{_num(r.b.mean)} {_ci(r.b.low, r.b.high)} | {_num(r.diff_mean)} {_ci(r.diff_low, r.diff_high)} "
            f"({pairing}) | {r.seeds} | {mono} | **{'yes' if r.reproduced else 'no'}** |")
    notes = [f"* claim {r.claim.id}: {'; '.join(r.reasons)}" for r in results if r.reasons]
    return lines + ([""] + notes if notes else []) + [""]


def _runs_table(sweep: Sweep, out: Path) -> list[str]:
    lines = ["## Runs", "", "| run | status | seed | condition | run dir |", "|---|---|---|---|---|"]
    for r in sweep.rows:
        run = sweep.run_dir(r)
        link = "-"
        if run is not None:
            rel = os.path.relpath(run, out)
            link = f"[{rel}]({rel})" + (f" ([report]({rel}/report.md))" if (run / "report.md").is_file() else "")
        lines.append(f"| {r.get('run', '')} | {r.get('status', '')} | {r.get('seed', '')} | {sweep.condition(r)} | {link} |")
    return lines + [""]


def _markdown(sweep: Sweep, plots: list[Plot], claims: list[ClaimResult] | None, out: Path) -> str:
    lines = [f"# Robustness study: {sweep.path.name}", ""]
    if sweep.grid.get("description"):
        lines += [str(sweep.grid["description"]).strip(), ""]
    lines += _summary(sweep, out) + _results_table(sweep)
    if claims:
        lines += claims_markdown(claims)
    lines += ["## Plots", ""]
    for png, caption in plots:
        if png is not None:
            lines += [f"![{png.stem}]({png.name})", "", caption, ""]
    skipped = [caption for png, caption in plots if png is None]
    if skipped:
        lines += ["Not drawn:", ""] + [f"* {c}" for c in skipped] + [""]
    lines += _runs_table(sweep, out)
    return "\n".join(lines)


def write_study_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Draw the plots, evaluate the grid's claims (writing claims.csv) and write ``report.md``.

    Everything goes into ``out_dir`` (default: the sweep directory); a separate ``out_dir`` (e.g.
    ``docs/results``) also gets copies of ``grid.yaml`` and ``results.csv`` so that the report
    stands on its own, and its run links point back into the sweep directory."""
    sweep = load_sweep(sweep_dir)
    out = Path(out_dir) if out_dir is not None else sweep.path
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != sweep.path.resolve():
        for name in ("grid.yaml", "results.csv"):
            if (sweep.path / name).is_file():
                shutil.copyfile(sweep.path / name, out / name)
    for old in out.glob("report_*.png"):
        old.unlink()  # a plot skipped this time must not survive from an earlier report
    plots: list[Plot] = [
        plot_accuracy_vs_alpha(sweep, out / "report_accuracy_alpha.png"),
        plot_drop(sweep, out / "report_drop.png"),
        plot_accuracy_vs_connectivity(sweep, out / "report_connectivity.png"),
        plot_consensus(sweep, out / "report_consensus.png"),
        plot_bytes(sweep, out / "report_bytes.png"),
        *plot_faults(sweep, out),
    ]
    claims = load_claims(sweep.path / "grid.yaml") if (sweep.path / "grid.yaml").is_file() else []
    results = evaluate_claims(sweep.rows, claims) if claims else None
    if results:
        write_claims_csv(results, out / "claims.csv")
    elif (out / "claims.csv").is_file():
        (out / "claims.csv").unlink()  # the grid no longer has claims: no stale verdicts
    report = out / "report.md"
    report.write_text(_markdown(sweep, plots, results, out), encoding="utf-8")
    return report


def study_report_main(argv: list[str]) -> int:
    """``dssl report SWEEP_DIR [--out DIR]``: report.md + PNGs (+ claims.csv) of a sweep."""
    p = argparse.ArgumentParser(prog="dssl report", description="Markdown + PNG report of a sweep directory.")
    p.add_argument("sweep_dir", type=Path, help="a sweep directory (contains results.csv)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the report, plots, claims.csv and copies of grid.yaml + results.csv here "
                        "(e.g. docs/results); default: the sweep directory")
    args = p.parse_args(argv)
    if not (args.sweep_dir / "results.csv").is_file():
        print(f"dssl report: error: {args.sweep_dir} is not a sweep directory (no results.csv)", file=sys.stderr)
        return 2
    report = write_study_report(args.sweep_dir, args.out)
    claims = report.parent / "claims.csv"
    pngs = len(list(report.parent.glob("report_*.png")))
    print(f"dssl report: wrote {report} and {pngs} plots" + (f"; claims: {claims}" if claims.is_file() else ""))
    return 0
