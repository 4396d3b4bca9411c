"""Complete runs of an earlier ``results.csv`` merged into a sweep's rows (``dssl report --include``).

A 16-peer grid takes days on two cores and may be continued on another machine, where the sweep
directory starts empty: ``dssl sweep GRID --only seed=21 seed=22`` runs the seeds still missing, and
``dssl report SWEEP --include docs/results/feature16/results.csv`` decides the claims over both. An
earlier run enters only where this sweep's grid has a run of the same name that is not complete
here, and only when its resolved settings (objective, partition, topology, peers, steps, period,
faults, seed) equal those of the sweep's run of that name, so a row can never stand in for a run of
a changed grid. Runs of the earlier file that this grid does not have are left out and counted (a
grid may share some runs with another: dirichlet16 takes feature16's IID runs, not its feature-skew
ones). A file
written before results.csv gained a figure column (``knn_last_quarter_gain``, say) still enters:
those cells stay blank for its runs and the report names the columns; a missing label or setting
column, or a column this sweep does not have, refuses the file. Its run
directory stays where it was measured: plots that read per-round files leave it out, the report
says how many runs came from where, and every statistic and claim counts it like a run of this sweep.
"""

from __future__ import annotations

import csv
from pathlib import Path

from analysis.results import MEASURED_COLUMNS
from peer.atomic_file import replacing

SETTINGS = ("objective", "partition", "topology", "peers", "steps", "period", "faults", "seed")
COMPLETE = "complete"


class IncludeError(ValueError):
    """An earlier results.csv that cannot be merged: missing, of another grid, or contradicting this sweep."""


def read_earlier(path: Path, fields: list[str]) -> tuple[list[dict], list[str]]:
    """The rows of an earlier results.csv (as text) laid out in ``fields``, and the figure columns
    of ``fields`` it lacks (blank in its rows: measured by a later version of ``dssl sweep``)."""
    if not path.is_file():
        raise IncludeError(f"{path}: no such file (give the results.csv of an earlier report)")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise IncludeError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [f for f in fields if f not in columns]
    extra = sorted(set(columns) - set(fields))
    if extra or not set(missing) <= MEASURED_COLUMNS:
        raise IncludeError(
            f"{path}: its columns differ from this sweep's results.csv (missing {missing or 'none'}, "
            f"extra {extra or 'none'}): not the same grid"
        )
    if any(None in row for row in rows):
        raise IncludeError(f"{path}: a row has more cells than the header")
    return [{f: row.get(f, "") for f in fields} for row in rows], missing


def _check_same_run(ours: dict, theirs: dict, path: Path) -> None:
    for column in SETTINGS:
        if (ours.get(column) or "") != (theirs.get(column) or ""):
            raise IncludeError(
                f"{path}: run {theirs['run']!r} has {column} = {theirs.get(column)!r} where this sweep's "
                f"run of that name has {ours.get(column)!r}: the grid changed, so it cannot stand in"
            )


def merge_earlier(
    rows: list[dict], earlier: list[dict], path: Path
) -> tuple[list[dict], list[str], list[str]]:
    """``rows`` with each of their incomplete runs replaced by the earlier complete run of that name;
    the names taken from ``path``; and the names of its complete runs this sweep's grid does not
    have, which are left out (another grid sharing some runs, e.g. its other split).

    A run complete here is kept as it is (this sweep's own measurement wins)."""
    ours = {row["run"]: index for index, row in enumerate(rows)}
    merged = [dict(row) for row in rows]
    taken: list[str] = []
    foreign: list[str] = []
    for row in earlier:
        name = row.get("run") or ""
        if row.get("status") != COMPLETE or not name:
            continue
        index = ours.get(name)
        if index is None:
            foreign.append(name)
            continue
        if merged[index].get("status") == COMPLETE:
            continue
        _check_same_run(merged[index], row, path)
        merged[index] = dict(row)
        taken.append(name)
    return merged, taken, foreign


def write_rows(path: Path, rows: list[dict], fields: list[str]) -> None:
    """``rows`` as a results.csv with these columns (used for the merged copy beside a report)."""
    with replacing(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
