"""A sweep's ``results.csv``: its columns, written from the run manifests, read back typed.

One row per run of the sweep, in grid order: ``run, status, seed``, then one column per grid axis
(the run's label), then :data:`RESULT_COLUMNS_TAIL` — the run's resolved settings (from its
``run.json``) and, for a complete run, its figures: kNN over its peers (``summary.json``, written
by :func:`analysis.collect.collect`), the linear probe over its peers (each peer's ``final.json``)
and the swarm diagnostics (``diagnostics.json``); where the sweep evaluated them, the consensus
model θ̄ (``consensus.json``) and the baselines (``baselines/``: local-only mean over the peers,
centralised, and the paired swarm − local-only gain with its 95 % CI; :mod:`analysis.baselines`).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

from analysis.baselines import METRICS, summarize
from peer.atomic_file import replacing
from peer.rundir import (
    DIAGNOSTICS_FILE,
    FINAL_FILE,
    PEERS_DIR,
    RESULTS_CSV,
    RUN_MANIFEST_FILE,
    SUMMARY_FILE,
    SWEEP_FILE,
    SWEEP_RUNS_DIR,
)

BASELINE_COLUMNS = tuple(
    [f"{who}_{m}" for who in ("consensus", "local_only", "centralised") for m in METRICS]
    + [f"gain_{m}{part}" for m in METRICS for part in ("", "_ci_low", "_ci_high")]
)
RESULT_COLUMNS_HEAD = ("run", "status", "seed")  # then the axis names, then RESULT_COLUMNS_TAIL
RESULT_COLUMNS_TAIL = (
    "objective",
    "partition",
    "topology",
    "peers",
    "steps",
    "period",
    "faults",
    "knn_mean",
    "knn_std",
    "knn_min",
    "knn_max",
    "knn_init_mean",
    "linear_mean",
    "consensus_distance",
    "encoder_consensus_distance",
    "spectral_gap_mean",
    "spectral_gap_min",
    "average_connectivity_mean",
    "harmonic_connectivity_mean",
    "bytes_out_total",
    "rounds_min",
    "collapse_std_mean",
    "a_mmd_mean",
    "knn_last_quarter_gain",
    *BASELINE_COLUMNS,
    "wall_s",
    "run_dir",
)
FIXED_COLUMNS = frozenset(RESULT_COLUMNS_HEAD + RESULT_COLUMNS_TAIL)  # every column that is not an axis

_INT_COLUMNS = {"seed", "peers", "steps", "period", "bytes_out_total", "rounds_min"}
_TEXT_COLUMNS = {"objective", "partition", "topology", "faults", "run_dir"}
_FLOAT_COLUMNS = set(RESULT_COLUMNS_TAIL) - _INT_COLUMNS - _TEXT_COLUMNS
# a complete run's figures (not its label or settings): the columns results.csv gains over time
MEASURED_COLUMNS = frozenset(_FLOAT_COLUMNS | {"bytes_out_total", "rounds_min"})
_MANIFEST_COLUMNS = ("objective", "partition", "topology", "peers", "steps", "period", "wall_s", "run_dir")
_DIAGNOSTIC_COLUMNS = (
    "encoder_consensus_distance",
    "spectral_gap_mean",
    "spectral_gap_min",
    "average_connectivity_mean",
    "harmonic_connectivity_mean",
    "bytes_out_total",
    "collapse_std_mean",
    "a_mmd_mean",
    "knn_last_quarter_gain",
)


def read_json(path: Path) -> dict | None:
    """A JSON object file, or None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def result_columns(axes: list[str]) -> list[str]:
    return [*RESULT_COLUMNS_HEAD, *axes, *RESULT_COLUMNS_TAIL]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _finite_values(values: list[Any]) -> list[float]:
    return [v for v in map(_finite, values) if v is not None]


def _run_metrics(run_path: Path) -> dict[str, Any]:
    """The numbers of a complete run: kNN over its peers (summary.json, written by collect), the
    linear probe over its peers (each peer's final.json) and the swarm diagnostics
    (diagnostics.json); keys a file lacks stay None."""
    summary = read_json(run_path / SUMMARY_FILE) or {}
    finals = [read_json(p) or {} for p in sorted(run_path.glob(f"{PEERS_DIR}/*/{FINAL_FILE}"))]
    linear = _finite_values([(f.get("eval_final") or {}).get("linear") for f in finals])
    diagnostics = read_json(run_path / DIAGNOSTICS_FILE) or {}
    peers = summary.get("peers") or []
    knn = _finite_values([p.get("knn") for p in peers])
    init = _finite_values([p.get("knn_init") for p in peers])
    out: dict[str, Any] = {
        "knn_mean": statistics.fmean(knn) if knn else None,
        "knn_std": statistics.pstdev(knn) if knn else None,  # spread over this run's peers
        "knn_min": min(knn, default=None),
        "knn_max": max(knn, default=None),
        "knn_init_mean": statistics.fmean(init) if init else None,
        "linear_mean": statistics.fmean(linear) if linear else None,
        "consensus_distance": _finite(summary.get("consensus_distance")),
        "rounds_min": summary.get("min_rounds"),
    }
    for key in _DIAGNOSTIC_COLUMNS:
        out[key] = _finite(diagnostics.get(key))
    return {**out, **_baseline_metrics(run_path)}


def _baseline_metrics(run_path: Path) -> dict[str, Any]:
    """θ̄, local-only mean, centralised and the paired gain; None where not evaluated."""
    summary = summarize(run_path)
    out: dict[str, Any] = {}
    for m in METRICS:
        gain = summary.gain.get(m)
        out[f"consensus_{m}"] = _finite(summary.consensus.get(m))
        out[f"local_only_{m}"] = _finite(summary.mean("alone", m))
        out[f"centralised_{m}"] = _finite(summary.centralised.get(m))
        for part in ("mean", "ci_low", "ci_high"):
            value = getattr(gain, part) if gain is not None else None
            out[f"gain_{m}" + ("" if part == "mean" else f"_{part}")] = _finite(value)
    return out


def _row(sweep_dir: Path, manifest: dict, axes: list[str]) -> dict[str, Any]:
    labels = manifest.get("axes") or {}
    faults = manifest.get("faults")
    row: dict[str, Any] = {
        "run": manifest.get("name"),
        "status": manifest.get("status"),
        "seed": manifest.get("seed"),
        **{axis: labels.get(axis) for axis in axes},
        **{key: manifest.get(key) for key in _MANIFEST_COLUMNS},
        "faults": Path(faults).name if faults else None,
    }
    if manifest.get("status") == "complete" and manifest.get("run_dir"):
        row.update(_run_metrics(Path(sweep_dir) / manifest["run_dir"]))
    return row


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value)


def _manifests_in_order(sweep_dir: Path) -> tuple[list[dict], list[str]]:
    """Every run.json of the sweep in grid order (then any others by name), and the axes: the
    grid's, then any other axis a manifest names."""
    order = read_json(sweep_dir / SWEEP_FILE) or {}
    manifests = {
        m["name"]: m
        for m in (read_json(p) for p in sorted(sweep_dir.glob(f"{SWEEP_RUNS_DIR}/*/{RUN_MANIFEST_FILE}")))
        if m is not None and m.get("name")
    }
    names = [n for n in order.get("runs", []) if n in manifests]
    names += sorted(set(manifests) - set(names))
    axes = list(order.get("axes", []))
    for name in names:
        axes += [a for a in manifests[name].get("axes") or {} if a not in axes]
    return [manifests[name] for name in names], axes


def write_results(sweep_dir: str | Path) -> Path:
    """Rewrite ``results.csv`` (atomically) from every run.json of the sweep and each complete run's
    summary.json / diagnostics.json: runs in grid order (then any others by name), axes as columns."""
    sweep_dir = Path(sweep_dir)
    manifests, axes = _manifests_in_order(sweep_dir)
    columns = result_columns(axes)
    path = sweep_dir / RESULTS_CSV
    with replacing(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for manifest in manifests:
            row = _row(sweep_dir, manifest, axes)
            writer.writerow([_cell(row.get(c)) for c in columns])
    return path


def sweep_holding(run_dir: str | Path) -> Path | None:
    """The sweep directory a run directory lies in (``<sweep>/runs/<name>/<run>`` beside the sweep's
    sweep.json), or None for a run outside any sweep: work added to a run afterwards (``dssl
    baselines``) rewrites that sweep's results.csv so that its report shows it."""
    run_dir = Path(run_dir).resolve()
    if len(run_dir.parents) < 3 or run_dir.parents[1].name != SWEEP_RUNS_DIR:
        return None
    sweep_dir = run_dir.parents[2]
    return sweep_dir if (sweep_dir / SWEEP_FILE).is_file() else None


def _parse(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in _INT_COLUMNS:
        try:
            return int(text)
        except ValueError:
            return float(text)
    if column in _FLOAT_COLUMNS:
        return float(text)
    return text


def read_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a sweep's ``results.csv``: numbers as int / float, empty cells as None, axis
    labels and names as strings."""
    path = Path(sweep_dir) / RESULTS_CSV
    with path.open(newline="", encoding="utf-8") as fh:
        return [{column: _parse(column, text) for column, text in row.items()} for row in csv.DictReader(fh)]
