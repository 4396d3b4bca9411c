"""``dssl sweep``: grid expansion, grid errors, resumable runs (fake runner), results.csv, one real sweep."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import pytest
import yaml

import launcher.sweep as sweep_mod
from launcher.cli import main
from launcher.grid import RESULT_COLUMNS_TAIL, load_grid, plan_for
from launcher.local import SignalForwarder
from launcher.rundir import create_run_dir
from launcher.spec import SpecError
from launcher.sweep import manifest_path, read_results, run_sweep, write_results
from tests.launcher.swarm_util import TINY

FAULTS = {"seed": 1, "events": [{"at": 5, "action": "slow", "peer": "p2", "factor": 3, "duration_s": 5}]}


def _write_grid(tmp_path: Path, grid: dict, spec: dict | None = None) -> Path:
    """spec.yaml (2 peers, 4 steps), faults.yaml and grid.yaml in tmp_path; sweep dir tmp_path/sweeps/s."""
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec or {
        "swarm": {"id": "t-sweep", "size": 2}, "base": {"train": {"steps": 4}}}))
    (tmp_path / "faults.yaml").write_text(yaml.safe_dump(FAULTS))
    grid = {"sweep": {"name": "s", "spec": "spec.yaml", "seeds": [0], "run_root": str(tmp_path / "sweeps"),
                      **grid.pop("sweep", {})}, **grid}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid, sort_keys=False))
    return path


TWO_BY_TWO = {"grids": [{"axes": {
    "method": {"simsiam": {"objective.name": "simsiam"}, "mae": {"objective.name": "mae"}},
    "split": {"iid": {"data.partition": "iid"}, "dir0.1": {"data.partition": "dirichlet:0.1"}},
}}]}


class FakeRunner:
    """Stands in for run_local: makes a swarm run dir with each peer's final.json; fails the runs
    whose name contains one of ``failing`` (peer p1 exits 1 and leaves nothing)."""

    def __init__(self, failing: tuple[str, ...] = ()):
        self.failing = failing
        self.calls: list[dict] = []

    def __call__(self, plan, argv, run_root, faults, insecure):
        name = Path(run_root).name
        self.calls.append({"name": name, "peers": len(plan.peers), "faults": faults, "insecure": insecure,
                           "argv": argv, "partition": plan.peers[0].config.data.partition,
                           "seed": plan.peers[0].config.train.seed})
        run = create_run_dir(run_root, plan.settings.swarm_id)
        fail = any(part in name for part in self.failing)
        codes = {}
        for peer in plan.peers:
            peer_dir = run.peer_dir(peer.peer_id)
            peer_dir.mkdir(parents=True)
            crashed = fail and peer.peer_id == "p1"
            codes[peer.peer_id] = 1 if crashed else 0
            if not crashed:
                (peer_dir / "final.json").write_text(json.dumps({
                    "peer_id": peer.peer_id, "step": 4, "round": 2 + peer.index,
                    "eval_final": {"knn": 0.5 + 0.1 * peer.index, "linear": 0.6 + 0.1 * peer.index},
                    "eval_init": {"knn": 0.1}}))
        return run, codes


# ---- expansion ---------------------------------------------------------------------------------


def test_grid_expands_to_the_union_of_products_times_seeds_in_label_order(tmp_path):
    # prepare
    path = _write_grid(tmp_path, {
        "sweep": {"seeds": [0, 1]},
        "set": {"train.steps": 3, "train.period": 1},
        "grids": [
            {"axes": {"method": {"simsiam": {"objective.name": "simsiam", "train.period": 2},
                                 "mae": {"objective.name": "mae"}},
                      "split": {"iid": {"data.partition": "iid"},
                                "dir0.1": {"data.partition": "dirichlet:0.1", "train.period": 3}}}},
            {"axes": {"graph": {"ring": {"gossip.topology": "ring", "swarm.size": 3},
                                "ring_faults": {"gossip.topology": "ring", "swarm.size": 3,
                                                "swarm.faults": "faults.yaml"}}}},
        ],
    })
    # execute
    grid = load_grid(path)
    # assert: product of grid 0 (2x2), union with grid 1 (2), each per seed, in file order
    names = [r.name for r in grid.runs]
    assert names == [f"{a},seed={s}" for a in (
        "method=simsiam,split=iid", "method=simsiam,split=dir0.1",
        "method=mae,split=iid", "method=mae,split=dir0.1",
        "graph=ring", "graph=ring_faults") for s in (0, 1)]
    assert grid.axes == ("method", "split", "graph")
    runs = {r.name: r for r in grid.runs}
    # later axes win over earlier ones, and both over `set`
    assert runs["method=simsiam,split=dir0.1,seed=0"].overrides["train.period"] == 3
    assert runs["method=simsiam,split=iid,seed=0"].overrides["train.period"] == 2
    assert runs["method=mae,split=iid,seed=1"].overrides == {
        "train.steps": 3, "train.period": 1, "objective.name": "mae", "data.partition": "iid"}
    # special keys leave the overrides and become the plan's size / fault schedule
    faulty = runs["graph=ring_faults,seed=1"]
    assert faulty.size == 3 and faulty.faults == (tmp_path / "faults.yaml").resolve()
    assert "swarm.size" not in faulty.overrides and runs["method=mae,split=iid,seed=0"].size is None
    plan = plan_for(grid, faulty)
    assert len(plan.peers) == 3 and plan.settings.seed == 1
    assert {(p.config.train.seed, p.config.data.seed) for p in plan.peers} == {(1, 1)}
    # a string with a colon survives the trip through --set syntax
    split = plan_for(grid, runs["method=mae,split=dir0.1,seed=0"])
    assert split.peers[0].config.data.partition == "dirichlet:0.1" and split.peers[0].config.train.period == 3


def test_identical_runs_of_two_grids_run_once_with_both_grids_labels(tmp_path):
    # prepare: grid 1's "ring" run resolves to the same overrides as grid 0's mae/dir0.1 run
    path = _write_grid(tmp_path, {"grids": [
        {"axes": {"method": {"mae": {"objective.name": "mae"}},
                  "split": {"iid": {"data.partition": "iid"},
                            "dir0.1": {"data.partition": "dirichlet:0.1"}}}},
        {"axes": {"graph": {"ring": {"objective.name": "mae", "data.partition": "dirichlet:0.1"},
                            "full": {"objective.name": "mae", "data.partition": "dirichlet:0.1",
                                     "gossip.topology": "full"}}}},
    ]})
    # execute
    grid = load_grid(path)
    # assert
    names = [r.name for r in grid.runs]
    assert names == ["method=mae,split=iid,seed=0", "method=mae,split=dir0.1,seed=0", "graph=full,seed=0"]
    folded = grid.runs[1]
    assert folded.axes == {"method": "mae", "split": "dir0.1", "graph": "ring"}
    assert folded.aliases == ("graph=ring,seed=0",)


def test_labels_are_made_filesystem_safe_in_run_names(tmp_path):
    # prepare
    labels = {"dirichlet:0.1 / x": {"data.partition": "iid"}, 0.5: {"data.partition": "dirichlet:0.5"}}
    path = _write_grid(tmp_path, {"grids": [{"axes": {"split": labels}}]})
    # execute
    grid = load_grid(path)
    # assert: the label keeps its text, the name replaces what a file name cannot hold
    assert [r.name for r in grid.runs] == ["split=dirichlet_0.1___x,seed=0", "split=0.5,seed=0"]
    assert grid.runs[0].axes == {"split": "dirichlet:0.1 / x"} and grid.runs[1].axes == {"split": "0.5"}


# ---- errors ------------------------------------------------------------------------------------


def _one(overrides: dict) -> dict:
    """A grid of one axis ``m`` with one label ``a``."""
    return {"grids": [{"axes": {"m": {"a": overrides}}}]}


@pytest.mark.parametrize("grid, needle", [
    ({"grids": [{"axes": {"method": {"mae": {"objective.nam": "mae"}}}}]},
     "grids[0].axes.method.mae: override key 'objective.nam': unknown peer-config key"),
    ({"set": {"objectiv.name": "mae"}, **_one({})}, "set: override key 'objectiv.name'"),
    ({"grids": [{"axes": {"knn_mean": {"a": {}}}}]}, "clashes with a results column"),
    ({"grids": [{"axes": {"seed": {"a": {}}}}]}, "clashes with a results column"),
    ({"grids": [{"axes": {"method": {}}}]}, "grids[0].axes.method: empty axis"),
    ({"grids": [{"axes": {}}]}, "grids[0].axes: expected a non-empty mapping"),
    ({"grids": []}, "grids: expected a non-empty list"),
    ({"sweep": {"seeds": []}, **TWO_BY_TWO}, "sweep.seeds: expected a non-empty list"),
    ({"sweep": {"seeds": [0, 0]}, **TWO_BY_TWO}, "sweep.seeds"),
    ({"sweep": {"seeds": "0,1"}, **TWO_BY_TWO}, "sweep.seeds"),
    ({"sweep": {"seeds": [True]}, **TWO_BY_TWO}, "sweep.seeds"),
    ({"sweep": {"spec": "nowhere.yaml"}, **TWO_BY_TWO}, "sweep.spec: swarm spec"),
    ({"sweep": {"seed": 1}, **TWO_BY_TWO}, "sweep: unknown key(s) seed"),
    ({"sweep": {"name": "a/b"}, **TWO_BY_TWO}, "sweep.name"),
    ({"runs": 3, **TWO_BY_TWO}, "unknown key(s) runs"),
    (_one({"swarm.seed": 3}), "a grid may set only swarm.faults, swarm.size"),
    (_one({"train.seed": 3}), "'train.seed' is set by the launcher"),
    (_one({"swarm.size": 0}), "grids[0].axes.m.a.swarm.size"),
    (_one({"objective": "mae"}), "expected a dotted key"),
    (_one({"gossip.topology": "nope"}), "run m=a,seed=0: peer 0: gossip.topology"),
    (_one({"swarm.faults": "missing.yaml"}), "run m=a,seed=0: swarm.faults"),
    (_one({"swarm.faults": "faults.yaml"}), "no peer 'p2'"),  # the schedule slows p2; 2 peers: p0, p1
    ({"grids": [*_one({"train.steps": 2})["grids"], *_one({"train.steps": 3})["grids"]]}, "share this name"),
])
def test_bad_grids_fail_with_a_message_naming_the_key(tmp_path, grid, needle):
    # prepare
    path = _write_grid(tmp_path, json.loads(json.dumps(grid)))
    # execute
    with pytest.raises(SpecError) as info:
        load_grid(path)
    # assert
    assert needle in str(info.value)


def test_a_missing_data_directory_fails_before_any_run_starts(tmp_path, capsys):
    # prepare
    path = _write_grid(tmp_path, {"set": {"data.root": str(tmp_path / "no-data")}, **TWO_BY_TWO})
    runner = FakeRunner()
    # execute
    with pytest.raises(SpecError, match="data.root"):
        run_sweep(load_grid(path), runner=runner)
    code = main(["sweep", str(path)])
    # assert
    assert runner.calls == [] and code == 2
    assert "dssl sweep: error:" in capsys.readouterr().err
    assert not (tmp_path / "sweeps" / "s").exists()


def test_hosts_inventory_must_host_each_runs_peers(tmp_path):
    # prepare
    sizes = {"two": {"swarm.size": 2}, "three": {"swarm.size": 3}}
    path = _write_grid(tmp_path, {"grids": [{"axes": {"n": sizes}}]})
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [{"address": "127.0.0.1", "transport": "local", "peers": 2}]}))
    # execute / assert
    with pytest.raises(SpecError, match="n=three,seed=0: swarm.size is 3 but the hosts inventory hosts 2"):
        run_sweep(load_grid(path), hosts=hosts, runner=FakeRunner())


# ---- running (fake runner) ---------------------------------------------------------------------


def _manifest(grid, name: str) -> dict:
    return json.loads(manifest_path(grid.sweep_dir, name).read_text())


def test_sweep_runs_everything_then_resumes_only_what_is_not_complete(tmp_path, capsys):
    # prepare
    grid = load_grid(_write_grid(tmp_path, TWO_BY_TWO))
    first = FakeRunner(failing=("method=mae,split=iid",))
    # execute: one run fails
    code = run_sweep(grid, runner=first)
    out = capsys.readouterr().out
    # assert
    assert code == 1 and [c["name"] for c in first.calls] == [r.name for r in grid.runs]
    assert first.calls[1]["partition"] == "dirichlet:0.1" and first.calls[0]["insecure"] is False
    assert "[1/4] method=simsiam,split=iid,seed=0 complete in" in out and "(knn 0.550)" in out
    assert "[3/4] method=mae,split=iid,seed=0 failed in" in out and "exit codes p1=1" in out
    assert "dssl sweep: 4 runs: 3 complete, 1 failed; results" in out
    failed = _manifest(grid, "method=mae,split=iid,seed=0")
    assert failed["status"] == "failed" and failed["exit_codes"] == {"p0": 0, "p1": 1}
    done = _manifest(grid, "method=simsiam,split=iid,seed=0")
    assert done["status"] == "complete" and done["peers"] == 2
    assert done["axes"] == {"method": "simsiam", "split": "iid"}
    assert done["run_dir"].startswith("runs/method=simsiam,split=iid,seed=0/")
    assert (grid.sweep_dir / done["run_dir"] / "summary.json").is_file()
    assert (grid.sweep_dir / "grid.yaml").read_text() == grid.source.read_text()
    # a crash mid-run leaves "running": the next start re-runs it too
    crashed = _manifest(grid, "method=mae,split=dir0.1,seed=0")
    crashed["status"] = "running"
    manifest_path(grid.sweep_dir, crashed["name"]).write_text(json.dumps(crashed))
    second = FakeRunner()
    # execute: resume
    code = run_sweep(load_grid(grid.source), runner=second)
    out = capsys.readouterr().out
    # assert: complete runs skipped, the failed and the crashed one re-run with their old dirs recorded
    assert code == 0
    assert [c["name"] for c in second.calls] == ["method=mae,split=iid,seed=0",
                                                  "method=mae,split=dir0.1,seed=0"]
    assert "[1/4] method=simsiam,split=iid,seed=0 skip (complete)" in out
    again = _manifest(grid, "method=mae,split=iid,seed=0")
    assert again["status"] == "complete" and again["attempts"] == [failed["run_dir"]]
    assert again["run_dir"] != failed["run_dir"] and (grid.sweep_dir / failed["run_dir"]).is_dir()
    assert _manifest(grid, "method=mae,split=dir0.1,seed=0")["attempts"] == [crashed["run_dir"]]
    # execute: everything complete -> nothing runs
    third = FakeRunner()
    assert run_sweep(load_grid(grid.source), runner=third) == 0 and third.calls == []


def test_only_and_stop_on_failure_select_and_stop(tmp_path, capsys):
    # prepare
    grid = load_grid(_write_grid(tmp_path, TWO_BY_TWO))
    runner = FakeRunner(failing=("split=iid",))
    # execute
    code = run_sweep(grid, only=["split=iid"], keep_going=False, runner=runner)
    out = capsys.readouterr().out
    # assert: two runs selected, the first fails and the sweep stops
    assert code == 1 and [c["name"] for c in runner.calls] == ["method=simsiam,split=iid,seed=0"]
    assert "dssl sweep: 2 runs: 0 complete, 1 failed, 1 pending" in out
    rows = read_results(grid.sweep_dir)
    assert [r["status"] for r in rows] == ["failed", "pending", "pending", "pending"]
    with pytest.raises(SpecError, match="no run of the sweep matches"):
        run_sweep(grid, only=["nothing"], runner=runner)


def test_ctrl_c_during_a_run_marks_it_failed_writes_results_and_exits_130(tmp_path, capsys):
    # prepare: the runner gets Ctrl-C while its SignalForwarder is active, as run_local does
    grid = load_grid(_write_grid(tmp_path, TWO_BY_TWO))
    inner = FakeRunner()
    calls = []

    def interrupted_runner(*args):
        calls.append(args)
        with SignalForwarder() as forwarder:
            os.kill(os.getpid(), signal.SIGINT)
            while not forwarder.requested:  # the handler runs at the next bytecode boundary
                pass
            return inner(*args)

    # execute
    code = run_sweep(grid, runner=interrupted_runner)
    out = capsys.readouterr().out
    # assert
    assert code == 130 and len(calls) == 1
    manifest = _manifest(grid, grid.runs[0].name)
    assert manifest["status"] == "failed" and manifest["error"] == "interrupted"
    assert "interrupted after" in out
    assert [r["status"] for r in read_results(grid.sweep_dir)] == ["failed", "pending", "pending", "pending"]


def test_a_runner_that_raises_fails_its_run_and_the_sweep_goes_on(tmp_path):
    # prepare
    grid = load_grid(_write_grid(tmp_path, TWO_BY_TWO))
    good = FakeRunner()

    def runner(plan, argv, run_root, faults, insecure):
        if "mae,split=iid" in run_root:
            raise RuntimeError("could not start")
        return good(plan, argv, run_root, faults, insecure)

    # execute
    code = run_sweep(grid, runner=runner)
    # assert
    assert code == 1 and len(good.calls) == 3
    assert _manifest(grid, "method=mae,split=iid,seed=0")["error"] == "RuntimeError: could not start"


def test_a_complete_run_with_other_settings_is_not_silently_reused(tmp_path):
    # prepare
    path = _write_grid(tmp_path, TWO_BY_TWO)
    run_sweep(load_grid(path), only=["method=mae,split=iid"], runner=FakeRunner())
    changed = yaml.safe_load(path.read_text())
    changed["grids"][0]["axes"]["method"]["mae"]["train.steps"] = 7
    path.write_text(yaml.safe_dump(changed, sort_keys=False))
    # execute / assert
    with pytest.raises(SpecError, match="is a complete run with other settings"):
        run_sweep(load_grid(path), runner=FakeRunner())


# ---- results -----------------------------------------------------------------------------------


def test_results_csv_has_the_columns_in_order_and_the_run_numbers(tmp_path):
    # prepare
    path = _write_grid(tmp_path, {"grids": [
        {"axes": {"method": {"mae": {"objective.name": "mae"}}, "split": {"iid": {"data.partition": "iid"}}}},
        {"axes": {"graph": {"full": {"gossip.topology": "full", "swarm.faults": "faults.yaml",
                                     "swarm.size": 3}}}},
    ]})
    grid = load_grid(path)
    run_sweep(grid, runner=FakeRunner(failing=("graph=full",)))
    complete = _manifest(grid, "method=mae,split=iid,seed=0")
    diagnostics_path = grid.sweep_dir / complete["run_dir"] / "diagnostics.json"
    diagnostics = json.loads(diagnostics_path.read_text())
    diagnostics.update(spectral_gap_mean=0.25, spectral_gap_min=0.125, bytes_out_total=123456,
                       collapse_std_mean=0.03)
    diagnostics_path.write_text(json.dumps(diagnostics))
    # execute
    write_results(grid.sweep_dir)
    with (grid.sweep_dir / "results.csv").open(newline="") as fh:
        header, *lines = list(csv.reader(fh))
    rows = read_results(grid.sweep_dir)
    # assert
    assert header == ["run", "status", "seed", "method", "split", "graph", *RESULT_COLUMNS_TAIL]
    assert len(lines) == 2 and all(len(line) == len(header) for line in lines)
    mae, full = rows
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
    # a failed run: its settings, no numbers
    assert full["status"] == "failed" and full["graph"] == "full" and full["faults"] == "faults.yaml"
    assert full["peers"] == 3 and full["topology"] == "full" and full["knn_mean"] is None


def test_results_rewrite_is_atomic(tmp_path, monkeypatch):
    # prepare
    grid = load_grid(_write_grid(tmp_path, TWO_BY_TWO))
    run_sweep(grid, only=["method=mae,split=iid"], runner=FakeRunner())
    before = (grid.sweep_dir / "results.csv").read_bytes()
    manifest = _manifest(grid, "method=mae,split=dir0.1,seed=0")
    manifest["status"] = "failed"
    manifest_path(grid.sweep_dir, manifest["name"]).write_text(json.dumps(manifest))

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(sweep_mod.os, "replace", crash)
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
    row.update(run="alpha=0.1,seed=2", status="complete", seed="2", alpha="0.1", peers="8", steps="300",
               knn_mean="0.7125", bytes_out_total="1048576", wall_s="95.5", partition="dirichlet:0.1")
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


def test_dry_run_lists_the_runs_and_starts_nothing(tmp_path, capsys):
    # prepare
    path = _write_grid(tmp_path, {"set": {"train.steps": 3}, **TWO_BY_TWO})
    # execute
    code = main(["sweep", str(path), "--dry-run", "--only", "dir0.1"])
    out = capsys.readouterr().out
    # assert
    assert code == 0
    assert "every run: train.steps=3" in out
    line = 'method=mae,split=dir0.1,seed=0  peers=2  objective.name="mae" data.partition="dirichlet:0.1"'
    assert line in out
    assert "split=iid" not in out and "dssl sweep: 2 runs of s (dry run" in out
    assert not (tmp_path / "sweeps").exists()


# ---- a real sweep ------------------------------------------------------------------------------


@pytest.mark.swarm
@pytest.mark.slow
def test_dssl_sweep_runs_two_real_two_peer_swarms_and_tabulates_them(tmp_path, capsys):
    # prepare: the tiny real-data peers of the swarm tests, 4 steps, IID vs Dirichlet
    base = json.loads(json.dumps(TINY))
    base["train"]["steps"] = 4
    spec = {"swarm": {"id": "t-sweep-real", "size": 2, "ready_timeout_s": 120, "stop_deadline_s": 30},
            "base": base, "defaults": {"threads": 1}}
    path = _write_grid(tmp_path, {"grids": [{"axes": {"split": {
        "iid": {"data.partition": "iid"}, "dir0.5": {"data.partition": "dirichlet:0.5"}}}}]}, spec)
    # execute
    code = main(["sweep", str(path)])
    out = capsys.readouterr().out
    # assert
    assert code == 0, out
    assert "[1/2] split=iid,seed=0 complete in" in out and "[2/2] split=dir0.5,seed=0 complete in" in out
    sweep_dir = tmp_path / "sweeps" / "s"
    rows = read_results(sweep_dir)
    assert [(r["run"], r["status"], r["split"]) for r in rows] == [
        ("split=iid,seed=0", "complete", "iid"), ("split=dir0.5,seed=0", "complete", "dir0.5")]
    for row in rows:
        assert row["peers"] == 2 and row["steps"] == 4 and row["partition"] in ("iid", "dirichlet:0.5")
        assert 0.0 <= row["knn_min"] <= row["knn_mean"] <= row["knn_max"] <= 1.0
        assert row["rounds_min"] >= 1 and row["bytes_out_total"] > 0 and row["consensus_distance"] is not None
        run_dir = sweep_dir / row["run_dir"]
        assert (run_dir / "manifest.json").is_file() and (run_dir / "tls").is_dir()  # mutual TLS by default
    # execute: started again, nothing re-runs
    assert main(["sweep", str(path)]) == 0
    assert capsys.readouterr().out.count("skip (complete)") == 2
