"""Planning and running a swarm run's baselines: which jobs, with which overrides, how each ended.

The end-to-end test with real ``dssl train`` processes is in test_consensus_run.py; here the process
pool is also driven by stand-in commands (a fake only in this unit test) to reach its failure paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import launcher.baselines
from analysis.results import sweep_holding
from launcher.baselines import Job, _fits, baselines_main, plan_jobs, run_jobs
from launcher.grid import load_grid
from launcher.sweep import run_sweep
from peer.atomic_file import write_json
from peer.config import config_from_dict, dump_config
from tests.launcher.sweep_util import TWO_BY_TWO, FakeRunner, read_manifest, write_grid


def _run_dir(tmp_path, steps_done):
    for i, steps in enumerate(steps_done):
        peer_dir = tmp_path / "peers" / f"p{i}"
        peer_dir.mkdir(parents=True)
        cfg = config_from_dict(
            {"data": {"num_peers": len(steps_done), "peer_index": i}, "train": {"steps": 50, "threads": 1}}
        )
        dump_config(cfg, peer_dir / "config.yaml")
        if steps is not None:
            write_json(peer_dir / "final.json", {"step": steps})
    return tmp_path


def test_one_local_job_per_peer_and_a_centralised_job_for_the_swarms_total_steps(tmp_path):
    # prepare: p0 trained 30 steps (stopped early), p1 never wrote final.json (configured 50)
    run = _run_dir(tmp_path, [30, None])
    # execute
    jobs = plan_jobs(run, cores=2)
    # assert
    assert [j.name for j in jobs] == ["centralised", "p0", "p1"]  # the longest job starts first
    assert jobs[2].config == run / "peers" / "p1" / "config.yaml"
    assert jobs[2].out == run / "baselines" / "local" / "p1"
    assert "train.steps=30" in jobs[1].overrides and "train.steps=50" in jobs[2].overrides  # same work
    assert "data.union=true" in jobs[0].overrides and "train.steps=80" in jobs[0].overrides
    assert jobs[0].out == run / "baselines" / "centralised"
    assert {j.threads for j in jobs} == {1}  # the peers' thread count, the centralised job's too
    assert plan_jobs(run, cores=8)[0].threads == 6  # on more cores: those the local-only jobs leave


class _Command(Job):
    """A job whose process is a stand-in command."""

    def __init__(self, tmp_path, name, code):
        super().__init__(name, tmp_path / "c.yaml", [], tmp_path / name, 1)
        self.code = code

    def argv(self):
        return [sys.executable, "-c", self.code]


def test_failed_and_overdue_jobs_are_reported_and_finished_ones_kept(tmp_path, capsys):
    # prepare: one exits 3, one sleeps past the deadline, one already finished earlier
    done = _Command(tmp_path, "done", "raise SystemExit(9)")
    write_json(done.out / "final_eval.json", {"eval": {"knn": 0.5}})
    jobs = [
        _Command(tmp_path, "bad", "raise SystemExit(3)"),
        _Command(tmp_path, "slow", "import time; time.sleep(60)"),
        done,
    ]
    # execute
    ended = run_jobs(jobs, timeout_s=3.0, prog="t", cores=2)
    # assert
    assert ended == {"bad": "failed (exit 3)", "slow": "stopped after 3 s", "done": "kept (already finished)"}
    assert "baseline bad: failed (exit 3)" in capsys.readouterr().out


def test_the_command_refuses_a_missing_or_empty_run_directory(tmp_path, capsys):
    # execute / assert: not a directory -> 2; a directory without peers -> 1, said on stderr
    assert baselines_main([str(tmp_path / "missing")]) == 2
    assert baselines_main([str(tmp_path)]) == 1
    assert "no peers/<id>/config.yaml" in capsys.readouterr().err


def _launcher_script(tmp_path: Path, pid_file: Path) -> Path:
    """A launcher process running one long stand-in baseline that records its pid."""
    child_code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    script = tmp_path / "launcher.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            from pathlib import Path
            sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
            from launcher.baselines import Job, run_jobs

            class Sleeper(Job):
                def argv(self):
                    return [sys.executable, "-c", {child_code!r}]

            try:
                run_jobs([Sleeper("s", Path("c.yaml"), [], Path({str(tmp_path / "s")!r}), 1)], 300.0, "t")
            except KeyboardInterrupt as exc:
                print("interrupted by", exc, flush=True)
                raise SystemExit(130)
            """
        )
    )
    return script


def test_sigterm_to_the_launcher_stops_the_running_baselines(tmp_path):
    # prepare
    pid_file = tmp_path / "child.pid"
    script = _launcher_script(tmp_path, pid_file)
    launcher = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert launcher.poll() is None
            time.sleep(0.1)
        child = int(pid_file.read_text())
        # execute
        launcher.send_signal(signal.SIGTERM)
        out, _ = launcher.communicate(timeout=30)
        # assert: the launcher exits through its cleanup and the baseline's process is gone
        assert launcher.returncode == 130 and "interrupted by SIGTERM" in out
        assert not _alive(child)
    finally:
        launcher.kill()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is no longer running


def test_baselines_of_a_sweeps_run_rewrite_the_sweeps_results_csv(tmp_path, monkeypatch, capsys):
    # prepare: a swept grid (stand-in runner), its results.csv gone; the training itself stubbed
    # (real baselines train in test_consensus_run.py)
    grid = load_grid(write_grid(tmp_path, TWO_BY_TWO))
    run_sweep(grid, only=["method=mae,split=iid"], runner=FakeRunner())
    run_dir = grid.sweep_dir / read_manifest(grid, "method=mae,split=iid,seed=0")["run_dir"]
    (grid.sweep_dir / "results.csv").unlink()
    monkeypatch.setattr(launcher.baselines, "train_baselines", lambda *args: "gain_knn=0.01")
    # execute
    code = baselines_main([str(run_dir)])
    # assert: the sweep is found from the run, a run outside any sweep has none
    assert code == 0 and (grid.sweep_dir / "results.csv").is_file()
    assert "rewrote" in capsys.readouterr().out
    assert sweep_holding(run_dir) == grid.sweep_dir.resolve()
    assert sweep_holding(tmp_path) is None and sweep_holding(grid.sweep_dir) is None


def test_jobs_share_the_cores_by_their_thread_counts():
    # prepare: a 6-thread job, 1-thread jobs, and one on all cores (threads 0, counted as one)
    big, one, every = (
        Job(n, Path("c.yaml"), [], Path(n), t) for n, t in (("big", 6), ("one", 1), ("all", 0))
    )
    # execute / assert
    assert _fits(big, [], 2)  # nothing running: any job starts
    assert _fits(one, [big], 8) and _fits(one, [big, one], 8) and not _fits(one, [big, one, one], 8)
    assert not _fits(big, [big], 8)
    assert _fits(every, [one], 2) and not _fits(one, [one, every], 2)
