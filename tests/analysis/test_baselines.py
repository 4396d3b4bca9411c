"""The swarm-vs-baselines comparison read from a run directory (numbers with known answers)."""

from __future__ import annotations

import json
import math

import pytest

from analysis.baselines import format_summary, result_fields, summarize
from peer.atomic_file import write_json


def _run_dir(tmp_path, swarm, alone, consensus=None, central=None):
    """A run directory with the files the comparison reads: final.json per peer, the baselines."""
    for i, (s, a) in enumerate(zip(swarm, alone)):
        write_json(tmp_path / "peers" / f"p{i}" / "final.json", {"eval": {"knn": s, "linear": s - 0.01}})
        if a is not None:
            path = tmp_path / "baselines" / "local" / f"p{i}" / "final_eval.json"
            write_json(path, {"eval": {"knn": a, "linear": a - 0.01}})
    if consensus is not None:
        write_json(tmp_path / "consensus.json", {"knn": consensus, "linear": consensus})
    if central is not None:
        write_json(tmp_path / "baselines" / "centralised" / "final_eval.json", {"eval": {"knn": central}})
    return tmp_path


def test_paired_gain_and_its_t_interval_over_peers(tmp_path):
    # prepare: gains 0.03, 0.04, 0.05 -> mean 0.04, sd 0.01, t(0.975, 2) = 4.3027
    run = _run_dir(tmp_path, [0.73, 0.74, 0.75], [0.70, 0.70, 0.70], consensus=0.75, central=0.80)
    # execute
    summary = summarize(run)
    # assert
    gain = summary.gain["knn"]
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert gain.n == 3 and gain.mean == pytest.approx(0.04)
    assert gain.ci_low == pytest.approx(0.04 - half) and gain.ci_high == pytest.approx(0.04 + half)
    assert gain.excludes_zero
    assert summary.consensus_gain["knn"].mean == pytest.approx(0.05)
    assert summary.consensus_gain["knn"].ci_low == pytest.approx(0.05)  # θ̄ − a constant: no spread
    assert summary.centralised == {"knn": 0.80}
    assert "gain_knn=0.0400" in result_fields(summary) and "centralised_knn=0.8000" in result_fields(summary)


def test_a_peer_without_its_baseline_is_left_out_and_missing_parts_say_so(tmp_path):
    # prepare: p1's local-only run never finished; no θ̄, no centralised model
    run = _run_dir(tmp_path, [0.72, 0.74], [0.70, None])
    # execute
    summary = summarize(run)
    text = format_summary(summary)
    fields = result_fields(summary)
    # assert: one pair, no CI from one pair, dashes and nan where nothing was measured
    assert summary.gain["knn"].n == 1 and summary.gain["knn"].ci_low is None
    assert not summary.gain["knn"].excludes_zero
    assert "centralised" in text and "consensus_knn=nan" in fields and "gain_knn_ci_low=nan" in fields
    assert json.loads(json.dumps(summary.to_dict()))["means"]["alone_knn"] == pytest.approx(0.70)


def test_a_corrupt_result_file_counts_as_missing(tmp_path):
    # prepare
    run = _run_dir(tmp_path, [0.72], [0.70])
    (run / "baselines" / "local" / "p0" / "final_eval.json").write_text("{not json")
    # execute
    summary = summarize(run)
    # assert
    assert summary.gain["knn"].n == 0 and summary.peers[0]["alone_knn"] is None
