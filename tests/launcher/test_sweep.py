"""``dssl sweep``: grid expansion, grid errors, resumable runs (fake runner), one real sweep (with θ̄
and baselines).

The results table is tested in tests/analysis/test_results.py."""

from __future__ import annotations

import json
import os
import signal

import pytest
import yaml

from analysis.results import read_results
from launcher.cli import main
from launcher.grid import load_grid, plan_for
from launcher.processes import SignalForwarder
from launcher.spec import SpecError
from launcher.sweep import manifest_path, run_sweep
from tests.launcher.swarm_util import TINY
from tests.launcher.sweep_util import TWO_BY_TWO, FakeRunner, read_manifest, write_grid

# ---- expansion ---------------------------------------------------------------------------------


THREE_AXES = {
    "sweep": {"seeds": [0, 1]},
    "set": {"train.steps": 3, "train.period": 1},
    "grids": [
        {
            "axes": {
                "method": {
                    "simsiam": {"objective.name": "simsiam", "train.period": 2},
                    "mae": {"objective.name": "mae"},
                },
                "split": {
                    "iid": {"data.partition": "iid"},
                    "dir0.1": {"data.partition": "dirichlet:0.1", "train.period": 3},
                },
            }
        },
        {
            "axes": {
                "graph": {
                    "ring": {"gossip.topology": "ring", "swarm.size": 3},
                    "ring_faults": {
                        "gossip.topology": "ring",
                        "swarm.size": 3,
                        "swarm.faults": "faults.yaml",
                    },
                }
            }
        },
    ],
}


def test_grid_expands_to_the_union_of_products_times_seeds_seed_by_seed(tmp_path):
    # prepare
    path = write_grid(tmp_path, json.loads(json.dumps(THREE_AXES)))
    # execute
    grid = load_grid(path)
    # assert: product of grid 0 (2x2), union with grid 1 (2), seed by seed, in file order
    names = [r.name for r in grid.runs]
    assert names == [
        f"{a},seed={s}"
        for s in (0, 1)
        for a in (
            "method=simsiam,split=iid",
            "method=simsiam,split=dir0.1",
            "method=mae,split=iid",
            "method=mae,split=dir0.1",
            "graph=ring",
            "graph=ring_faults",
        )
    ]
    assert grid.axes == ("method", "split", "graph")
    runs = {r.name: r for r in grid.runs}
    # later axes win over earlier ones, and both over `set`
    assert runs["method=simsiam,split=dir0.1,seed=0"].overrides["train.period"] == 3
    assert runs["method=simsiam,split=iid,seed=0"].overrides["train.period"] == 2
    assert runs["method=mae,split=iid,seed=1"].overrides == {
        "train.steps": 3,
        "train.period": 1,
        "objective.name": "mae",
        "data.partition": "iid",
    }


def test_grid_special_keys_become_the_plans_size_and_fault_schedule(tmp_path):
    # prepare
    path = write_grid(tmp_path, json.loads(json.dumps(THREE_AXES)))
    # execute
    grid = load_grid(path)
    runs = {r.name: r for r in grid.runs}
    faulty = runs["graph=ring_faults,seed=1"]
    plan = plan_for(grid, faulty)
    split = plan_for(grid, runs["method=mae,split=dir0.1,seed=0"])
    # assert: special keys leave the overrides and become the plan's size / fault schedule
    assert faulty.size == 3 and faulty.faults == (tmp_path / "faults.yaml").resolve()
    assert "swarm.size" not in faulty.overrides and runs["method=mae,split=iid,seed=0"].size is None
    assert len(plan.peers) == 3 and plan.settings.seed == 1
    assert {(p.config.train.seed, p.config.data.seed) for p in plan.peers} == {(1, 1)}
    # a string with a colon survives the trip through --set syntax
    assert split.peers[0].config.data.partition == "dirichlet:0.1" and split.peers[0].config.train.period == 3


def test_identical_runs_of_two_grids_run_once_with_both_grids_labels(tmp_path):
    # prepare: grid 1's "ring" run resolves to the same overrides as grid 0's mae/dir0.1 run
    path = write_grid(
        tmp_path,
        {
            "grids": [
                {
                    "axes": {
                        "method": {"mae": {"objective.name": "mae"}},
                        "split": {
                            "iid": {"data.partition": "iid"},
                            "dir0.1": {"data.partition": "dirichlet:0.1"},
                        },
                    }
                },
                {
                    "axes": {
                        "graph": {
                            "ring": {"objective.name": "mae", "data.partition": "dirichlet:0.1"},
                            "full": {
                                "objective.name": "mae",
                                "data.partition": "dirichlet:0.1",
                                "gossip.topology": "full",
                            },
                        }
                    }
                },
            ]
        },
    )
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
    path = write_grid(tmp_path, {"grids": [{"axes": {"split": labels}}]})
    # execute
    grid = load_grid(path)
    # assert: the label keeps its text, the name replaces what a file name cannot hold
    assert [r.name for r in grid.runs] == ["split=dirichlet_0.1___x,seed=0", "split=0.5,seed=0"]
    assert grid.runs[0].axes == {"split": "dirichlet:0.1 / x"} and grid.runs[1].axes == {"split": "0.5"}


# ---- errors ------------------------------------------------------------------------------------


def _one(overrides: dict) -> dict:
    """A grid of one axis ``m`` with one label ``a``."""
    return {"grids": [{"axes": {"m": {"a": overrides}}}]}


@pytest.mark.parametrize(
    "grid, needle",
    [
        (
            {"grids": [{"axes": {"method": {"mae": {"objective.nam": "mae"}}}}]},
            "grids[0].axes.method.mae: override key 'objective.nam': unknown peer-config key",
        ),
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
        (
            {"grids": [*_one({"train.steps": 2})["grids"], *_one({"train.steps": 3})["grids"]]},
            "share this name",
        ),
    ],
)
def test_bad_grids_fail_with_a_message_naming_the_key(tmp_path, grid, needle):
    # prepare
    path = write_grid(tmp_path, json.loads(json.dumps(grid)))
    # execute
    with pytest.raises(SpecError) as info:
        load_grid(path)
    # assert
    assert needle in str(info.value)


def test_a_missing_data_directory_fails_before_any_run_starts(tmp_path, capsys):
    # prepare
    path = write_grid(tmp_path, {"set": {"data.root": str(tmp_path / "no-data")}, **TWO_BY_TWO})
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
    path = write_grid(tmp_path, {"grids": [{"axes": {"n": sizes}}]})
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(yaml.safe_dump({"hosts": [{"address": "127.0.0.1", "transport": "local", "peers": 2}]}))
    # execute / assert
    with pytest.raises(SpecError, match="n=three,seed=0: swarm.size is 3 but the hosts inventory hosts 2"):
        run_sweep(load_grid(path), hosts=hosts, runner=FakeRunner())


# ---- running (fake runner) ---------------------------------------------------------------------

METHOD = {"simsiam": {"objective.name": "simsiam"}, "mae": {"objective.name": "mae"}}
ONE_AXIS = {"grids": [{"axes": {"method": METHOD}}]}


def test_sweep_runs_everything_and_records_each_outcome(tmp_path, capsys):
    # prepare
    grid = load_grid(write_grid(tmp_path, TWO_BY_TWO))
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
    failed = read_manifest(grid, "method=mae,split=iid,seed=0")
    assert failed["status"] == "failed" and failed["exit_codes"] == {"p0": 0, "p1": 1}
    done = read_manifest(grid, "method=simsiam,split=iid,seed=0")
    assert done["status"] == "complete" and done["peers"] == 2
    assert done["axes"] == {"method": "simsiam", "split": "iid"}
    assert done["run_dir"].startswith("runs/method=simsiam,split=iid,seed=0/")
    assert (grid.sweep_dir / done["run_dir"] / "summary.json").is_file()
    assert (grid.sweep_dir / "grid.yaml").read_text() == grid.source.read_text()


def test_a_resumed_sweep_reruns_only_what_is_not_complete(tmp_path, capsys):
    # prepare: one run failed, one crashed mid-run (its manifest still says "running")
    grid = load_grid(write_grid(tmp_path, TWO_BY_TWO))
    run_sweep(grid, runner=FakeRunner(failing=("method=mae,split=iid",)))
    failed = read_manifest(grid, "method=mae,split=iid,seed=0")
    crashed = read_manifest(grid, "method=mae,split=dir0.1,seed=0")
    crashed["status"] = "running"
    manifest_path(grid.sweep_dir, crashed["name"]).write_text(json.dumps(crashed))
    capsys.readouterr()
    second = FakeRunner()
    # execute: resume
    code = run_sweep(load_grid(grid.source), runner=second)
    out = capsys.readouterr().out
    # assert: complete runs skipped, the failed and the crashed one re-run with their old dirs recorded
    assert code == 0
    assert [c["name"] for c in second.calls] == [
        "method=mae,split=iid,seed=0",
        "method=mae,split=dir0.1,seed=0",
    ]
    assert "[1/4] method=simsiam,split=iid,seed=0 skip (complete)" in out
    again = read_manifest(grid, "method=mae,split=iid,seed=0")
    assert again["status"] == "complete" and again["attempts"] == [failed["run_dir"]]
    assert again["run_dir"] != failed["run_dir"] and (grid.sweep_dir / failed["run_dir"]).is_dir()
    assert read_manifest(grid, "method=mae,split=dir0.1,seed=0")["attempts"] == [crashed["run_dir"]]
    # execute: everything complete -> nothing runs
    third = FakeRunner()
    assert run_sweep(load_grid(grid.source), runner=third) == 0 and third.calls == []


def test_a_consensus_model_that_cannot_be_evaluated_is_reported_and_retried(tmp_path, capsys):
    # prepare: the fake runs leave no final parameters, so θ̄ cannot be evaluated
    grid = load_grid(write_grid(tmp_path, {"sweep": {"consensus": True}, **ONE_AXIS}))
    # execute
    code = run_sweep(grid, runner=FakeRunner())
    out = capsys.readouterr().out
    # assert: the swarm run stays complete, the missing θ̄ is recorded and fails the sweep
    manifest = read_manifest(grid, "method=simsiam,seed=0")
    assert manifest["status"] == "complete" and manifest["follow_ups"] == ["consensus model not evaluated"]
    assert "(knn 0.550); consensus model not evaluated" in out
    assert code == 1 and "2 without their consensus model / baselines" in out
    # execute: started again, the runs are not re-run but their θ̄ is tried again
    again = FakeRunner()
    assert run_sweep(load_grid(grid.source), runner=again) == 1
    out = capsys.readouterr().out
    assert again.calls == [] and out.count("complete; finishing its consensus model / baselines") == 2


def test_follow_ups_are_off_unless_the_grid_asks(tmp_path):
    grid = load_grid(write_grid(tmp_path, ONE_AXIS))
    assert (grid.consensus, grid.baselines) == (False, False)
    assert run_sweep(grid, runner=FakeRunner()) == 0
    assert read_manifest(grid, "method=simsiam,seed=0")["follow_ups"] == []


def test_only_and_stop_on_failure_select_and_stop(tmp_path, capsys):
    # prepare
    grid = load_grid(write_grid(tmp_path, TWO_BY_TWO))
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


def test_ctrl_c_during_a_run_marks_it_interrupted_writes_results_and_exits_130(tmp_path, capsys):
    # prepare: the runner gets Ctrl-C while its SignalForwarder is active, as run_swarm does
    grid = load_grid(write_grid(tmp_path, TWO_BY_TWO))
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
    manifest = read_manifest(grid, grid.runs[0].name)
    assert manifest["status"] == "interrupted" and manifest["error"] == "interrupted"
    assert "interrupted after" in out
    statuses = [r["status"] for r in read_results(grid.sweep_dir)]
    assert statuses == ["interrupted", "pending", "pending", "pending"]
    assert "1 interrupted" in out


def test_a_runner_that_raises_fails_its_run_and_the_sweep_goes_on(tmp_path):
    # prepare
    grid = load_grid(write_grid(tmp_path, TWO_BY_TWO))
    good = FakeRunner()

    def runner(plan, argv, run_root, faults, insecure):
        if "mae,split=iid" in run_root:
            raise RuntimeError("could not start")
        return good(plan, argv, run_root, faults, insecure)

    # execute
    code = run_sweep(grid, runner=runner)
    # assert
    assert code == 1 and len(good.calls) == 3
    assert read_manifest(grid, "method=mae,split=iid,seed=0")["error"] == "RuntimeError: could not start"


def test_a_complete_run_with_other_settings_is_not_silently_reused(tmp_path):
    # prepare
    path = write_grid(tmp_path, TWO_BY_TWO)
    run_sweep(load_grid(path), only=["method=mae,split=iid"], runner=FakeRunner())
    changed = yaml.safe_load(path.read_text())
    changed["grids"][0]["axes"]["method"]["mae"]["train.steps"] = 7
    path.write_text(yaml.safe_dump(changed, sort_keys=False))
    # execute / assert
    with pytest.raises(SpecError, match="is a complete run with other settings"):
        run_sweep(load_grid(path), runner=FakeRunner())


def test_dry_run_lists_the_runs_and_starts_nothing(tmp_path, capsys):
    # prepare
    path = write_grid(tmp_path, {"set": {"train.steps": 3}, **TWO_BY_TWO})
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


def _real_grid(tmp_path):
    """A grid of two real two-peer runs (the tiny real-data peers, 4 steps): IID and Dirichlet 0.5."""
    base = json.loads(json.dumps(TINY))
    base["train"]["steps"] = 4
    spec = {
        "swarm": {"id": "t-sweep-real", "size": 2, "ready_timeout_s": 120, "stop_deadline_s": 30},
        "base": base,
        "defaults": {"threads": 1},
    }
    split = {"iid": {"data.partition": "iid"}, "dir0.5": {"data.partition": "dirichlet:0.5"}}
    flags = {"consensus": True, "baselines": True}
    return write_grid(tmp_path, {"sweep": flags, "grids": [{"axes": {"split": split}}]}, spec)


@pytest.mark.swarm
@pytest.mark.slow
def test_dssl_sweep_runs_two_real_two_peer_swarms_and_tabulates_them(tmp_path, capsys):
    # prepare: the tiny real-data peers of the swarm tests, 4 steps, IID vs Dirichlet
    path = _real_grid(tmp_path)
    # execute
    code = main(["sweep", str(path)])
    out = capsys.readouterr().out
    # assert
    assert code == 0, out
    assert "[1/2] split=iid,seed=0 complete in" in out and "[2/2] split=dir0.5,seed=0 complete in" in out
    sweep_dir = tmp_path / "sweeps" / "s"
    rows = read_results(sweep_dir)
    assert [(r["run"], r["status"], r["split"]) for r in rows] == [
        ("split=iid,seed=0", "complete", "iid"),
        ("split=dir0.5,seed=0", "complete", "dir0.5"),
    ]
    for row in rows:
        assert row["peers"] == 2 and row["steps"] == 4 and row["partition"] in ("iid", "dirichlet:0.5")
        assert 0.0 <= row["knn_min"] <= row["knn_mean"] <= row["knn_max"] <= 1.0
        assert row["rounds_min"] >= 1 and row["bytes_out_total"] > 0 and row["consensus_distance"] is not None
        for who in ("consensus", "local_only", "centralised"):  # θ̄ and both baselines, evaluated for real
            assert 0.0 <= row[f"{who}_knn"] <= 1.0 and 0.0 <= row[f"{who}_linear"] <= 1.0
        assert row["gain_knn"] == pytest.approx(row["knn_mean"] - row["local_only_knn"], abs=1e-9)
        run_dir = sweep_dir / row["run_dir"]
        assert (run_dir / "manifest.json").is_file() and (run_dir / "tls").is_dir()  # mutual TLS by default
    # execute: the sweep's report sets every run against its baselines
    assert main(["report", str(sweep_dir)]) == 0
    report = (sweep_dir / "report.md").read_text()
    assert "## Does the swarm pay?" in report and "| split=dir0.5,seed=0 | " in report
    # execute: started again, nothing re-runs
    capsys.readouterr()
    assert main(["sweep", str(path)]) == 0
    assert capsys.readouterr().out.count("skip (complete)") == 2
