"""launcher.swarm.start_and_supervise: a stop requested while the swarm is still starting."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

from launcher.processes import SignalForwarder
from launcher.swarm import start_and_supervise
from tests.launcher.swarm_util import reaped_swarm, tiny_plan, wait_for

FAKE_PEER = (sys.executable, str(Path(__file__).resolve().parent / "_fake_peer.py"))


def _start_with_ctrl_c_once(swarm, condition, what: str) -> tuple[SignalForwarder, dict]:
    """start_and_supervise ``swarm`` under a SignalForwarder, with a real SIGINT to this process
    as soon as ``condition()`` holds (polled from a thread); the forwarder and the exit codes."""

    def ctrl_c() -> None:
        wait_for(condition, 30, what, poll_s=0.02)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=ctrl_c, daemon=True)
    with SignalForwarder() as forwarder:
        thread.start()
        codes = start_and_supervise(swarm, None, forwarder)
    thread.join(timeout=30)
    return forwarder, codes


def test_ctrl_c_while_the_bootstrap_peer_loads_stops_it_without_starting_the_others(
    tmp_path, reaper, monkeypatch
):
    # prepare: every stand-in peer takes a minute to become ready (a model and data to load);
    # Ctrl-C arrives as soon as the bootstrap peer exists
    monkeypatch.setenv("FAKE_PEER_READY_DELAY_S", "60")
    swarm = reaped_swarm(tiny_plan(3, "t-start", steps=None), tmp_path, reaper, peer_command=FAKE_PEER)
    # execute
    forwarder, codes = _start_with_ctrl_c_once(swarm, lambda: swarm.processes, "the bootstrap peer spawned")
    # assert: the bootstrap peer was stopped by SIGTERM (its handler exits 0; one not installed
    # yet leaves -SIGTERM, never SIGKILL) before it was ready; no other peer was spawned and
    # nothing is left running
    assert forwarder.requested == 1
    assert list(codes) == ["p0"] and codes["p0"] in (0, -signal.SIGTERM)
    assert [e["peer"] for e in swarm.timeline.events("spawned")] == ["p0"]
    assert not swarm.run.ready_path("p0").exists()
    assert swarm.alive() == []


def test_ctrl_c_while_the_others_load_stops_every_peer_started(tmp_path, reaper, monkeypatch):
    # prepare: the bootstrap peer is ready at once, the others take a minute; Ctrl-C arrives
    # once all three exist
    swarm = reaped_swarm(tiny_plan(3, "t-start2", steps=None), tmp_path, reaper, peer_command=FAKE_PEER)
    original = swarm.start_peer

    def start_peer(peer_id, *args, **kw):
        delay = "0" if peer_id == "p0" else "60"
        monkeypatch.setenv("FAKE_PEER_READY_DELAY_S", delay)
        return original(peer_id, *args, **kw)

    swarm.start_peer = start_peer
    # execute
    _, codes = _start_with_ctrl_c_once(swarm, lambda: len(swarm.processes) == 3, "three peers spawned")
    # assert: all three stopped cleanly; the two slow ones never became ready
    assert sorted(codes) == ["p0", "p1", "p2"]
    assert all(code in (0, -signal.SIGTERM) for code in codes.values())
    assert swarm.run.ready_path("p0").exists()
    assert not swarm.run.ready_path("p1").exists() and not swarm.run.ready_path("p2").exists()
    assert swarm.alive() == []
