"""``dssl report SWEEP --include EARLIER/results.csv``: a sweep continued elsewhere decides its claims
over its own runs and the complete runs of an earlier report (hand-made sweeps of test_study_report)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from analysis.cli import report_main
from analysis.earlier_results import SETTINGS
from tests.analysis.test_study_report import FIELDS, make_sweep

METRICS = ("knn_mean", "consensus_distance", "spectral_gap_mean", "average_connectivity_mean", "wall_s")


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict], fields: list[str] = FIELDS) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _edit(path: Path, run: str, **cells: str) -> None:
    """Change some cells of one run's row in a results.csv."""
    rows = _rows(path)
    for row in rows:
        if row["run"] == run:
            row.update(cells)
    _write(path, rows)


def _continued(root: Path, earlier_seeds: set[str], report: bool = False) -> tuple[Path, Path]:
    """A full sweep's results.csv in ``root/earlier`` (with its report when ``report``) and a new sweep
    dir of the same grid whose runs of ``earlier_seeds`` are pending there (their run directories
    gone), as on a fresh machine that ran only the other seeds."""
    full = make_sweep(root)
    earlier = root / "earlier"
    earlier.mkdir()
    if report:
        assert report_main([str(full), "--out", str(earlier)]) == 0
    else:
        shutil.copyfile(full / "results.csv", earlier / "results.csv")
    rows = _rows(full / "results.csv")
    for row in rows:
        if row["seed"] in earlier_seeds:
            shutil.rmtree(full / row["run_dir"], ignore_errors=True)
            row.update({m: "" for m in METRICS}, status="pending", run_dir="")
    _write(full / "results.csv", rows)
    return full, earlier / "results.csv"


def test_an_earlier_reports_runs_complete_the_sweep_and_decide_the_same_claims(tmp_path):
    # prepare: the full report's claims, then a sweep that ran only seed 2 itself
    sweep, earlier = _continued(tmp_path, {"0", "1"}, report=True)
    full_claims = (earlier.parent / "claims.csv").read_text()
    out = tmp_path / "docs"
    # execute
    code = report_main([str(sweep), "--out", str(out), "--include", str(earlier)])
    # assert: the same decisions as the uninterrupted sweep, and the report says where runs came from
    assert code == 0
    assert (out / "claims.csv").read_text() == full_claims
    text = (out / "report.md").read_text()
    assert f"* 34 complete runs taken from earlier results `{earlier}` (seeds 0-1)" in text
    assert "runs: 52 (complete 51, failed 1)" in text
    assert f"| mae-iid-ring-s0 | complete | 0 | mae / iid / ring | from `{earlier}` |" in text
    merged = _rows(out / "results.csv")
    assert [r["run"] for r in merged] == [r["run"] for r in _rows(earlier)]
    assert [r["knn_mean"] for r in merged] == [r["knn_mean"] for r in _rows(earlier)]


def test_the_merged_copy_can_be_included_again_by_the_next_continuation(tmp_path):
    # prepare: a first continuation writes its merged results.csv into docs/
    sweep, earlier = _continued(tmp_path, {"0", "1"})
    docs = tmp_path / "docs"
    assert report_main([str(sweep), "--out", str(docs), "--include", str(earlier)]) == 0
    first = (docs / "results.csv").read_text()
    # execute: the next one includes that very file and writes over it
    code = report_main([str(sweep), "--out", str(docs), "--include", str(docs / "results.csv")])
    # assert
    assert code == 0
    assert (docs / "results.csv").read_text() == first


def test_a_run_complete_in_this_sweep_keeps_its_own_numbers(tmp_path):
    # prepare: the earlier file says something else for a run this sweep completed itself
    sweep, earlier = _continued(tmp_path, {"0"})
    _edit(earlier, "mae-iid-ring-s2", knn_mean="0.1234")
    out = tmp_path / "docs"
    # execute
    code = report_main([str(sweep), "--out", str(out), "--include", str(earlier)])
    # assert
    assert code == 0
    mine = next(r for r in _rows(out / "results.csv") if r["run"] == "mae-iid-ring-s2")
    ours = next(r for r in _rows(sweep / "results.csv") if r["run"] == "mae-iid-ring-s2")
    assert mine["knn_mean"] == ours["knn_mean"] != "0.1234"
    assert "17 complete runs taken from earlier results" in (out / "report.md").read_text()


def test_the_sweeps_own_results_csv_is_left_as_dssl_sweep_wrote_it(tmp_path):
    # prepare
    sweep, earlier = _continued(tmp_path, {"0", "1"})
    before = (sweep / "results.csv").read_text()
    # execute: report into the sweep directory itself
    code = report_main([str(sweep), "--include", str(earlier)])
    # assert
    assert code == 0
    assert (sweep / "results.csv").read_text() == before
    assert "34 complete runs taken from earlier results" in (sweep / "report.md").read_text()


def test_runs_of_the_earlier_file_that_this_grid_lacks_are_left_out_and_counted(tmp_path):
    # prepare: the earlier file also holds a run of another grid (a split this grid does not have)
    sweep, earlier = _continued(tmp_path, {"0", "1"}, report=True)
    full_claims = (earlier.parent / "claims.csv").read_text()
    rows = _rows(earlier)
    stranger = {**rows[0], "run": "mae-feature-ring-s0", "knn_mean": "0.1"}
    _write(earlier, [*rows, stranger])
    out = tmp_path / "docs"
    # execute
    code = report_main([str(sweep), "--out", str(out), "--include", str(earlier)])
    # assert: the same rows and decisions as without it, and the report names what it left out
    assert code == 0
    assert [r["run"] for r in _rows(out / "results.csv")] == [r["run"] for r in rows]
    assert (out / "claims.csv").read_text() == full_claims
    text = (out / "report.md").read_text()
    assert (
        f"* 1 complete runs of `{earlier}` are not runs of this grid (e.g. `mae-feature-ring-s0`): left out"
        in text
    )
    assert "34 complete runs taken from earlier results" in text


def test_an_earlier_run_of_a_changed_grid_cannot_stand_in(tmp_path, capsys):
    # prepare: the earlier file's run of a pending name was measured with other settings
    sweep, earlier = _continued(tmp_path, {"0"})
    _edit(earlier, "mae-iid-ring-s0", steps="999")
    out = tmp_path / "docs"
    # execute
    code = report_main([str(sweep), "--out", str(out), "--include", str(earlier)])
    # assert: refused with the run and the column named, nothing written
    assert code == 2
    err = capsys.readouterr().err
    assert "'mae-iid-ring-s0' has steps = '999'" in err and "the grid changed" in err
    assert not out.exists()
    assert "steps" in SETTINGS


def test_unusable_earlier_files_are_refused_clearly(tmp_path, capsys):
    # prepare
    sweep, earlier = _continued(tmp_path, {"0"})
    other_grid = tmp_path / "other.csv"
    _write(other_grid, _rows(earlier)[:2], FIELDS + ["extra_axis"])
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    run_dir = tmp_path / "run"
    (run_dir / "peers").mkdir(parents=True)
    cases = [
        ([str(sweep), "--include", str(tmp_path / "missing.csv")], "missing.csv: no such file"),
        ([str(sweep), "--include", str(other_grid)], "columns differ from this sweep's results.csv"),
        ([str(sweep), "--include", str(binary)], "binary.csv:"),
        ([str(run_dir), "--include", str(earlier)], "--include applies to a sweep directory only"),
    ]
    for argv, message in cases:
        # execute
        code = report_main(argv)
        # assert
        assert code == 2, argv
        assert message in capsys.readouterr().err, argv


def test_an_earlier_file_without_a_newer_figure_column_enters_with_blank_cells(tmp_path):
    # prepare: the earlier file was written before results.csv had knn_last_quarter_gain
    sweep, earlier = _continued(tmp_path, {"0", "1"})
    older = [c for c in FIELDS if c != "knn_last_quarter_gain"]
    _write(earlier, [{c: row[c] for c in older} for row in _rows(earlier)], older)
    out = tmp_path / "docs"
    # execute
    code = report_main([str(sweep), "--out", str(out), "--include", str(earlier)])
    # assert: its runs count, the new column stays blank for them, and the report says so
    assert code == 0
    merged = {r["run"]: r for r in _rows(out / "results.csv")}
    assert merged["mae-iid-ring-s0"]["knn_mean"] == next(
        r["knn_mean"] for r in _rows(earlier) if r["run"] == "mae-iid-ring-s0"
    )
    assert merged["mae-iid-ring-s0"]["knn_last_quarter_gain"] == ""
    text = (out / "report.md").read_text()
    assert "34 complete runs taken from earlier results" in text
    assert "written before results.csv had `knn_last_quarter_gain`" in text


def test_an_earlier_file_without_a_setting_column_is_refused(tmp_path, capsys):
    # prepare: a file that lacks `steps` could stand in for a run of another length
    sweep, earlier = _continued(tmp_path, {"0"})
    fewer = [c for c in FIELDS if c != "steps"]
    _write(earlier, [{c: row[c] for c in fewer} for row in _rows(earlier)], fewer)
    # execute
    code = report_main([str(sweep), "--include", str(earlier)])
    # assert
    assert code == 2
    assert "missing ['steps']" in capsys.readouterr().err
