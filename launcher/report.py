"""``dssl report <run dir>``: a Markdown report with PNG plots of one swarm run (issue 7 §2).

Inputs: the run's ``diagnostics.json`` (recomputed through :func:`peer.cli.swarm_diagnostics` so a
report of a crashed or older run is still current), ``timeline.jsonl`` (launcher and fault events)
and ``manifest.json``. Outputs, in the run dir: ``report.md`` and ``report_*.png``:

* per-peer kNN accuracy over rounds;
* consensus over rounds: the mean neighbour distance (per-round proxy), the exact consensus
  distance at the rounds the peers saved parameter snapshots (markers, own panel), and the realised
  spectral gap 1 − |λ₂(W)|, with the exact final consensus distance in the text;
* bytes sent per round (per peer and swarm total);
* representation diagnostics on the shared probe batch (:mod:`peer.probe`): per-peer collapse std
  and A-MMD to the neighbourhood-averaged model over rounds;

every timeline plot carries the run's fault / crash / restart events as vertical lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from launcher.rundir import read_timeline  # noqa: E402
from peer.cli import swarm_diagnostics  # noqa: E402

MARKED_EVENTS = {"fault", "crashed", "signal"}  # always marked; spawned/exited only mid-run (restarts)


def fault_events(run_dir: Path, rounds: list[dict]) -> list[dict]:
    """Timeline events worth marking, each with ``x`` = its position on the round axis.

    A round's time is the first peer's record of it; an event is placed by linear interpolation
    between those times. Spawn / exit events count only between the first and last round (a
    restart or a kill, not the normal start and end)."""
    events = read_timeline(run_dir / "timeline.jsonl")
    if not rounds:
        return []
    times = np.array([r["time_first"] for r in rounds], dtype=float)
    numbers = np.array([r["round"] for r in rounds], dtype=float)
    marked = []
    for e in events:
        t = e.get("t")
        if t is None:
            continue
        mid_run = times[0] < t < times[-1]
        if e.get("event") in MARKED_EVENTS or (e.get("event") in ("spawned", "exited") and mid_run):
            x = float(np.interp(t, times, numbers)) if len(times) > 1 else float(numbers[0])
            label = e.get("event") + (f" {e['action']}" if e.get("action") else "") + (f" {e['peer']}" if e.get("peer") else "")
            marked.append({"x": x, "label": label, "t_rel": e.get("t_rel")})
    return marked


def _mark_events(ax: plt.Axes, events: list[dict]) -> None:
    for i, e in enumerate(events):
        ax.axvline(e["x"], color="red", linestyle="--", linewidth=1, alpha=0.7,
                   label="fault / restart events" if i == 0 else None)
        ax.annotate(e["label"], (e["x"], 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    fontsize=7, color="red", va="top", ha="right")


def _save(fig: plt.Figure, path: Path) -> Path:
    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # rounds are whole numbers
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_knn(diag: dict, events: list[dict], path: Path) -> Path | None:
    """kNN accuracy of every peer at each of its evaluations (x = round)."""
    series = {p: [e for e in s["evals"] if e.get("knn") is not None] for p, s in diag["per_peer"].items()}
    if not any(series.values()):
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for peer, evals in sorted(series.items()):
        if evals:
            ax.plot([e["round"] for e in evals], [e["knn"] for e in evals], marker="o", label=peer)
    _mark_events(ax, events)
    ax.set(xlabel="gossip round", ylabel="kNN accuracy", title="Per-peer kNN accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _log_if_positive(ax: plt.Axes, values: list[float]) -> None:
    """Log y scale when every plotted value is > 0 (a zero or negative value would vanish)."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0:
        ax.set_yscale("log")


def plot_consensus(diag: dict, events: list[dict], path: Path) -> Path | None:
    """Panels over rounds: mean neighbour distance (log), the exact consensus distance at snapshot
    rounds (log, markers; only when snapshots exist) and the realised spectral gap."""
    rounds = diag["rounds"]
    if not rounds:
        return None
    exact = diag.get("consensus_exact_rounds") or []
    x = [r["round"] for r in rounds]
    fig, axes = plt.subplots(3 if exact else 2, 1, figsize=(7, 8.5 if exact else 6), sharex=True)
    top, bottom = axes[0], axes[-1]
    dist = [r["neighbour_distance_mean"] if r["neighbour_distance_mean"] is not None else np.nan for r in rounds]
    top.plot(x, dist, marker=".", color="tab:blue")
    _log_if_positive(top, dist)
    top.set(ylabel="mean ||θ_i − nbr mean||²", title="Consensus proxy (mean neighbour distance)")
    top.grid(alpha=0.3)
    _mark_events(top, events)
    if exact:
        middle = axes[1]
        values = [e["consensus_distance"] for e in exact]
        middle.plot([e["round"] for e in exact], values, linestyle="none", marker="D", markersize=5,
                    color="tab:purple", label="(1/N) Σ‖θ_i − θ̄‖² of the published params")
        _log_if_positive(middle, values)
        middle.set(ylabel="(1/N) Σ‖θ_i − θ̄‖²",
                   title="Exact consensus distance (parameter snapshots, pre-mix)")
        middle.grid(alpha=0.3)
        _mark_events(middle, events)
        middle.legend(fontsize=8, loc="best")
    gaps = [r["spectral_gap"] if r["spectral_gap"] is not None else np.nan for r in rounds]
    bottom.plot(x, gaps, marker=".", color="tab:green", label="spectral gap 1−|λ₂|")
    bottom.set(xlabel="gossip round", ylabel="1 − |λ₂(W)|", title="Spectral gap of the realised W",
               ylim=(-0.05, 1.05))
    bottom.grid(alpha=0.3)
    _mark_events(bottom, events)
    bottom.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_representation(diag: dict, events: list[dict], path: Path) -> Path | None:
    """Two panels over rounds, one line per peer: collapse std of the probe embeddings (SimSiam §4.1:
    ~1 healthy, 0 collapsed) and the A-MMD between the local and the neighbourhood-averaged model's
    embeddings (PAPER.md Eq. 6)."""
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
    bottom.set(xlabel="gossip round", ylabel="A-MMD(local, mixed)",
               title="A-MMD between local and neighbourhood-averaged embeddings")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        _mark_events(ax, events)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_bytes(diag: dict, events: list[dict], path: Path) -> Path | None:
    """Bytes sent (served to neighbours) per round, per peer and in total."""
    if not diag["rounds"]:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for peer, s in sorted(diag["per_peer"].items()):
        pts = [(r["round"], r["bytes_out"] / 1e6) for r in s["rounds"] if r.get("bytes_out") is not None]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=peer)
    ax.plot([r["round"] for r in diag["rounds"]], [r["bytes_out"] / 1e6 for r in diag["rounds"]],
            color="black", linewidth=2, label="swarm total")
    _mark_events(ax, events)
    ax.set(xlabel="gossip round", ylabel="MB sent in the round", title="Bytes sent per round")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _exact_rounds_line(diag: dict) -> str:
    """Summary line: how many snapshot rounds have an exact consensus distance, and the last one."""
    exact = diag.get("consensus_exact_rounds") or []
    last = f" (last: round {exact[-1]['round']}, {_fmt(exact[-1]['consensus_distance'])})" if exact else ""
    return f"* exact consensus distance from parameter snapshots: {len(exact)} snapshot rounds{last}"


def _markdown(run_dir: Path, diag: dict, events: list[dict], plots: list[Path]) -> str:
    manifest = json.loads((run_dir / "manifest.json").read_text()) if (run_dir / "manifest.json").is_file() else {}
    rounds = diag["rounds"]
    lines = [f"# Swarm report: {run_dir.name}", ""]
    if manifest.get("command"):
        lines += [f"Command: `{' '.join(map(str, manifest['command']))}`", ""]
    lines += [
        "## Summary", "",
        f"* peers: {len(diag['peers'])} ({', '.join(diag['peers'])}); rounds logged: {len(rounds)}",
        f"* exact consensus distance at the end (1/N) Σ‖θᵢ − θ̄‖²: {_fmt(diag['consensus_distance_exact'])}",
        f"* realised spectral gap 1 − |λ₂(W)|: mean {_fmt(diag['spectral_gap_mean'])}, "
        f"min {_fmt(diag['spectral_gap_min'])}",
        f"* realised connectivity: mean |Ā| {_fmt(diag['average_connectivity_mean'])}, mean harmonic "
        f"|A| {_fmt(diag['harmonic_connectivity_mean'])}",
        _exact_rounds_line(diag),
        f"* final mean collapse std (√d · std of L2-normalised probe embeddings; 0 = collapsed): "
        f"{_fmt(diag.get('collapse_std_mean'))}",
        f"* final mean A-MMD (local vs neighbourhood-averaged embeddings of the probe batch): "
        f"{_fmt(diag.get('a_mmd_mean'))}",
        f"* bytes sent in total: {diag['bytes_out_total'] / 1e6:.1f} MB",
        f"* fault / restart events marked: {len(events)}", "",
        "## Per-peer kNN accuracy", "",
        "| peer | kNN first | kNN last | rounds |", "|---|---|---|---|",
    ]
    for peer, s in sorted(diag["per_peer"].items()):
        evals = [e for e in s["evals"] if e.get("knn") is not None]
        first, last = (evals[0]["knn"], evals[-1]["knn"]) if evals else (None, None)
        lines.append(f"| {peer} | {_fmt(first)} | {_fmt(last)} | {len(s['rounds'])} |")
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    if events:
        lines += ["", "## Events", "", "| round (interp.) | t_rel (s) | event |", "|---|---|---|"]
        lines += [f"| {e['x']:.1f} | {_fmt(e['t_rel'], '.1f')} | {e['label']} |" for e in events]
    lines += ["", "Per-round figures: `rounds.csv`; everything: `diagnostics.json`.", ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path) -> Path:
    """Recompute the diagnostics, draw the plots and write ``report.md``; returns its path."""
    run_dir = Path(run_dir)
    diag = swarm_diagnostics(run_dir)
    events = fault_events(run_dir, diag["rounds"])
    drawn = [plot_knn(diag, events, run_dir / "report_knn.png"),
             plot_consensus(diag, events, run_dir / "report_consensus.png"),
             plot_bytes(diag, events, run_dir / "report_bytes.png"),
             plot_representation(diag, events, run_dir / "report_representation.png")]
    plots = [p for p in drawn if p is not None]
    report = run_dir / "report.md"
    report.write_text(_markdown(run_dir, diag, events, plots), encoding="utf-8")
    return report


def report_main(argv: list[str]) -> int:
    """``dssl report RUN_DIR``: write report.md + PNG plots into the run directory."""
    p = argparse.ArgumentParser(prog="dssl report", description="Markdown + PNG report of a swarm run directory.")
    p.add_argument("run_dir", type=Path, help="a run directory (runs/<ts>-<name>)")
    args = p.parse_args(argv)
    if not (args.run_dir / "peers").is_dir():
        print(f"dssl report: error: {args.run_dir} is not a run directory (no peers/)", file=sys.stderr)
        return 2
    report = write_report(args.run_dir)
    print(f"dssl report: wrote {report} and {len(list(args.run_dir.glob('report_*.png')))} plots")
    return 0
