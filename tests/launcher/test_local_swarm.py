"""Real local swarms: peer processes, real gRPC on 127.0.0.1, the real hivemind DHT, real data."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
import torch

from analysis.collect import collect
from analysis.diagnostics import consensus_distance
from launcher.spec import plan_from_dict
from peer.rundir import FINAL_FILE, PARTITION_FILES, checkpoint_path
from tests.launcher.swarm_util import TINY, reaped_swarm, rounds, tiny_plan, wait_for

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

PROGRESS = re.compile(
    r"^\[(?P<peer>\S+)\] r\s+(?P<round>\d+) s\s+\d+ .* nbr (?P<ans>\d+)/(?P<exp>\d+) ", re.M
)


def _assert_answered_logs(swarm, codes) -> None:
    """Every peer's log shows its neighbours answered (ring of 3: both of them) and the join hint."""
    for peer_id in codes:
        log_text = swarm.run.log_path(peer_id).read_text()
        answered = [m for m in PROGRESS.finditer(log_text) if m["peer"] == peer_id and int(m["ans"]) > 0]
        assert answered, f"{peer_id}: no progress line with answering neighbours:\n{log_text[-1500:]}"
        assert any(int(m["ans"]) == int(m["exp"]) == 2 for m in answered)
        assert "dssl join --bootstrap /ip4/127.0.0.1/" in log_text


def test_three_peers_gossip_through_the_dht_and_every_neighbour_answers(tmp_path, reaper):
    # prepare
    plan = tiny_plan(3, "t-three", steps=8)
    swarm = reaped_swarm(plan, tmp_path, reaper)
    # execute
    swarm.start()
    codes = swarm.wait(timeout=150)
    # assert: clean exits, >= 3 rounds each, and every peer's log shows its neighbours answered
    assert codes == {"p0": 0, "p1": 0, "p2": 0}, [
        swarm.processes[p].log_path.read_text()[-2000:] for p in codes
    ]
    result = collect(swarm.run.path)
    assert result.min_rounds >= 3
    _assert_answered_logs(swarm, codes)
    # the run directory holds the manifest, the timeline and each peer's partition report
    manifest = json.loads(swarm.run.manifest_path.read_text())
    assert manifest["topology"]["kind"] == "ring" and manifest["seeds"]["swarm"] == 0
    assert manifest["versions"]["torch"] and manifest["command"]
    events = [json.loads(line)["event"] for line in swarm.run.timeline_path.read_text().splitlines()]
    assert events.count("spawned") == 3 and events.count("ready") == 3 and events.count("exited") == 3
    assert all((swarm.run.peer_dir(p) / PARTITION_FILES[0]).is_file() for p in codes)
    assert result.consensus_distance is not None and result.consensus_distance >= 0.0


def _start_mixing(swarm, dirs, peer_ids: tuple[str, ...]) -> list[str]:
    """Start ``peer_ids`` (the first is the bootstrap) and wait until each has mixed; returns the
    bootstrap's multiaddrs."""
    barrier = ["--wait-peers", str(len(peer_ids))]
    swarm.start_peer(peer_ids[0], extra_args=barrier)
    maddrs = swarm.wait_ready([peer_ids[0]], timeout=120)[peer_ids[0]]["maddrs"]
    for peer_id in peer_ids[1:]:
        swarm.start_peer(peer_id, bootstrap=maddrs, extra_args=barrier)
    swarm.wait_ready(timeout=120)
    wait_for(
        lambda: all(any(r["answered"] > 0 for r in rounds(dirs[p])) for p in peer_ids),
        120,
        f"{', '.join(peer_ids)} to mix with each other",
    )
    return maddrs


def _mixing_without(dirs, peer_id: str, gone: str, since: int) -> bool:
    """``peer_id`` made two rounds with answers since round record ``since`` with ``gone`` no longer
    among its neighbours."""
    later = rounds(dirs[peer_id])[since:]
    clean = [r for r in later if gone not in {n["peer"] for n in r["neighbours"]} and r["answered"] > 0]
    return len(clean) >= 2


def _assert_caught_up(dirs) -> None:
    """The late joiner pulled the model from live neighbours and joined the swarm's rounds."""
    caught_up = json.loads((dirs["p3"] / FINAL_FILE).read_text())["caught_up"]
    assert caught_up["how"] == "pulled" and caught_up["donors"], caught_up
    assert set(caught_up["donors"]) <= {"p0", "p2"}
    assert caught_up["joined_round"] >= 1
    assert rounds(dirs["p3"])[0]["round"] > caught_up["joined_round"]


def _assert_stopped_by_sigterm(swarm, dirs, codes) -> None:
    """A clean exit with a final checkpoint and final.json; the SIGKILL was ours, so not a crash."""
    assert codes["p1"] == -signal.SIGKILL
    assert all(codes[p] == 0 for p in ("p0", "p2", "p3")), codes
    for peer_id in ("p0", "p2", "p3"):
        final = json.loads((dirs[peer_id] / FINAL_FILE).read_text())
        assert final["stopped_by"] == "SIGTERM"
        assert checkpoint_path(dirs[peer_id]).is_file()
    assert swarm.timeline.events("crashed") == []


def test_killed_peer_drops_out_late_joiner_catches_up_and_sigterm_stops_cleanly(tmp_path, reaper):
    # prepare: a 4-peer plan; p0..p2 start now, p3 joins late
    plan = tiny_plan(4, "t-churn", steps=None)
    swarm = reaped_swarm(plan, tmp_path, reaper, peer_args=["--dht-ttl-s", "3", "--stop-deadline-s", "20"])
    dirs = {p.peer_id: swarm.run.peer_dir(p.peer_id) for p in plan.peers}
    maddrs = _start_mixing(swarm, dirs, ("p0", "p1", "p2"))
    # execute 1: kill p1 with SIGKILL
    swarm.send_signal("p1", signal.SIGKILL)
    killed_at = len(rounds(dirs["p0"]))
    wait_for(
        lambda: _mixing_without(dirs, "p0", "p1", killed_at),
        90,
        "p0 to keep mixing with p1 gone from its neighbours",
    )
    # execute 2: the late joiner
    swarm.start_peer("p3", bootstrap=maddrs)
    ready = swarm.wait_ready(["p3"], timeout=120)["p3"]
    wait_for(lambda: any(r["answered"] > 0 for r in rounds(dirs["p3"])), 90, "p3 to mix with its neighbours")
    # execute 3: SIGTERM the survivors and the joiner
    started = time.monotonic()
    codes = swarm.stop(deadline_s=25)
    stop_seconds = time.monotonic() - started
    # assert: p1 gone from p0's live set while p0 kept going; p3 caught up; a clean stop in time
    assert _mixing_without(dirs, "p0", "p1", killed_at)
    _assert_caught_up(dirs)
    assert ready["peer_id"] == "p3"
    _assert_stopped_by_sigterm(swarm, dirs, codes)
    assert stop_seconds < 25


def test_consensus_distance_is_the_mean_squared_deviation():
    # prepare
    a, b = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 0.0])
    # execute / assert: mean (1, 0); each is 1 away -> (1 + 1) / 2
    assert consensus_distance([a, b]) == pytest.approx(1.0)
    assert consensus_distance([a, a, a]) == 0.0


def test_overlapped_rounds_mix_every_neighbour_while_training_goes_on(tmp_path, reaper):
    # prepare: 3 real peers with gossip.overlap; rounds every 2 steps, 12 steps
    base = json.loads(json.dumps(TINY))
    base["train"]["steps"] = 12
    base["gossip"]["overlap"] = True
    spec = {"swarm": {"id": "t-overlap", "ready_timeout_s": 120}, "base": base, "defaults": {"threads": 1}}
    swarm = reaped_swarm(plan_from_dict(spec, size=3), tmp_path, reaper)
    # execute
    swarm.start()
    codes = swarm.wait(timeout=150)
    # assert: clean exits; all 6 rounds of every peer landed (the last one before the final
    # evaluation), in order, each recording the steps trained while it was in flight
    assert codes == {"p0": 0, "p1": 0, "p2": 0}, [swarm.run.log_path(p).read_text()[-2000:] for p in codes]
    for peer_id in codes:
        records = rounds(swarm.run.peer_dir(peer_id))
        assert [r["round"] for r in records] == [1, 2, 3, 4, 5, 6], records
        assert all(r["overlap_steps"] >= 0 and r["answered"] == 2 for r in records), records
        assert all(r["step"] - 2 * r["round"] == r["overlap_steps"] for r in records), records
