"""A loaded sweep directory: its ``results.csv`` rows (as text), its grid, its runs' directories, and the
grouping and per-seed helpers the sweep report's tables and plots share.

A *condition* is what tells runs apart apart from their seed: the grid's axis labels (or, for a grid
without axes, the resolved settings). Only ``complete`` runs enter statistics.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from analysis.claims import complete_rows, mean_ci
from analysis.earlier_results import merge_earlier, read_earlier
from analysis.results import FIXED_COLUMNS
from peer.rundir import GRID_FILE, RESULTS_CSV, ROUNDS_CSV

IID_ALPHA = 1e5  # the paper's tables write IID as Dirichlet α = 1e5
METRIC = "knn_mean"
# results.csv columns that are not grid axes (everything else is an axis label column)
RESOLVED_COLUMNS = FIXED_COLUMNS
FALLBACK_CONDITION = ("objective", "partition", "topology", "peers", "steps", "period", "faults")
_DIRICHLET = re.compile(r"^dirichlet[a-z_]*:(?:alpha=)?([0-9.eE+-]+)$")
MATCH_COLUMNS = ("objective", "partition", "topology", "peers", "steps", "period", "seed")


@dataclass
class Sweep:
    """A loaded sweep directory: its rows, axis columns and grid; ``imported`` names the runs whose rows
    came from an earlier results.csv (run name -> that file), whose run directories are not here;
    ``unmeasured`` the figure columns such a file lacks (blank for its runs); ``left_out`` the
    complete runs of such a file that are not runs of this grid."""

    path: Path
    rows: list[dict]
    fields: list[str]
    grid: dict
    imported: dict[str, Path] = field(default_factory=dict)
    unmeasured: dict[Path, list[str]] = field(default_factory=dict)  # earlier file -> columns it lacks
    left_out: dict[Path, list[str]] = field(default_factory=dict)  # earlier file -> runs not of this grid

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
        if not row.get("run_dir") or row.get("run") in self.imported:
            return None
        return self.path / row["run_dir"]


def load_sweep(sweep_dir: str | Path, include: Sequence[Path] = ()) -> Sweep:
    """Read ``results.csv`` (and ``grid.yaml`` when present) of a sweep directory, with the complete
    runs of each earlier results.csv in ``include`` merged in (:mod:`analysis.earlier_results`)."""
    path = Path(sweep_dir)
    with (path / RESULTS_CSV).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        fields = list(reader.fieldnames or [])
    imported: dict[str, Path] = {}
    unmeasured: dict[Path, list[str]] = {}
    left_out: dict[Path, list[str]] = {}
    for earlier in include:
        earlier_rows, missing = read_earlier(Path(earlier), fields)
        rows, taken, foreign = merge_earlier(rows, earlier_rows, Path(earlier))
        imported.update(dict.fromkeys(taken, Path(earlier)))
        if missing:
            unmeasured[Path(earlier)] = missing
        if foreign:
            left_out[Path(earlier)] = foreign
    grid_path = path / GRID_FILE
    grid = (yaml.safe_load(grid_path.read_text(encoding="utf-8")) or {}) if grid_path.is_file() else {}
    merged = {"imported": imported, "unmeasured": unmeasured, "left_out": left_out}
    return Sweep(path=path, rows=rows, fields=fields, grid=grid, **merged)


def as_float(value) -> float | None:
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


def series_columns(sweep: Sweep, rows: list[dict], key: Callable[[dict], object]) -> list[str]:
    """Condition columns that vary independently of the plotted x dimension ``key``."""
    return [c for c in sweep.condition_columns if not _determined_by(rows, c, key)]


def per_seed(rows: list[dict], column: str) -> dict[str, float]:
    """Seed -> mean of ``column`` over these rows (empty cells skipped)."""
    by_seed: dict[str, list[float]] = {}
    for r in rows:
        v = as_float(r.get(column))
        if v is not None:
            by_seed.setdefault(r.get("seed", ""), []).append(v)
    return {s: float(np.mean(v)) for s, v in by_seed.items()}


def group_by(rows: list[dict], key: Callable[[dict], object]) -> dict[object, list[dict]]:
    groups: dict[object, list[dict]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    return groups


def err(mean: float | None, low: float | None) -> float:
    return 0.0 if mean is None or low is None else mean - low


def pm(values: list[float], spec: str = ".3g") -> str:
    mean, low, _ = mean_ci(values)
    if mean is None:
        return "-"
    if low is None:
        return f"{mean:{spec}} (n=1)"
    return f"{mean:{spec}} ± {mean - low:{spec}}"


def read_rounds(run_dir: Path) -> list[dict]:
    """A run's ``rounds.csv`` as dicts of floats (empty cells → None); [] when absent."""
    path = run_dir / ROUNDS_CSV
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: as_float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def round_series(runs: list[Path], column: str) -> tuple[np.ndarray, np.ndarray]:
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


def topology_label(row: dict) -> str:
    return row.get("topology", "") + (" + faults" if row.get("faults") else "")
