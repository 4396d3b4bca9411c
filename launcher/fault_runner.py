"""Applies a fault schedule (``launcher.fault_schedule``) to a live swarm and logs every event.

How each action is applied (the peers are never told):

* process faults act on the peer's process group: ``kill`` SIGKILL, ``stop``/``resume``
  SIGSTOP/SIGCONT, ``leave`` SIGTERM (clean exit), ``restart``/``join`` start the peer id again
  (it resumes its checkpoint or pulls state from neighbours) through the DHT of a live peer.
* ``slow`` (×k) duty-cycles the group: every ``SLOW_PERIOD_S`` it runs ``period/k`` seconds and
  is stopped for the rest, so it gets 1/k of the wall time — slow at everything (compute and
  serving), like an overloaded host.
* transport faults (``drop``, ``delay``, ``bandwidth``, ``partition``) go to the peers' control
  files (``launcher.fault_control``).

``round`` triggers are read by polling each peer's ``metrics.jsonl``. Every injected event is
recorded on the run's timeline (event ``fault``) so plots can mark it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import time
from typing import Any

from launcher.fault_control import ControlWriter, TransportControls
from launcher.fault_schedule import FaultEvent, FaultSchedule
from launcher.processes import SwarmProcesses
from peer.rundir import METRICS_FILE

log = logging.getLogger(__name__)

SLOW_PERIOD_S = 0.5  # duty cycle of a slowed peer: runs period/k, stopped period*(1 - 1/k)
POLL_S = 0.1  # how often the runner checks its triggers
RESTART_WAIT_S = 30.0  # a restart waits up to this long for the process a kill or leave ended to exit
BOOTSTRAP_PEERS = 3  # a restarted peer joins the DHT through this many live peers (any one suffices)

# a fault with duration_s -> the action that undoes it, and that action's parameters
_UNDO = {
    "stop": "resume",
    "slow": "slow",
    "drop": "drop",
    "delay": "delay",
    "bandwidth": "bandwidth",
    "partition": "heal",
}


def _undo_params(event: FaultEvent) -> dict[str, Any]:
    to = event.params.get("to", "*")
    return {
        "stop": {},
        "slow": {"factor": 1.0},
        "drop": {"p": 0.0},
        "delay": {"to": to, "delay_s": 0.0},
        "bandwidth": {"to": to, "bytes_per_s": None},
        "partition": {},
    }[event.action]


class RoundWatcher:
    """The highest round each peer has logged, read incrementally from its ``metrics.jsonl``."""

    def __init__(self, swarm: SwarmProcesses):
        self.swarm = swarm
        self._offsets: dict[str, int] = {}
        self.rounds: dict[str, int] = {}

    def _new_lines(self, peer_id: str) -> list[bytes]:
        path = self.swarm.run.peer_dir(peer_id) / METRICS_FILE
        try:
            with path.open("rb") as fh:
                fh.seek(self._offsets.get(peer_id, 0))
                data = fh.read()
        except OSError:
            return []
        complete = data[: data.rfind(b"\n") + 1]  # a line being written waits for the next poll
        self._offsets[peer_id] = self._offsets.get(peer_id, 0) + len(complete)
        return complete.splitlines()

    def poll(self) -> dict[str, int]:
        for peer in self.swarm.plan.peers:
            for line in self._new_lines(peer.peer_id):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("kind") == "round" and isinstance(record.get("round"), int):
                    self.rounds[peer.peer_id] = max(self.rounds.get(peer.peer_id, -1), record["round"])
        return self.rounds

    def round_of(self, peer_id: str | None) -> int:
        if peer_id is None:
            return max(self.rounds.values(), default=-1)
        return self.rounds.get(peer_id, -1)


class _DutyCycle(threading.Thread):
    """SIGCONT/SIGSTOP one process group so it runs 1/``factor`` of the time; SIGCONT on exit."""

    def __init__(self, pgid: int, factor: float, period_s: float = SLOW_PERIOD_S):
        super().__init__(name=f"slow-{pgid}", daemon=True)
        self.pgid, self.factor, self.period_s = pgid, factor, period_s
        self.halt = threading.Event()

    def run(self) -> None:
        on = self.period_s / self.factor
        try:
            while not self.halt.is_set():
                os.killpg(self.pgid, signal.SIGCONT)
                if self.halt.wait(on):
                    break
                os.killpg(self.pgid, signal.SIGSTOP)
                self.halt.wait(self.period_s - on)
        except ProcessLookupError:
            return
        finally:
            try:
                os.killpg(self.pgid, signal.SIGCONT)
            except ProcessLookupError:
                pass


class FaultRunner:
    """Applies a :class:`FaultSchedule` to running :class:`SwarmProcesses` and logs every event.

    ``start()`` runs the triggers on a background thread; ``step()`` fires what is due now (tests
    may drive it themselves); ``close()`` undoes process faults (SIGCONT, no duty cycles) so the
    swarm can be stopped cleanly, and clears the control files.
    """

    def __init__(
        self,
        swarm: SwarmProcesses,
        schedule: FaultSchedule,
        *,
        writer: ControlWriter | None = None,
        poll_s: float = POLL_S,
    ):
        self.swarm = swarm
        self.schedule = schedule
        self.poll_s = poll_s
        self.rounds = RoundWatcher(swarm)
        self.controls = TransportControls(
            writer or ControlWriter(swarm), schedule.seed, [p.peer_id for p in swarm.plan.peers]
        )
        self.fired: list[dict[str, Any]] = []  # timeline entries of what was injected
        self._pending: list[FaultEvent] = list(schedule.events)
        self._slowed: dict[str, _DutyCycle] = {}
        self._stopped: set[str] = set()
        self._ended: dict[str, float] = {}  # peer -> when a kill or leave was sent to it
        self._t0: float | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life -----------------------------------------------------------------------------------

    def start(self, background: bool = True) -> FaultRunner:
        """Time zero of the schedule; write every peer's (empty) control file; start triggering."""
        self._t0 = time.monotonic()
        self.controls.write_all()
        if background:
            self._thread = threading.Thread(target=self._loop, name="fault-runner", daemon=True)
            self._thread.start()
        return self

    def faulted(self, peer_id: str) -> bool:
        """True while a process fault holds ``peer_id`` back: stopped, slowed or not running."""
        with self._lock:
            held = peer_id in self._stopped or peer_id in self._slowed
        proc = self.swarm.processes.get(peer_id)
        return held or proc is None or not proc.alive()

    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else time.monotonic() - self._t0

    def done(self) -> bool:
        """Every scheduled event (and every undo) has fired."""
        with self._lock:
            return not self._pending

    def _loop(self) -> None:
        while not self._halt.wait(self.poll_s):
            try:
                self.step()
            except Exception:  # a broken fault must not take the launcher down
                log.exception("fault runner step failed")

    def close(self) -> None:
        """Stop triggering; SIGCONT stopped or slowed peers; clear the control files (idempotent)."""
        if self._halt.is_set():
            return
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for peer_id in list(self._slowed):
                self._unslow(peer_id)
            for peer_id in list(self._stopped):
                self._signal(peer_id, signal.SIGCONT)
            self._stopped.clear()
            self.controls.clear()
            for peer in self.swarm.plan.peers:
                try:
                    self.controls.write(peer.peer_id)
                except (OSError, subprocess.SubprocessError) as exc:
                    log.warning("could not clear the fault control of %s: %s", peer.peer_id, exc)

    def __enter__(self) -> FaultRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- triggering -----------------------------------------------------------------------------

    def step(self) -> list[dict[str, Any]]:
        """Fire every pending event whose trigger holds now; returns their timeline entries."""
        if self._t0 is None:
            raise RuntimeError("start() the fault runner first")
        self.rounds.poll()
        fired = []
        with self._lock:
            now = self.elapsed()
            for event in list(self._pending):  # in order: a kill applied now holds back its restart
                if self._due(event, now):
                    self._pending.remove(event)
                    fired.append(self._apply(event, now))
        return fired

    def _due(self, event: FaultEvent, now: float) -> bool:
        if event.at is not None:
            due = now >= event.at
        else:
            due = self.rounds.round_of(event.of) >= event.round
        return due and not self._exiting(event, now)

    def _exiting(self, event: FaultEvent, now: float) -> bool:
        """A restart waits (up to ``RESTART_WAIT_S``) while the process that a kill or leave ended is
        still exiting: a SIGKILLed peer on a loaded host can take seconds to free its memory."""
        if event.action not in ("restart", "join") or event.peer not in self._ended:
            return False
        proc = self.swarm.processes.get(event.peer)
        return proc is not None and proc.alive() and now - self._ended[event.peer] < RESTART_WAIT_S

    def _apply(self, event: FaultEvent, now: float) -> dict[str, Any]:
        detail = dict(event.params)
        applied = getattr(self, f"_do_{event.action}")(event)
        if event.params.get("duration_s") and event.action in _UNDO:
            at = now + float(event.params["duration_s"])
            self._pending.append(
                FaultEvent(_UNDO[event.action], event.peer, at=at, params=_undo_params(event))
            )
        entry = self.swarm.timeline.record(
            "fault",
            event.peer,
            action=event.action,
            t_fault=round(now, 3),
            trigger=event.to_dict(),
            applied=applied,
            **detail,
        )
        log.info("fault at %.1f s: %s %s %s", now, event.action, event.peer or "", detail)
        self.fired.append(entry)
        return entry

    # -- process faults -------------------------------------------------------------------------

    def _signal(self, peer_id: str, sig: int) -> bool:
        proc = self.swarm.processes.get(peer_id)
        if proc is None or not proc.alive():
            return False
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _unslow(self, peer_id: str) -> None:
        cycle = self._slowed.pop(peer_id, None)
        if cycle is not None:
            cycle.halt.set()
            cycle.join(timeout=5)

    def _do_kill(self, event: FaultEvent) -> bool:
        self._unslow(event.peer)
        self._stopped.discard(event.peer)
        self._ended[event.peer] = self.elapsed()
        return self.swarm.send_signal(event.peer, signal.SIGKILL, expected_exit=True)

    def _do_leave(self, event: FaultEvent) -> bool:
        self._unslow(event.peer)
        if event.peer in self._stopped:  # a stopped process cannot handle SIGTERM
            self._signal(event.peer, signal.SIGCONT)
            self._stopped.discard(event.peer)
        self._ended[event.peer] = self.elapsed()
        return self.swarm.send_signal(event.peer, signal.SIGTERM, expected_exit=True)

    def _do_stop(self, event: FaultEvent) -> bool:
        self._unslow(event.peer)
        self._stopped.add(event.peer)
        return self.swarm.send_signal(event.peer, signal.SIGSTOP, expected_exit=False)

    def _do_resume(self, event: FaultEvent) -> bool:
        self._stopped.discard(event.peer)
        return self.swarm.send_signal(event.peer, signal.SIGCONT, expected_exit=False)

    def _do_slow(self, event: FaultEvent) -> bool:
        self._unslow(event.peer)
        factor = float(event.params["factor"])
        proc = self.swarm.processes.get(event.peer)
        if factor <= 1.0 or proc is None or not proc.alive():
            return factor <= 1.0
        cycle = self._slowed[event.peer] = _DutyCycle(proc.pid, factor)
        cycle.start()
        return True

    def _bootstrap(self) -> list[str]:
        """Multiaddrs of up to ``BOOTSTRAP_PEERS`` live peers' DHTs (the original bootstrap peer may be
        the one that died, and any one live peer may die the next second: the DHT joins through
        whichever answers)."""
        ready = [self.swarm.processes[peer_id].ready() or {} for peer_id in self.swarm.alive()]
        announced = [info["maddrs"] for info in ready if info.get("maddrs")][:BOOTSTRAP_PEERS]
        return [maddr for maddrs in announced for maddr in maddrs] or list(self.swarm.bootstrap)

    def _do_restart(self, event: FaultEvent) -> bool:
        proc = self.swarm.processes.get(event.peer)
        if proc is not None and proc.alive():
            log.warning("restart of %s skipped: it is still running", event.peer)
            return False
        self._unslow(event.peer)
        self._stopped.discard(event.peer)
        self._ended.pop(event.peer, None)
        self.controls.write(event.peer)
        self.swarm.start_peer(event.peer, bootstrap=self._bootstrap())
        return True

    _do_join = _do_restart

    # -- transport faults -----------------------------------------------------------------------

    def _do_drop(self, event: FaultEvent) -> bool:
        return self.controls.drop(
            event.peer, float(event.params.get("p", 1.0)), event.params.get("mode", "refuse")
        )

    def _do_delay(self, event: FaultEvent) -> bool:
        return self.controls.set_link(
            event.peer, str(event.params.get("to", "*")), "delay_s", event.params.get("delay_s")
        )

    def _do_bandwidth(self, event: FaultEvent) -> bool:
        to = str(event.params.get("to", "*"))
        return self.controls.set_link(event.peer, to, "bytes_per_s", event.params.get("bytes_per_s"))

    def _do_partition(self, event: FaultEvent) -> bool:
        return self.controls.partition(event.params["groups"])

    def _do_heal(self, event: FaultEvent) -> bool:
        return self.controls.partition(None)
