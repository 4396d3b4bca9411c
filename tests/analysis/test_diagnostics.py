"""Swarm diagnostics on a hand-made run directory with known realised W, and the trainer's round record."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from analysis.diagnostics import collect_diagnostics, realised_matrix, realised_row, write_diagnostics
from peer.metrics import read_metrics
from peer.trainer import Trainer
from tests.analysis._diag_run import make_run
from tests.peer._tiny import tiny_config, tiny_data
from tests.peer.test_trainer import FakeHook


def test_realised_row_counts_only_answering_neighbours():
    # prepare: b answered, c missed its deadline
    record = {
        "peer": "a",
        "self_weight": 0.5,
        "neighbours": [
            {"peer": "b", "answered": True, "weight": 0.5},
            {"peer": "c", "answered": False, "weight": 0.0},
        ],
    }
    # execute
    row = realised_row(record)
    nodes, w = realised_matrix({"a": row})
    # assert: b appears as a node with a unit row (it logged nothing); c is not a node
    assert row == {"a": 0.5, "b": 0.5}
    assert nodes == ["a", "b"]
    np.testing.assert_allclose(w, [[0.5, 0.5], [0.0, 1.0]])


def test_per_round_spectral_gap_and_connectivity_match_hand_computation(tmp_path):
    # prepare
    run = make_run(tmp_path)
    # execute
    diag = collect_diagnostics(run)
    rounds = {r["round"]: r for r in diag["rounds"]}
    # assert: values derived by hand in tests/analysis/_diag_run.py
    assert sorted(rounds) == [1, 2, 3] and diag["peers"] == ["a", "b", "c"]
    assert rounds[1]["spectral_gap"] == pytest.approx(1.0)
    assert rounds[1]["average_connectivity"] == pytest.approx(3.0)
    assert rounds[1]["harmonic_connectivity"] == pytest.approx(3.0)
    assert rounds[2]["spectral_gap"] == pytest.approx(0.5)
    assert rounds[2]["average_connectivity"] == pytest.approx(7 / 3)
    assert rounds[2]["harmonic_connectivity"] == pytest.approx(9 / 4)
    assert rounds[3]["spectral_gap"] == pytest.approx(0.0, abs=1e-12)
    assert rounds[3]["average_connectivity"] == pytest.approx(4 / 3)
    assert rounds[3]["harmonic_connectivity"] == pytest.approx(1.2)
    assert rounds[3]["nodes"] == 3 and rounds[3]["peers_logged"] == 2
    # neighbour-distance proxy: mean over peers that heard someone (b heard nobody in round 3)
    assert rounds[2]["neighbour_distance_mean"] == pytest.approx(0.3)
    assert rounds[3]["neighbour_distance_mean"] == pytest.approx(0.5)
    assert rounds[3]["staleness_max"] == 2 and rounds[3]["answered"] == 1 and rounds[3]["expected"] == 3
    assert diag["consensus_distance_exact"] == pytest.approx(8 / 3)
    assert diag["spectral_gap_min"] == pytest.approx(0.0, abs=1e-12)


def test_write_diagnostics_writes_json_and_one_csv_row_per_round(tmp_path):
    # prepare
    run = make_run(tmp_path)
    with (run / "peers" / "a" / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "round", "torn')  # a killed writer's last line
    # execute
    write_diagnostics(run)
    # assert
    saved = json.loads((run / "diagnostics.json").read_text())
    rows = list(csv.DictReader((run / "rounds.csv").open()))
    assert [int(r["round"]) for r in rows] == [1, 2, 3]
    assert float(rows[1]["spectral_gap"]) == pytest.approx(0.5)
    assert saved["rounds"][1]["harmonic_connectivity"] == pytest.approx(9 / 4)
    assert [e["knn"] for e in saved["per_peer"]["b"]["evals"]] == [0.31, 0.55]


def test_no_consensus_distance_when_layouts_differ(tmp_path):
    # prepare: c's final buffer has another fingerprint
    import torch

    run = make_run(tmp_path)
    torch.save({"params": torch.zeros(2), "fingerprint": "other"}, run / "peers" / "c" / "final_params.pt")
    # execute / assert
    assert collect_diagnostics(run)["consensus_distance_exact"] is None


def test_trainer_round_record_carries_row_bytes_time_split_and_staleness(tmp_path):
    # prepare
    trainer = Trainer.create(
        tiny_config("simsiam", steps=4, period=2),
        hook=FakeHook(),
        run_dir=tmp_path,
        data=tiny_data(with_eval=False),
    )
    # execute
    trainer.run(final_eval=False)
    rounds = read_metrics(tmp_path / "metrics.jsonl", kind="round")
    # assert
    assert [r["round"] for r in rounds] == [1, 2]
    r = rounds[0]
    assert r["self_weight"] == 0.5 and r["mode"] == "sync"
    assert r["neighbours"][0] == {
        "peer": "peer-1",
        "answered": True,
        "weight": 0.5,
        "round": 1,
        "staleness": 0,
        "bytes_in": 100,
        "seconds": 0.01,
        "error": None,
        "deadline_s": None,  # a hook that reports no deadline (the gossip node always does)
    }
    assert r["bytes_in"] == 100 and r["bytes_out"] == 100 and r["staleness_max"] == 0
    assert r["compute_seconds"] > 0 and r["pull_seconds"] == 0.01 and r["mix_seconds"] == 0.001
    assert r["blocked_seconds"] >= 0 and r["wait_seconds"] >= 0


def test_a_round_only_one_peer_logged_has_no_spectral_gap(tmp_path):
    # prepare: the hand-made run, plus a round 4 that only a late (restarted) peer "c" lived to log
    run = make_run(tmp_path)
    with (run / "peers" / "c" / "metrics.jsonl").open("a") as f:
        f.write(
            json.dumps(
                {
                    "kind": "round",
                    "peer": "c",
                    "round": 4,
                    "time": 10.0,
                    "self_weight": 1.0,
                    "answered": 0,
                    "expected": 2,
                    "neighbours": [{"peer": "a", "answered": False, "weight": 0.0}],
                }
            )
            + "\n"
        )
    # execute
    diag = collect_diagnostics(run)
    # assert: one peer alone does not mix, so round 4 has no gap and leaves the summary alone
    last = diag["rounds"][-1]
    assert last["round"] == 4 and last["nodes"] == 1 and last["spectral_gap"] is None
    assert diag["spectral_gap_mean"] == pytest.approx(np.mean([1.0, 0.5, 0.0]))
