"""launcher.faults: schedule format, seeded generation, and the runner on real (stand-in) processes."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import psutil
import pytest

from launcher.faults import (
    ChurnRates,
    FaultEvent,
    FaultRunner,
    FaultSchedule,
    ScheduleError,
    generate_schedule,
    load_schedule,
    schedule_from_dict,
)
from launcher.local import LocalSwarm
from tests.launcher.swarm_util import reaped_swarm, tiny_plan, wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "faults.yaml"
FAKE_PEER = (sys.executable, str(Path(__file__).resolve().parent / "_fake_peer.py"))
PEERS = ["p0", "p1", "p2", "p3"]


def test_example_schedule_loads_against_the_swarm():
    # execute
    schedule = load_schedule(EXAMPLE, ["p0", "p1", "p2"])
    # assert
    actions = [e.action for e in schedule.events]
    assert schedule.seed == 7 and "kill" in actions and "partition" in actions
    kill = next(e for e in schedule.events if e.action == "kill")
    assert kill.round == 4 and kill.of == "p0" and kill.at is None
    assert schedule_from_dict(schedule.to_dict()) == schedule  # round trip


@pytest.mark.parametrize("event, message", [
    ({"at": 1, "action": "explode", "peer": "p0"}, "action"),
    ({"at": 1, "round": 2, "action": "kill", "peer": "p0"}, "exactly one trigger"),
    ({"action": "kill", "peer": "p0"}, "exactly one trigger"),
    ({"at": 1, "action": "kill", "peer": "p9"}, "no peer 'p9'"),
    ({"at": 1, "action": "kill"}, "needs the peer"),
    ({"at": 1, "action": "drop", "peer": "p0", "p": 1.5}, "probability"),
    ({"at": 1, "action": "slow", "peer": "p0"}, "factor"),
    ({"at": 1, "action": "kill", "peer": "p0", "factor": 2}, "unknown key"),
    ({"at": 1, "action": "partition", "groups": [["p0"]]}, "groups"),
    ({"at": -1, "action": "kill", "peer": "p0"}, "at"),
])
def test_bad_events_are_refused_with_the_key_named(event, message):
    # execute / assert
    with pytest.raises(ScheduleError, match=message):
        schedule_from_dict({"seed": 1, "events": [event]}, PEERS)


def test_generated_schedules_are_seeded_and_one_fault_at_a_time():
    # execute
    first = generate_schedule(5, PEERS, 600.0)
    again = generate_schedule(5, PEERS, 600.0)
    other = generate_schedule(6, PEERS, 600.0)
    # assert
    assert first == again and first != other
    assert len(first.events) >= 10
    assert {e.action for e in first.events} >= {"kill", "restart", "stop", "slow", "drop", "partition"}
    windows = []  # [start, end) of every fault: consecutive faults never overlap
    events = list(first.events)
    for i, event in enumerate(events):
        if event.action == "restart":
            continue
        end = events[i + 1].at if event.action == "kill" else event.at + event.params["duration_s"]
        windows.append((event.at, end))
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(windows, windows[1:]))
    assert all(e.at < 600.0 for e in first.events if e.action != "restart")
    assert schedule_from_dict(first.to_dict(), PEERS) == first
    assert generate_schedule(1, PEERS, 60.0, ChurnRates(kill_restart=0, stop_resume=0, slow=0, drop=0,
                                                        partition=0)).events == ()


def _fake_swarm(tmp_path, reaper, size=4) -> LocalSwarm:
    return reaped_swarm(tiny_plan(size, "t-faults", steps=None), tmp_path, reaper, peer_command=FAKE_PEER)


def _control(swarm: LocalSwarm, peer_id: str) -> dict:
    return json.loads((swarm.run.peer_dir(peer_id) / "faults.json").read_text())


def _stepped(runner: FaultRunner) -> bool:
    """Fire what is due (the test drives the runner), then let the caller check a condition."""
    runner.step()
    return True


def _status(swarm: LocalSwarm, peer_id: str) -> str:
    return psutil.Process(swarm.processes[peer_id].pid).status()


def test_runner_applies_process_and_transport_faults_and_logs_them(tmp_path, reaper):
    # prepare: p3 joins late; triggers by time and by p0's round
    schedule = schedule_from_dict({"seed": 9, "events": [
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
    ]}, PEERS)
    swarm = _fake_swarm(tmp_path, reaper)
    swarm.start(hold=schedule.late_joiners())
    assert set(swarm.processes) == {"p0", "p1", "p2"}
    runner = FaultRunner(swarm, schedule).start(background=False)
    first_p2 = swarm.processes["p2"]
    # execute: drive the triggers from the test, checking the effects as they happen
    runner.step()
    assert _control(swarm, "p2")["drop"] == {"p": 0.4, "mode": "abort"}
    assert _control(swarm, "p0")["links"] == {"p2": {"bytes_per_s": 1.0e6}}
    assert all(_control(swarm, p)["partition"] == [["p0", "p1"], ["p2", "p3"]] for p in PEERS)
    wait_for(lambda: _stepped(runner) and _control(swarm, "p0").get("links") == {}, 10, "the bandwidth undo")
    wait_for(lambda: _stepped(runner) and "partition" not in _control(swarm, "p3"), 10, "heal")
    wait_for(lambda: _stepped(runner) and "p3" in swarm.processes, 10, "p3's late join and p2's restart")
    assert swarm.processes["p2"].pid != first_p2.pid and first_p2.popen.wait(10) == -signal.SIGKILL
    wait_for(lambda: _stepped(runner) and _status(swarm, "p0") == psutil.STATUS_STOPPED, 10, "p0's duty cycle",
             poll_s=0.02)
    wait_for(lambda: _stepped(runner) and _status(swarm, "p1") == psutil.STATUS_STOPPED, 10, "p1 stopped at p0's round 40",
             poll_s=0.05)
    wait_for(lambda: _stepped(runner) and _status(swarm, "p1") != psutil.STATUS_STOPPED, 10, "p1 resumed", poll_s=0.05)
    wait_for(lambda: _stepped(runner) and not swarm.processes["p1"].alive(), 20, "p1 to leave")
    wait_for(lambda: _stepped(runner) and runner.done(), 20, "every event and undo")
    runner.close()
    # assert: p0 runs again after its slow-down ended and the runner closed
    assert _status(swarm, "p0") != psutil.STATUS_STOPPED
    rounds_before = runner.rounds.poll().get("p0")
    wait_for(lambda: runner.rounds.poll().get("p0") > rounds_before, 10, "p0 to make rounds again")
    codes = swarm.stop(deadline_s=10)
    assert codes["p1"] == 0 and codes["p2"] == 0 and codes["p3"] == 0  # leave is a clean exit
    faults = swarm.timeline.events("fault")
    timed = [e["action"] for e in faults if e["action"] not in ("stop", "resume")]
    assert timed[:4] == ["drop", "bandwidth", "partition", "bandwidth"]
    assert {e["action"] for e in faults} == {"stop", "resume", "drop", "bandwidth", "partition", "heal", "kill",
                                             "restart", "join", "slow", "leave"}
    stop = next(e for e in faults if e["action"] == "stop")
    assert stop["peer"] == "p1" and stop["trigger"] == {"action": "stop", "peer": "p1", "round": 40, "of": "p0",
                                                         "duration_s": 0.5}
    on_disk = [json.loads(line) for line in swarm.run.timeline_path.read_text().splitlines()]
    assert [e for e in on_disk if e["event"] == "fault"] == faults
    assert all(_control(swarm, p) == {"seed": 9} for p in PEERS)  # close() cleared the faults
    assert swarm.timeline.events("crashed") == []


def test_close_resumes_a_stopped_peer_so_the_swarm_stops_cleanly(tmp_path, reaper):
    # prepare
    swarm = _fake_swarm(tmp_path, reaper, size=2)
    swarm.start()
    runner = FaultRunner(swarm, FaultSchedule(seed=0, events=(FaultEvent("stop", "p1", at=0.0),))).start(
        background=True)
    wait_for(lambda: _status(swarm, "p1") == psutil.STATUS_STOPPED, 10, "p1 stopped", poll_s=0.05)
    # execute
    runner.close()
    codes = swarm.stop(deadline_s=10)
    # assert: SIGTERM reached a running process: exit code 0, not SIGKILL
    assert codes == {"p0": 0, "p1": 0}
    assert codes["p1"] != -signal.SIGKILL
