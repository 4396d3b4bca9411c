"""The zygote (launcher.zygote): requests checked, real children forked with their exit codes
reported, and a real swarm whose peers are forked from it — trained, gossiped, killed and restarted
from their checkpoint by the fault runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from launcher.fault_runner import FaultRunner
from launcher.fault_schedule import schedule_from_dict
from launcher.processes import PEER_COMMAND
from launcher.zygote import check_request
from launcher.zygote_client import ENTRY, LOST_EXIT, Zygote, ZygoteChild, ZygoteError, running
from tests.launcher.swarm_util import churn_plan, reaped_swarm, rounds, wait_for


def _request(**changes) -> dict:
    return {"argv": ["--help"], "env": {}, "cwd": "/", "log": "/tmp/x.log", **changes}


@pytest.mark.parametrize(
    "bad, match",
    [
        ([], "expected a JSON object"),
        (_request(argv="--help"), "'argv': expected list"),
        (_request(argv=[]), "non-empty list of strings"),
        (_request(argv=[1]), "non-empty list of strings"),
        (_request(env={"A": 1}), "string keys and values"),
        (_request(cwd="/no/such/dir"), "is not a directory"),
        ({"argv": ["x"], "env": {}, "cwd": "/"}, "'log': expected str"),
    ],
)
def test_malformed_requests_are_refused_with_what_is_wrong(bad, match):
    with pytest.raises(ValueError, match=match):
        check_request(bad)


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.swarm
def test_forked_children_run_the_cli_and_their_exits_are_reported(tmp_path, reaper):
    # prepare
    log = tmp_path / "child.log"
    zygote = Zygote().start()
    try:
        # execute: a command that succeeds, one that fails, and two refusals
        ok = zygote.spawn([*ENTRY, "--help"], dict(os.environ), log)
        bad = zygote.spawn(
            [*ENTRY, "peer", "--config", str(tmp_path / "missing.yaml")], dict(os.environ), log
        )
        reaper.extend([ok, bad])
        codes = {"ok": ok.wait(60), "bad": bad.wait(60)}
        with pytest.raises(ZygoteError, match="runs only"):
            zygote.spawn([sys.executable, "-c", "pass"], dict(os.environ), log)
        zygote.proc.stdin.write(b'{"argv": "not a list"}\n')
        zygote.proc.stdin.flush()
        refused = zygote._answer(30, "raw request")
        again = zygote.spawn([*ENTRY, "--help"], dict(os.environ), log)  # the zygote serves on
        reaper.append(again)
        codes["again"] = again.wait(60)
    finally:
        zygote.close()
    # assert: the Popen conventions (0, 2 for a usage error), the CLI's output in the log
    assert codes == {"ok": 0, "bad": 2, "again": 0}, codes
    text = log.read_text()
    assert "usage: dssl" in text and "missing.yaml does not exist" in text
    assert "bad request" in refused["error"] and "'argv'" in refused["error"]
    assert zygote.info["ready"] and zygote.info["import_s"] > 0
    with pytest.raises(ZygoteError, match="not running"):
        zygote.spawn([*ENTRY, "--help"], dict(os.environ), log)


SCHEDULE = {
    "seed": 1,
    "events": [
        {"round": 3, "of": "p0", "action": "kill", "peer": "p2"},
        {"round": 6, "of": "p0", "action": "restart", "peer": "p2"},
    ],
}


@pytest.mark.swarm
@pytest.mark.slow
def test_a_swarm_of_forked_peers_trains_gossips_and_restarts_from_its_checkpoint(tmp_path, reaper):
    # prepare: 3 real peers, all forked from one zygote (swarm.zygote: true)
    plan = churn_plan(3, "t-zygote", zygote=True)
    zygote = Zygote().start()
    swarm = reaped_swarm(plan, tmp_path, reaper, peer_args=["--dht-ttl-s", "3"], zygote=zygote)
    dirs = {p.peer_id: swarm.run.peer_dir(p.peer_id) for p in plan.peers}
    schedule = schedule_from_dict(SCHEDULE, [p.peer_id for p in plan.peers])
    try:
        swarm.start()
        first_pids = {p: swarm.processes[p].pid for p in dirs}
        first_p2 = swarm.processes["p2"].popen
        parents = {p: _ppid(pid) for p, pid in first_pids.items()}
        runner = FaultRunner(swarm, schedule).start()
        try:
            # execute: the runner kills p2 at p0's round 3 and restarts it at round 6
            # 300 s: a restart whose first DHT process hangs is retried after its 60 s start-up deadline
            wait_for(lambda: runner.done() and swarm.processes["p2"].ready(), 300, "p2 killed and restarted")
            restarted = next(e for e in swarm.timeline.events("fault") if e["action"] == "restart")
            wait_for(
                lambda: any(r.get("answered") for r in rounds(dirs["p2"]) if r["time"] > restarted["t"]),
                120,
                "p2 to mix again after its restart",
            )
            restart_parent = _ppid(swarm.processes["p2"].pid)
        finally:
            runner.close()
            codes = swarm.stop(deadline_s=25)
    finally:
        zygote.close()
    # assert: every peer, the restarted one too, was the zygote's child; p2 resumed its checkpoint
    assert set(parents.values()) == {zygote.info["pid"]} and restart_parent == zygote.info["pid"]
    assert swarm.processes["p2"].pid != first_pids["p2"]
    assert first_p2.returncode == -signal.SIGKILL  # the kill, as the zygote reported it
    assert '"how": "checkpoint"' in swarm.run.log_path("p2").read_text()
    assert all(any(r.get("answered") for r in rounds(d)) for d in dirs.values())
    assert swarm.timeline.events("crashed") == []
    assert all(codes[p] in (0, 3) for p in dirs), codes
    assert tuple(PEER_COMMAND[:3]) == ENTRY  # what the launcher runs is what the zygote can run


def test_a_child_whose_zygote_is_gone_ends_with_lost_exit_instead_of_blocking(tmp_path):
    # prepare: a process that is nobody's child of ours (its parent shell exits at once), standing in
    # for a peer whose zygote died; and one that has already ended
    out = subprocess.run(["sh", "-c", "sleep 1 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True)
    orphaned = threading.Event()
    child = ZygoteChild(int(out.stdout.strip()), orphaned)
    # execute / assert: while the zygote lives, the child's exit can only come from it
    assert child.poll() is None
    orphaned.set()
    assert child.poll() is None and running(child.pid)  # still sleeping
    code = child.wait(timeout=30)
    assert code == LOST_EXIT and child.poll() == LOST_EXIT
    with pytest.raises(subprocess.TimeoutExpired):
        ZygoteChild(os.getpid(), orphaned).wait(timeout=0.3)  # a process that runs on: a deadline
