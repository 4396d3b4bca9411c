"""launcher.fault_runner: a fault schedule applied to real (stand-in) peer processes."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import psutil

from launcher.fault_runner import FaultRunner
from launcher.fault_schedule import FaultEvent, FaultSchedule, schedule_from_dict
from launcher.processes import SwarmProcesses
from peer.rundir import FAULT_CONTROL_FILE
from tests.launcher.swarm_util import reaped_swarm, tiny_plan, wait_for

FAKE_PEER = (sys.executable, str(Path(__file__).resolve().parent / "_fake_peer.py"))
PEERS = ["p0", "p1", "p2", "p3"]
# p3 joins late; triggers by time and by p0's round
SCHEDULE = {
    "seed": 9,
    "events": [
        {"round": 40, "of": "p0", "action": "stop", "peer": "p1", "duration_s": 0.5},
        {"at": 0, "action": "drop", "peer": "p2", "p": 0.4, "mode": "abort"},
        {"at": 0, "action": "bandwidth", "peer": "p0", "to": "p2", "bytes_per_s": 1.0e6, "duration_s": 0.3},
        {"at": 0, "action": "partition", "groups": [["p0", "p1"], ["p2", "p3"]]},
        {"at": 0.4, "action": "heal"},
        {"at": 0.5, "action": "kill", "peer": "p2"},
        {"at": 0.8, "action": "restart", "peer": "p2"},
        {"at": 0.8, "action": "join", "peer": "p3"},
        {"at": 1.0, "action": "slow", "peer": "p0", "factor": 5, "duration_s": 1.5},
        {"at": 5.0, "action": "leave", "peer": "p1"},
    ],
}


def _fake_swarm(tmp_path, reaper, size=4) -> SwarmProcesses:
    return reaped_swarm(tiny_plan(size, "t-faults", steps=None), tmp_path, reaper, peer_command=FAKE_PEER)


def _control(swarm: SwarmProcesses, peer_id: str) -> dict:
    return json.loads((swarm.run.peer_dir(peer_id) / FAULT_CONTROL_FILE).read_text())


def _stepped(runner: FaultRunner) -> bool:
    """Fire what is due (the test drives the runner), then let the caller check a condition."""
    runner.step()
    return True


def _status(swarm: SwarmProcesses, peer_id: str) -> str:
    return psutil.Process(swarm.processes[peer_id].pid).status()


def _until(runner: FaultRunner, condition, timeout: float, what: str, poll_s: float = 0.3) -> None:
    wait_for(lambda: _stepped(runner) and condition(), timeout, what, poll_s=poll_s)


def _drive_transport_faults(runner: FaultRunner, swarm: SwarmProcesses) -> None:
    runner.step()
    assert _control(swarm, "p2")["drop"] == {"p": 0.4, "mode": "abort"}
    assert _control(swarm, "p0")["links"] == {"p2": {"bytes_per_s": 1.0e6}}
    assert all(_control(swarm, p)["partition"] == [["p0", "p1"], ["p2", "p3"]] for p in PEERS)
    _until(runner, lambda: _control(swarm, "p0").get("links") == {}, 10, "the bandwidth undo")
    _until(runner, lambda: "partition" not in _control(swarm, "p3"), 10, "heal")


def _drive_process_faults(runner: FaultRunner, swarm: SwarmProcesses, first_p2) -> None:
    _until(runner, lambda: "p3" in swarm.processes, 10, "p3's late join and p2's restart")
    assert swarm.processes["p2"].pid != first_p2.pid and first_p2.popen.wait(10) == -signal.SIGKILL
    stopped = psutil.STATUS_STOPPED
    _until(runner, lambda: _status(swarm, "p0") == stopped, 10, "p0's duty cycle", poll_s=0.02)
    _until(runner, lambda: _status(swarm, "p1") == stopped, 10, "p1 stopped at p0's round 40", poll_s=0.05)
    _until(runner, lambda: _status(swarm, "p1") != stopped, 10, "p1 resumed", poll_s=0.05)
    _until(runner, lambda: not swarm.processes["p1"].alive(), 20, "p1 to leave")
    _until(runner, runner.done, 20, "every event and undo")


def _assert_faults_logged(swarm: SwarmProcesses) -> None:
    faults = swarm.timeline.events("fault")
    timed = [e["action"] for e in faults if e["action"] not in ("stop", "resume")]
    assert timed[:3] == ["drop", "bandwidth", "partition"]
    # the bandwidth undo is due 0.3 s after the bandwidth fault fired, heal at 0.4 s: on a loaded
    # machine the first step comes late enough to swap them
    assert sorted(timed[3:5]) == ["bandwidth", "heal"]
    assert {e["action"] for e in faults} == {
        *("stop", "resume", "drop", "bandwidth", "partition", "heal"),
        *("kill", "restart", "join", "slow", "leave"),
    }
    stop = next(e for e in faults if e["action"] == "stop")
    assert stop["peer"] == "p1" and stop["trigger"] == {
        "action": "stop",
        "peer": "p1",
        "round": 40,
        "of": "p0",
        "duration_s": 0.5,
    }
    on_disk = [json.loads(line) for line in swarm.run.timeline_path.read_text().splitlines()]
    assert [e for e in on_disk if e["event"] == "fault"] == faults
    # a restart joins through several live peers (any one may die next): p0 and p1 were up for p2's
    restarted = [e for e in swarm.timeline.events("spawned") if e["peer"] == "p2"][-1]
    assert {m.rsplit("/", 1)[1] for m in restarted["bootstrap"]} >= {"p0", "p1"}


def test_runner_applies_process_and_transport_faults_and_logs_them(tmp_path, reaper):
    # prepare
    schedule = schedule_from_dict(SCHEDULE, PEERS)
    swarm = _fake_swarm(tmp_path, reaper)
    swarm.start(hold=schedule.late_joiners())
    assert set(swarm.processes) == {"p0", "p1", "p2"}
    runner = FaultRunner(swarm, schedule).start(background=False)
    first_p2 = swarm.processes["p2"]
    # execute: drive the triggers from the test, checking the effects as they happen
    _drive_transport_faults(runner, swarm)
    _drive_process_faults(runner, swarm, first_p2)
    runner.close()
    # assert: p0 runs again after its slow-down ended and the runner closed
    assert _status(swarm, "p0") != psutil.STATUS_STOPPED
    rounds_before = runner.rounds.poll().get("p0")
    wait_for(lambda: runner.rounds.poll().get("p0") > rounds_before, 10, "p0 to make rounds again")
    codes = swarm.stop(deadline_s=10)
    assert codes["p1"] == 0 and codes["p2"] == 0 and codes["p3"] == 0  # leave is a clean exit
    _assert_faults_logged(swarm)
    assert all(_control(swarm, p) == {"seed": 9} for p in PEERS)  # close() cleared the faults
    assert swarm.timeline.events("crashed") == []


def test_close_resumes_a_stopped_peer_so_the_swarm_stops_cleanly(tmp_path, reaper):
    # prepare
    swarm = _fake_swarm(tmp_path, reaper, size=2)
    swarm.start()
    schedule = FaultSchedule(seed=0, events=(FaultEvent("stop", "p1", at=0.0),))
    runner = FaultRunner(swarm, schedule).start(background=True)
    wait_for(lambda: _status(swarm, "p1") == psutil.STATUS_STOPPED, 10, "p1 stopped", poll_s=0.05)
    # execute
    runner.close()
    codes = swarm.stop(deadline_s=10)
    # assert: SIGTERM reached a running process: exit code 0, not SIGKILL
    assert codes == {"p0": 0, "p1": 0}
    assert codes["p1"] != -signal.SIGKILL


def test_a_restart_waits_for_the_ended_process_to_exit(tmp_path, reaper, monkeypatch):
    # prepare: p1 takes 1 s to exit after SIGTERM; its restart is due 0.1 s after the leave
    monkeypatch.setenv("FAKE_PEER_EXIT_DELAY_S", "1.0")
    swarm = _fake_swarm(tmp_path, reaper, size=2)
    swarm.start()
    schedule = FaultSchedule(
        seed=0, events=(FaultEvent("leave", "p1", at=0.0), FaultEvent("restart", "p1", at=0.1))
    )
    runner = FaultRunner(swarm, schedule, poll_s=0.05).start(background=True)
    try:
        # execute
        wait_for(runner.done, 20, "the restart to fire", poll_s=0.05)
    finally:
        runner.close()
    # assert: the restart was applied once the old process had exited, not skipped
    restart = [e for e in runner.fired if e["action"] == "restart"]
    assert restart and restart[0]["applied"] is True
    assert restart[0]["t_fault"] >= 0.9
    assert len([e for e in swarm.timeline.events("spawned") if e["peer"] == "p1"]) == 2
