"""launcher.fault_schedule: the schedule format, its validation, and seeded churn generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.fault_schedule import (
    ChurnRates,
    ScheduleError,
    generate_schedule,
    kill_schedule,
    load_schedule,
    schedule_from_dict,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "faults.yaml"
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


@pytest.mark.parametrize(
    "event, message",
    [
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
    ],
)
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
    assert (
        generate_schedule(
            1, PEERS, 60.0, ChurnRates(kill_restart=0, stop_resume=0, slow=0, drop=0, partition=0)
        ).events
        == ()
    )


def test_kill_schedule_kills_one_peer_every_interval_and_restarts_it_later():
    # prepare
    ids = [f"p{i}" for i in range(16)]
    # execute
    schedule = kill_schedule(7, ids, duration_s=100.0, every_s=30.0, restart_after_s=2.0, warmup_s=10.0)
    again = kill_schedule(7, ids, duration_s=100.0, every_s=30.0, restart_after_s=2.0, warmup_s=10.0)
    # assert: kills at 10, 40, 70 (100 + 2 would end after the run), each restarted 2 s later
    pairs = list(zip(schedule.events[::2], schedule.events[1::2]))
    assert [(k.action, k.at, r.action, r.at) for k, r in pairs] == [
        ("kill", 10.0, "restart", 12.0),
        ("kill", 40.0, "restart", 42.0),
        ("kill", 70.0, "restart", 72.0),
    ]
    assert all(k.peer == r.peer and k.peer in ids for k, r in pairs)
    assert schedule == again
    with pytest.raises(ScheduleError):
        kill_schedule(7, ids, duration_s=100.0, every_s=2.0, restart_after_s=2.0)
