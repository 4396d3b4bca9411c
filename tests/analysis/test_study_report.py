"""``dssl report <sweep dir>`` on a hand-made sweep: report.md, the PNGs, claims.csv and skipped plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from analysis.claims import CLAIMS_CSV_FIELDS
from analysis.cli import report_main
from analysis.results import result_columns
from analysis.sweep_dir import alpha_of
from analysis.sweep_report import write_study_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = 1_800_000_000.0
FIELDS = result_columns(["method", "split", "graph"])  # the columns dssl sweep writes
SPLITS = {"iid": "iid", "dir1": "dirichlet:1", "dir0.1": "dirichlet:0.1", "fskew": "feature_skew"}
DROP = {
    "mae": {"iid": 0, "dir1": 0.01, "dir0.1": 0.02, "fskew": 0.015},
    "simsiam": {"iid": 0, "dir1": 0.04, "dir0.1": 0.10, "fskew": 0.06},
}
GRAPHS = {
    "ring": ("ring", "", 3.0, 0.25, 0.0),
    "full": ("full", "", 4.0, 1.0, 0.03),
    "ring_faults": ("ring", "examples/faults.yaml", 2.7, 0.15, -0.02),
}
NOISE = [0.004, -0.003, 0.001]
CLAIMS = """
claims:
  - id: 1
    claim: "MAE drops less than SimSiam IID -> Dirichlet 0.1"
    a: {quantity: drop, where: {method: mae, graph: ring}, from: {split: iid}, to: {split: dir0.1}}
    b: {quantity: drop, where: {method: simsiam, graph: ring}, from: {split: iid}, to: {split: dir0.1}}
    expect: a < b
  - id: 2
    claim: "accuracy rises ring -> full under alpha 0.1"
    a: {quantity: knn_mean, where: {graph: full, split: dir0.1, method: mae}}
    b: {quantity: knn_mean, where: {graph: ring, split: dir0.1, method: mae}}
    expect: a > b
    monotone: {axis: graph, order: [ring, rr4, full]}
"""


def _write_run(run: Path, gap: float, knn: float, faulty: bool) -> None:
    """rounds.csv (5 rounds, 10 s apart), diagnostics.json with per-peer kNN, timeline.jsonl."""
    run.mkdir(parents=True)
    rounds = []
    for k in range(1, 6):
        dip = faulty and k in (3, 4)
        rounds.append(
            {
                "round": k,
                "spectral_gap": 0.0 if dip else gap,
                "average_connectivity": 3.0,
                "neighbour_distance_mean": 1.0 / k * (3.0 if dip else 1.0),
                "time_first": T0 + 10 * k,
                "bytes_out": 1_000_000,
            }
        )
    with (run / "rounds.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rounds[0]))
        writer.writeheader()
        writer.writerows(rounds)
    per_peer = {
        p: {"evals": [{"round": 0, "knn": 0.3}, {"round": 5, "knn": knn + 0.01 * i}], "rounds": []}
        for i, p in enumerate(("p0", "p1", "p2", "p3"))
    }
    curve = [{"step": 20, "knn_mean": 0.5, "peers": 4}, {"step": 50, "knn_mean": knn, "peers": 4}]
    (run / "diagnostics.json").write_text(
        json.dumps({"rounds": rounds, "per_peer": per_peer, "knn_curve": curve})
    )
    events = [{"t": T0, "t_rel": 0.0, "event": "spawned", "peer": "p0"}]
    if faulty:
        events.append({"t": T0 + 25, "t_rel": 25.0, "event": "fault", "peer": "p2", "action": "kill"})
    (run / "timeline.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))


def _row(method: str, split: str, graph: str, seed: int) -> tuple[dict, float, bool, float]:
    """One complete run's results row; also its kNN, whether it has faults, and its spectral gap."""
    topology, faults, conn, gap, bonus = GRAPHS[graph]
    name = f"{method}-{split}-{graph}-s{seed}"
    knn = 0.7 - DROP[method][split] + bonus + NOISE[seed]
    row = {
        "run": name,
        "status": "complete",
        "seed": seed,
        "method": method,
        "split": split,
        "graph": graph,
        "objective": method,
        "partition": SPLITS[split],
        "topology": topology,
        "peers": 4,
        "steps": 100,
        "period": 10,
        "faults": faults,
        "knn_mean": round(knn, 4),
        "consensus_distance": 0.5 / conn,
        "spectral_gap_mean": gap,
        "average_connectivity_mean": conn + 0.01 * seed,
        "bytes_out_total": int(conn * 5e6),
        "wall_s": 60 + seed,
        "run_dir": f"runs/{name}/20260101-000000-{name}",
    }
    return row, knn, bool(faults), gap


FAILED_ROW = {
    "run": "simsiam-dir0.1-full-s3",
    "status": "failed",
    "seed": 3,
    "method": "simsiam",
    "split": "dir0.1",
    "graph": "full",
    "objective": "simsiam",
    "partition": "dirichlet:0.1",
    "topology": "full",
    "knn_mean": "",
    "run_dir": "",
}


def make_sweep(root: Path, claims: bool = True, with_rounds: bool = True) -> Path:
    """method {mae, simsiam} x split {iid, dir1, dir0.1, fskew} x graph {ring, full} x 3 seeds, plus
    mae / dir0.1 / ring_faults, and one failed run. kNN = 0.7 − drop + graph bonus + seed noise."""
    sweep = root / "sweep"
    sweep.mkdir()
    conditions = [(m, s, g) for m in DROP for s in SPLITS for g in ("ring", "full")] + [
        ("mae", "dir0.1", "ring_faults")
    ]
    rows = []
    for method, split, graph in conditions:
        for seed in range(3):
            row, knn, faulty, gap = _row(method, split, graph, seed)
            if with_rounds:
                _write_run(sweep / row["run_dir"], gap, knn, faulty)
            rows.append(row)
    rows.append(dict(FAILED_ROW))
    with (sweep / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (sweep / "grid.yaml").write_text("seeds: [0, 1, 2]\n" + (CLAIMS if claims else ""))
    return sweep


def test_alpha_of_resolved_partitions():
    assert alpha_of("iid") == 1e5 and alpha_of("dirichlet:0.1") == 0.1
    assert alpha_of("dirichlet_balanced:0.01") == 0.01
    assert alpha_of("feature_skew") is None and alpha_of("shards:2") is None


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_study_report_writes_every_plot_the_claims_and_links(tmp_path, capsys):
    # prepare
    sweep = make_sweep(tmp_path)
    # execute
    code = report_main([str(sweep)])
    # assert
    assert code == 0
    text = (sweep / "report.md").read_text()
    for name in (
        "report_accuracy_alpha.png",
        "report_drop.png",
        "report_connectivity.png",
        "report_consensus.png",
        "report_learning_curves.png",
        "report_bytes.png",
        "report_drop_vs_mixing.png",
        "report_faults_1.png",
    ):
        assert (sweep / name).read_bytes()[:8] == PNG_MAGIC, name
        assert f"]({name})" in text
    assert "Not drawn" not in text
    assert "runs: 52 (complete 51, failed 1); 1 not complete and excluded" in text
    assert "| mae / dir0.1 / ring_faults | 3 / 3 |" in text
    assert "1 fault event(s) marked" in text
    assert (
        "[runs/mae-iid-ring-s0/20260101-000000-mae-iid-ring-s0](runs/mae-iid-ring-s0/20260101-000000-mae-iid-ring-s0)"
        in text
    )
    with (sweep / "claims.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        claims = list(reader)
    assert tuple(reader.fieldnames) == CLAIMS_CSV_FIELDS
    # claim 1: drops 0.02 vs 0.10 on the same seeds -> yes; claim 2: no rr4 runs -> no, and said why
    assert [c["reproduced"] for c in claims] == ["yes", "no"]
    assert float(claims[0]["mean_a"]) == 0.02 and claims[0]["seeds"] == "3"
    assert "no complete rows for graph = rr4" in text
    per_seed = [r for r in _csv_rows(sweep / "claims_per_seed.csv") if r["claim"] == "1"]
    assert [r["seed"] for r in per_seed] == ["0", "1", "2"]
    assert all(float(r["effect"]) == pytest.approx(0.08) for r in per_seed)  # SimSiam drops 0.08 more
    assert "### Claim 1 per seed" in text and "The paper's direction at 3 of 3 seeds" in text


def test_study_report_into_another_directory_stands_on_its_own(tmp_path):
    # prepare
    sweep = make_sweep(tmp_path)
    out = tmp_path / "docs" / "study"
    # execute
    code = report_main([str(sweep), "--out", str(out)])
    # assert: report, plots, claims and the sweep's grid + results are there; run links reach the sweep
    assert code == 0
    assert not (sweep / "report.md").exists()
    text = (out / "report.md").read_text()
    for name in ("claims.csv", "grid.yaml", "results.csv", "report_drop.png", "report_faults_1.png"):
        assert (out / name).is_file(), name
    assert (out / "results.csv").read_text() == (sweep / "results.csv").read_text()
    assert "](../../sweep/runs/mae-iid-ring-s0/20260101-000000-mae-iid-ring-s0)" in text


def test_missing_data_skips_plots_with_a_reason(tmp_path):
    # prepare: no run dirs (no rounds.csv), no connectivity / bytes columns, no faults, no claims
    sweep = make_sweep(tmp_path, claims=False, with_rounds=False)
    path = sweep / "results.csv"
    rows = list(csv.DictReader(path.open(newline="")))
    for r in rows:
        r.update(average_connectivity_mean="", bytes_out_total="", faults="")
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    # execute
    report = write_study_report(sweep)
    # assert
    text = report.read_text()
    assert (sweep / "report_accuracy_alpha.png").is_file() and (sweep / "report_drop.png").is_file()
    for name in (
        "report_connectivity.png",
        "report_consensus.png",
        "report_learning_curves.png",
        "report_bytes.png",
        "report_faults_1.png",
    ):
        assert not (sweep / name).exists()
    for reason in (
        "accuracy vs |Ā| skipped",
        "consensus over rounds skipped: no complete run has a rounds.csv",
        "learning curves skipped: no complete run evaluated on a schedule",
        "bytes vs accuracy skipped",
        "fault timelines skipped",
    ):
        assert reason in text
    assert "## Claims" not in text and not (sweep / "claims.csv").exists()
    assert not (sweep / "claims_per_seed.csv").exists()


def test_report_of_a_non_sweep_directory_exits_2(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err
