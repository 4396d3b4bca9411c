"""``dssl report <run dir>``: a Markdown report with PNG plots of one swarm run.

Inputs: the run's ``diagnostics.json`` (recomputed by :func:`analysis.diagnostics.write_diagnostics`
so a report of a crashed or older run is still current), ``timeline.jsonl`` (launcher and fault
events) and ``manifest.json``. Outputs, in the run dir: ``report.md`` and ``report_*.png``
(:mod:`analysis.run_plots`):

* per-peer kNN accuracy over rounds;
* consensus over rounds: the mean neighbour distance (per-round proxy), the exact consensus
  distance at the rounds the peers saved parameter snapshots (markers, own panel), and the realised
  spectral gap 1 − |λ₂(W)|, with the exact final consensus distance in the text;
* bytes sent per round (per peer and swarm total);
* representation diagnostics on the shared probe batch (:mod:`peer.probe`): per-peer collapse std
  and A-MMD to the neighbourhood-averaged model over rounds;
* when ``consensus.json`` exists (:mod:`peer.consensus`, written by the launcher): the consensus
  model θ̄'s kNN / linear / fine-tune accuracy in a row beside each live peer's final kNN / linear;
* when the baselines were trained (``baselines/``, :mod:`analysis.baselines`): the swarm against
  each peer alone and a centralised model, with the paired gain and its 95 % CI;

every timeline plot carries the run's fault / crash / restart events as vertical lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from analysis.baselines import BASELINES_DIR, format_summary, summarize
from analysis.diagnostics import write_diagnostics
from analysis.run_plots import plot_bytes, plot_consensus, plot_knn, plot_representation
from analysis.timeline import read_timeline
from peer.rundir import CONSENSUS_FILE, MANIFEST_FILE, REPORT_FILE, TIMELINE_FILE

MARKED_EVENTS = {"fault", "crashed", "signal"}  # always marked; spawned/exited only mid-run (restarts)


def fault_events(run_dir: Path, rounds: list[dict]) -> list[dict]:
    """Timeline events worth marking, each with ``x`` = its position on the round axis.

    A round's time is the first peer's record of it; an event is placed by linear interpolation
    between those times. Spawn / exit events count only between the first and last round (a
    restart or a kill, not the normal start and end)."""
    events = read_timeline(run_dir / TIMELINE_FILE)
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
            label = (
                e.get("event")
                + (f" {e['action']}" if e.get("action") else "")
                + (f" {e['peer']}" if e.get("peer") else "")
            )
            marked.append({"x": x, "label": label, "t_rel": e.get("t_rel")})
    return marked


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _exact_rounds_line(diag: dict) -> str:
    """Summary line: how many snapshot rounds have an exact consensus distance, and the last one."""
    exact = diag.get("consensus_exact_rounds") or []
    if not exact:
        return f"* exact consensus distance from parameter snapshots: {len(exact)} snapshot rounds"
    encoder = exact[-1].get("encoder_consensus_distance")
    of_encoder = "" if encoder is None else f"; of the encoder: {_fmt(encoder)}"
    last = f" (last: round {exact[-1]['round']}, {_fmt(exact[-1]['consensus_distance'])}{of_encoder})"
    return f"* exact consensus distance from parameter snapshots: {len(exact)} snapshot rounds{last}"


def _consensus_lines(run_dir: Path) -> list[str]:
    """The consensus-model section from ``consensus.json`` (none when the file does not exist)."""
    path = run_dir / CONSENSUS_FILE
    if not path.is_file():
        return []
    c = json.loads(path.read_text())
    ft = c.get("fine_tune") or {}
    protocol = (
        f"fine-tune: {ft['images']} labelled images, {ft['epochs']} epochs, {ft['optimizer']} lr "
        f"{ft['lr']:g}, batch {ft['batch_size']}, augmentation {ft['augmentation']}"
        if ft
        else "fine-tune: off"
    )
    lines = [
        "",
        "## Consensus model θ̄",
        "",
        f"θ̄ = data-size-weighted mean of the final models of the {len(c['peers'])} live peers "
        f"(weights: {c['weighting']}); test set {c['test_size']} images, kNN bank / probe "
        f"{c['bank_size']} images; {protocol}. Peer rows: each peer's own final evaluation.",
        "",
        "| model | weight | kNN | linear | fine-tune |",
        "|---|---|---|---|---|",
    ]
    for p in c["peers"]:
        lines.append(
            f"| {p['peer_id']} | {_fmt(p['weight'], '.3f')} | {_fmt(p['knn'])} | {_fmt(p['linear'])} | - |"
        )
    lines.append(f"| θ̄ | 1 | {_fmt(c['knn'])} | {_fmt(c['linear'])} | {_fmt(ft.get('accuracy'))} |")
    return lines


def _baseline_lines(run_dir: Path) -> list[str]:
    """The swarm-vs-baselines section (none when no baseline was trained)."""
    if not (run_dir / BASELINES_DIR).is_dir():
        return []
    text = format_summary(summarize(run_dir))
    return ["", "## Does the swarm pay? Local-only and centralised baselines", "", "```", text, "```"]


def _markdown(run_dir: Path, diag: dict, events: list[dict], plots: list[Path]) -> str:
    manifest_path = run_dir / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    rounds = diag["rounds"]
    lines = [f"# Swarm report: {run_dir.name}", ""]
    if manifest.get("command"):
        lines += [f"Command: `{' '.join(map(str, manifest['command']))}`", ""]
    lines += [
        "## Summary",
        "",
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
        f"* fault / restart events marked: {len(events)}",
        "",
        "## Per-peer kNN accuracy",
        "",
        "| peer | kNN first | kNN last | rounds |",
        "|---|---|---|---|",
    ]
    for peer, s in sorted(diag["per_peer"].items()):
        evals = [e for e in s["evals"] if e.get("knn") is not None]
        first, last = (evals[0]["knn"], evals[-1]["knn"]) if evals else (None, None)
        lines.append(f"| {peer} | {_fmt(first)} | {_fmt(last)} | {len(s['rounds'])} |")
    lines += _consensus_lines(run_dir) + _baseline_lines(run_dir)
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    if events:
        lines += ["", "## Events", "", "| round (interp.) | t_rel (s) | event |", "|---|---|---|"]
        lines += [f"| {e['x']:.1f} | {_fmt(e['t_rel'], '.1f')} | {e['label']} |" for e in events]
    lines += ["", "Per-round figures: `rounds.csv`; everything: `diagnostics.json`.", ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path) -> Path:
    """Recompute the diagnostics, draw the plots and write ``report.md``; returns its path."""
    run_dir = Path(run_dir)
    diag = write_diagnostics(run_dir)
    events = fault_events(run_dir, diag["rounds"])
    drawn = [
        plot_knn(diag, events, run_dir / "report_knn.png"),
        plot_consensus(diag, events, run_dir / "report_consensus.png"),
        plot_bytes(diag, events, run_dir / "report_bytes.png"),
        plot_representation(diag, events, run_dir / "report_representation.png"),
    ]
    plots = [p for p in drawn if p is not None]
    report = run_dir / REPORT_FILE
    report.write_text(_markdown(run_dir, diag, events, plots), encoding="utf-8")
    return report
