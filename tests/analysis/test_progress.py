"""Live progress from growing metrics files, and the final table listing every peer that ran."""

from __future__ import annotations

import json
from pathlib import Path

from analysis.collect import collect, format_table
from analysis.progress import SwarmProgress


def _append(path: Path, *records: dict, torn: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + torn)


def _train(step: int, round: int, loss: float, images_per_s: float) -> dict:
    return {"kind": "train", "step": step, "round": round, "loss_avg": loss, "images_per_s": images_per_s}


def _round(round: int, answered: int, expected: int) -> dict:
    return {"kind": "round", "round": round, "step": round * 10, "answered": answered, "expected": expected}


def test_progress_reads_only_appended_lines_and_keeps_a_torn_line_for_later(tmp_path):
    # prepare: two peers; p1's last line is still being written
    p0, p1 = (tmp_path / "peers" / p / "metrics.jsonl" for p in ("p0", "p1"))
    _append(p0, _train(10, 1, 0.5, 100.0), _round(1, 2, 2))
    _append(p1, _train(20, 2, 0.3, 50.0), torn='{"kind": "round", "round": 2, "ans')
    progress = SwarmProgress(tmp_path)
    # execute
    first = progress.snapshot()
    _append(p1, torn='wered": 1, "expected": 2}' + "\n")  # the rest of the torn line arrives
    second = progress.snapshot(live={"p1"})
    # assert
    assert (first.rounds_min, first.rounds_max, first.steps) == (1, 2, 30)
    assert abs(first.loss - 0.4) < 1e-9 and first.images_per_s == 150.0
    assert (first.answered, first.expected) == (2, 2)
    assert (second.answered, second.expected, second.images_per_s) == (1, 2, 50.0)
    line = second.line(12.0, live=1, total=2, crashed=1)
    assert "rounds 1-2" in line and "nbr 1/2" in line and "peers live 1/2 crashed 1" in line


def _final(peer_id: str, rounds: int) -> dict:
    evals = {"eval_init": {"knn": 0.5}, "eval_final": {"knn": 0.6}}
    return {"peer_id": peer_id, "step": rounds * 10, "round": rounds, **evals}


def test_the_final_table_lists_killed_crashed_and_restarted_peers(tmp_path):
    # prepare: p0 finished; p1 killed -9 at round 7; p2 restarted once, then finished; p3 crashed
    for peer_id, rounds in (("p0", 9), ("p2", 9)):
        (tmp_path / "peers" / peer_id).mkdir(parents=True)
        (tmp_path / "peers" / peer_id / "final.json").write_text(json.dumps(_final(peer_id, rounds)))
    _append(tmp_path / "peers" / "p1" / "metrics.jsonl", _train(70, 7, 0.4, 10.0))
    _append(tmp_path / "peers" / "p3" / "metrics.jsonl", _train(5, 0, 0.9, 10.0))
    events = [("spawned", "p0"), ("spawned", "p1"), ("spawned", "p2"), ("spawned", "p3")]
    events += [("exited", "p1", -9), ("exited", "p2", -9), ("spawned", "p2"), ("crashed", "p3", 1)]
    events += [("exited", "p0", 0), ("exited", "p2", 0)]
    _append(
        tmp_path / "timeline.jsonl", *({"event": e[0], "peer": e[1], "code": e[2:] and e[2]} for e in events)
    )
    # execute
    swarm = collect(tmp_path)
    table = format_table(swarm)
    # assert: all four peers are in the table with how they ended; the RESULT counts finished peers
    ended = {p.peer_id: p.ended for p in swarm.peers}
    assert ended == {
        "p0": "finished",
        "p1": "killed (exit -9) at round 7",
        "p2": "restarted 1x, finished",
        "p3": "crashed (exit 1) at round 0",
    }
    assert all(peer_id in table for peer_id in ended)
    assert swarm.result_line().startswith("RESULT peers=2 min_rounds=9 knn_acc_mean=0.6000")


def test_rounds_and_steps_follow_round_records_between_train_records(tmp_path):
    # prepare: a train record every 5 rounds, a round record every round
    metrics = tmp_path / "peers" / "p0" / "metrics.jsonl"
    _append(metrics, _train(40, 2, 0.5, 100.0), _round(3, 2, 2), _round(4, 2, 2))
    # execute
    snapshot = SwarmProgress(tmp_path).snapshot()
    # assert: round 4 at step 40 (the round record's step), the loss from the train record
    assert (snapshot.rounds_min, snapshot.rounds_max, snapshot.steps) == (4, 4, 40)
    assert snapshot.loss == 0.5
