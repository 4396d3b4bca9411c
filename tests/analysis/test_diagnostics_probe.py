"""Exact per-round consensus from snapshots and the probe means, on a hand-made run directory."""

from __future__ import annotations

import csv
import json

import pytest

from analysis.diagnostics import collect_diagnostics, snapshot_consensus, write_diagnostics
from tests.analysis._diag_run import make_run
from tests.analysis._probe_run import make_probe_run


def test_snapshot_consensus_uses_agreeing_layouts_and_skips_torn_files(tmp_path):
    # prepare
    run = make_probe_run(tmp_path)
    # execute
    exact = snapshot_consensus(run)
    # assert: values derived by hand in tests/analysis/_probe_run.py
    assert [(e["round"], e["peers"], e["peer_ids"]) for e in exact] == [
        (1, 3, ["a", "b", "c"]),
        (2, 2, ["a", "b"]),
    ]
    assert exact[0]["consensus_distance"] == pytest.approx(8 / 3)
    assert exact[1]["consensus_distance"] == pytest.approx(1.0)


def test_diagnostics_carry_exact_rounds_probe_means_and_summary(tmp_path):
    # prepare
    run = make_probe_run(tmp_path)
    # execute
    diag = collect_diagnostics(run)
    rounds = {r["round"]: r for r in diag["rounds"]}
    # assert
    assert [e["round"] for e in diag["consensus_exact_rounds"]] == [1, 2]
    assert rounds[1]["consensus_distance_exact"] == pytest.approx(8 / 3)
    assert rounds[3]["consensus_distance_exact"] is None
    assert rounds[1]["collapse_std_mean"] is None and rounds[1]["a_mmd_mean"] is None
    assert rounds[2]["collapse_std_mean"] == pytest.approx(0.85)
    assert rounds[2]["a_mmd_mean"] == pytest.approx(0.15)
    assert rounds[3]["collapse_std_mean"] == pytest.approx(0.65)
    assert rounds[3]["a_mmd_mean"] == pytest.approx(0.3)
    assert diag["collapse_std_mean"] == pytest.approx(0.65)
    assert diag["a_mmd_mean"] == pytest.approx(0.25)
    assert [p["round"] for p in diag["per_peer"]["a"]["probes"]] == [2, 3]
    assert diag["per_peer"]["c"]["probes"] == []
    assert diag["consensus_distance_exact"] == pytest.approx(8 / 3)  # the final params are unchanged


def test_rounds_csv_has_the_new_columns_empty_where_nothing_was_measured(tmp_path):
    # prepare
    run = make_probe_run(tmp_path)
    # execute
    write_diagnostics(run)
    rows = list(csv.DictReader((run / "rounds.csv").open()))
    saved = json.loads((run / "diagnostics.json").read_text())
    # assert
    assert [r["consensus_distance_exact"] for r in rows][2] == ""
    assert float(rows[1]["consensus_distance_exact"]) == pytest.approx(1.0)
    assert rows[0]["collapse_std_mean"] == "" and float(rows[2]["a_mmd_mean"]) == pytest.approx(0.3)
    assert saved["collapse_std_mean"] == pytest.approx(0.65) and len(saved["consensus_exact_rounds"]) == 2


def test_a_run_without_probes_or_snapshots_has_empty_diagnostics(tmp_path):
    # prepare
    run = make_run(tmp_path)
    # execute
    diag = collect_diagnostics(run)
    # assert
    assert diag["consensus_exact_rounds"] == [] and snapshot_consensus(run) == []
    assert diag["collapse_std_mean"] is None and diag["a_mmd_mean"] is None
    assert all(r["consensus_distance_exact"] is None for r in diag["rounds"])
    assert all(r["collapse_std_mean"] is None for r in diag["rounds"])


def test_torn_final_params_are_skipped(tmp_path):
    # prepare: c's final_params.pt was cut short by a kill
    run = make_run(tmp_path)
    (run / "peers" / "c" / "final_params.pt").write_bytes(b"PK\x03")
    # execute
    diag = collect_diagnostics(run)
    # assert: a = (0, 0), b = (2, 0) remain -> 1
    assert diag["consensus_distance_exact"] == pytest.approx(1.0)
