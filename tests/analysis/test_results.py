"""A sweep's results.csv (analysis.results): its columns, the run numbers, atomic rewrites, typed reading."""

from __future__ import annotations

import csv
import json

import pytest

from analysis.results import RESULT_COLUMNS_TAIL, read_results, write_results
from launcher.grid import load_grid
from launcher.sweep import manifest_path, run_sweep
from peer import atomic_file
from tests.launcher.sweep_util import TWO_BY_TWO, FakeRunner, read_manifest, write_grid

MAE_AND_FULL = {
    "grids": [
        {"axes": {"method": {"mae": {"objective.name": "mae"}}, "split": {"iid": {"data.partition": "iid"}}}},
        {
            "axes": {
                "graph": {"full": {"gossip.topology": "full", "swarm.faults": "faults.yaml", "swarm.size": 3}}
            }
        },
    ]
}


def _results_sweep(tmp_path):
    """A swept grid of one complete run (with hand-set diagnostics) and one failed run."""
    grid = load_grid(write_grid(tmp_path, json.loads(json.dumps(MAE_AND_FULL))))
    run_sweep(grid, runner=FakeRunner(failing=("graph=full",)))
    complete = read_manifest(grid, "method=mae,split=iid,seed=0")
    diagnostics_path = grid.sweep_dir / complete["run_dir"] / "diagnostics.json"
    diagnostics = json.loads(diagnostics_path.read_text())
    diagnostics.update(
        spectral_gap_mean=0.25, spectral_gap_min=0.125, bytes_out_total=123456, collapse_std_mean=0.03
    )
    diagnostics_path.write_text(json.dumps(diagnostics))
    return grid, complete


def test_results_csv_has_the_columns_in_order_and_the_run_numbers(tmp_path):
    # prepare
    grid, complete = _results_sweep(tmp_path)
    # execute
    write_results(grid.sweep_dir)
    with (grid.sweep_dir / "results.csv").open(newline="") as fh:
        header, *lines = list(csv.reader(fh))
    mae, _ = read_results(grid.sweep_dir)
    # assert
    assert header == ["run", "status", "seed", "method", "split", "graph", *RESULT_COLUMNS_TAIL]
    assert len(lines) == 2 and all(len(line) == len(header) for line in lines)
    assert mae["run"] == "method=mae,split=iid,seed=0" and mae["status"] == "complete" and mae["seed"] == 0
    assert (mae["method"], mae["split"], mae["graph"]) == ("mae", "iid", None)
    assert (mae["objective"], mae["partition"], mae["topology"]) == ("mae", "iid", "ring")
    assert (mae["peers"], mae["steps"], mae["period"], mae["faults"]) == (2, 4, 20, None)
    assert mae["knn_mean"] == pytest.approx(0.55) and mae["knn_std"] == pytest.approx(0.05)
    assert (mae["knn_min"], mae["knn_max"]) == (pytest.approx(0.5), pytest.approx(0.6))
    assert mae["knn_init_mean"] == pytest.approx(0.1) and mae["rounds_min"] == 2
    assert mae["linear_mean"] == pytest.approx(0.65)
    assert mae["spectral_gap_mean"] == 0.25 and mae["spectral_gap_min"] == 0.125
    assert mae["bytes_out_total"] == 123456 and isinstance(mae["bytes_out_total"], int)
    assert mae["collapse_std_mean"] == 0.03 and mae["a_mmd_mean"] is None  # absent key -> empty cell
    assert isinstance(mae["wall_s"], float) and mae["run_dir"] == complete["run_dir"]


def test_a_failed_run_has_its_settings_and_no_numbers(tmp_path):
    # prepare
    grid, _ = _results_sweep(tmp_path)
    # execute
    write_results(grid.sweep_dir)
    _, full = read_results(grid.sweep_dir)
    # assert
    assert full["status"] == "failed" and full["graph"] == "full" and full["faults"] == "faults.yaml"
    assert full["peers"] == 3 and full["topology"] == "full" and full["knn_mean"] is None


def test_results_rewrite_is_atomic(tmp_path, monkeypatch):
    # prepare
    grid = load_grid(write_grid(tmp_path, TWO_BY_TWO))
    run_sweep(grid, only=["method=mae,split=iid"], runner=FakeRunner())
    before = (grid.sweep_dir / "results.csv").read_bytes()
    manifest = read_manifest(grid, "method=mae,split=dir0.1,seed=0")
    manifest["status"] = "failed"
    manifest_path(grid.sweep_dir, manifest["name"]).write_text(json.dumps(manifest))

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic_file.os, "replace", crash)
    # execute: the rewrite dies before its rename
    with pytest.raises(OSError):
        write_results(grid.sweep_dir)
    monkeypatch.undo()
    # assert: readers still see the complete old table; the next rewrite has the new status
    assert (grid.sweep_dir / "results.csv").read_bytes() == before
    write_results(grid.sweep_dir)
    assert [r["status"] for r in read_results(grid.sweep_dir)] == ["pending", "pending", "complete", "failed"]


def test_read_results_parses_numbers_and_keeps_labels_as_text(tmp_path):
    # prepare
    columns = ["run", "status", "seed", "alpha", *RESULT_COLUMNS_TAIL]
    row = {c: "" for c in columns}
    row.update(
        run="alpha=0.1,seed=2",
        status="complete",
        seed="2",
        alpha="0.1",
        peers="8",
        steps="300",
        knn_mean="0.7125",
        bytes_out_total="1048576",
        wall_s="95.5",
        partition="dirichlet:0.1",
    )
    with (tmp_path / "results.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerow(row)
    # execute
    (parsed,) = read_results(tmp_path)
    # assert
    assert parsed["seed"] == 2 and parsed["peers"] == 8 and parsed["steps"] == 300
    assert parsed["knn_mean"] == 0.7125 and parsed["wall_s"] == 95.5 and parsed["bytes_out_total"] == 1048576
    assert parsed["alpha"] == "0.1" and parsed["partition"] == "dirichlet:0.1"
    assert parsed["knn_std"] is None and parsed["period"] is None and parsed["faults"] is None
