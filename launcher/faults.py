"""A seeded, replayable fault schedule, and the runner that applies it to a live swarm.

One schedule format (YAML, or :func:`generate_schedule` from a seed and churn rates)::

    seed: 7                                  # seeds drop decisions (and generated schedules)
    events:
      - {at: 10, action: kill, peer: p1}                      # seconds since the swarm started
      - {round: 6, of: p0, action: restart, peer: p1}         # when p0's metrics reach round 6
      - {at: 20, action: stop, peer: p2, duration_s: 8}       # SIGSTOP, SIGCONT 8 s later
      - {at: 30, action: slow, peer: p3, factor: 3, duration_s: 20}
      - {at: 35, action: drop, peer: p0, p: 0.3, mode: refuse, duration_s: 10}
      - {at: 0,  action: bandwidth, peer: p0, to: "*", bytes_per_s: 5.0e6}
      - {at: 0,  action: delay, peer: p0, to: p1, delay_s: 0.05}
      - {at: 40, action: partition, groups: [[p0, p1], [p2, p3]], duration_s: 15}
      - {at: 60, action: join, peer: p4}                      # p4 is not started with the swarm
      - {at: 70, action: leave, peer: p2}                     # graceful SIGTERM

Triggers: ``at`` (seconds since :meth:`FaultRunner.start`) or ``round`` (+ optional ``of``: whose
round; default the highest round any peer has logged), read by polling each peer's
``metrics.jsonl``. ``duration_s`` on stop / slow / drop / delay / bandwidth / partition schedules
the undo (resume, factor 1, p 0, no delay, no limit, heal).

How each action is applied (the peers are never told):

* process faults act on the peer's process group: ``kill`` SIGKILL, ``stop``/``resume``
  SIGSTOP/SIGCONT, ``leave`` SIGTERM (clean exit), ``restart``/``join`` start the peer id again
  (it resumes its checkpoint or pulls state from neighbours) through the DHT of a live peer.
* ``slow`` (×k) duty-cycles the group: every ``SLOW_PERIOD_S`` it runs ``period/k`` seconds and
  is stopped for the rest, so it gets 1/k of the wall time — slow at everything (compute and
  serving), like an overloaded host.
* transport faults (``drop``, ``delay``, ``bandwidth``, ``partition``) are written to the peer's
  ``faults.json`` control file (schema: :mod:`gossip.faults`), which its gossip server re-reads when
  it changes. ``delay``/``bandwidth`` act on what ``peer`` serves to ``to``; a partition is written
  to every peer. Local and netns peers share our disk; for ssh hosts the file is written on the
  remote disk through the host's transport (:class:`ControlWriter`).

Every injected event is recorded on the run's timeline (event ``fault``) so plots can mark it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from launcher.local import LocalSwarm, SignalForwarder, supervise

log = logging.getLogger(__name__)

CONTROL_FILE = "faults.json"  # = gossip.faults.CONTROL_FILE (the launcher may not import gossip)
SLOW_PERIOD_S = 0.5  # duty cycle of a slowed peer: runs period/k, stopped period*(1 - 1/k)
POLL_S = 0.1  # how often the runner checks its triggers

PROCESS_ACTIONS = {"kill", "restart", "stop", "resume", "slow", "join", "leave"}
TRANSPORT_ACTIONS = {"drop", "delay", "bandwidth", "partition", "heal"}
ACTIONS = PROCESS_ACTIONS | TRANSPORT_ACTIONS
_UNDO = {"stop": "resume", "slow": "slow", "drop": "drop", "delay": "delay", "bandwidth": "bandwidth",
         "partition": "heal"}
_PARAMS: dict[str, set[str]] = {
    "kill": set(), "restart": set(), "resume": set(), "join": set(), "leave": set(), "heal": set(),
    "stop": {"duration_s"}, "slow": {"factor", "duration_s"}, "drop": {"p", "mode", "duration_s"},
    "delay": {"to", "delay_s", "duration_s"}, "bandwidth": {"to", "bytes_per_s", "duration_s"},
    "partition": {"groups", "duration_s"},
}
_TRIGGER_KEYS = {"at", "round", "of"}


class ScheduleError(ValueError):
    """A fault schedule problem, phrased for the user (names the event and the key)."""


@dataclass(frozen=True)
class FaultEvent:
    """One scheduled fault: what, to whom, when (``at`` seconds or ``round`` of peer ``of``)."""

    action: str
    peer: str | None = None
    at: float | None = None
    round: int | None = None
    of: str | None = None  # whose round triggers it (None: the highest round of any peer)
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        for key in ("peer", "at", "round", "of"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.params}


@dataclass(frozen=True)
class FaultSchedule:
    """A seed and its events (in file order; each fires once, when its trigger holds)."""

    seed: int = 0
    events: tuple[FaultEvent, ...] = ()

    def late_joiners(self) -> set[str]:
        """Peers with a ``join`` event: the swarm must not start them with the others."""
        return {e.peer for e in self.events if e.action == "join" and e.peer is not None}

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "events": [e.to_dict() for e in self.events]}


def _event(values: Any, index: int, peer_ids: set[str] | None) -> FaultEvent:
    where = f"events[{index}]"
    if not isinstance(values, dict):
        raise ScheduleError(f"{where}: expected a mapping, got {values!r}")
    action = values.get("action")
    if action not in ACTIONS:
        raise ScheduleError(f"{where}.action: expected one of {', '.join(sorted(ACTIONS))}, got {action!r}")
    unknown = sorted(set(values) - {"action", "peer"} - _TRIGGER_KEYS - _PARAMS[action])
    if unknown:
        raise ScheduleError(f"{where}: unknown key(s) {', '.join(unknown)} for {action}; allowed: "
                            f"{', '.join(sorted({'peer'} | _TRIGGER_KEYS | _PARAMS[action]))}")
    if ("at" in values) == ("round" in values):
        raise ScheduleError(f"{where}: give exactly one trigger, at (seconds) or round")
    at, rnd = values.get("at"), values.get("round")
    if at is not None and (not isinstance(at, (int, float)) or isinstance(at, bool) or at < 0):
        raise ScheduleError(f"{where}.at: expected seconds >= 0, got {at!r}")
    if rnd is not None and (not isinstance(rnd, int) or isinstance(rnd, bool) or rnd < 0):
        raise ScheduleError(f"{where}.round: expected an integer >= 0, got {rnd!r}")
    peer = values.get("peer")
    needs_peer = action not in ("partition", "heal")
    if needs_peer and not isinstance(peer, str):
        raise ScheduleError(f"{where}.peer: {action} needs the peer id it acts on")
    named = [p for p in (peer, values.get("of"), values.get("to")) if p not in (None, "*")]
    named += [p for g in values.get("groups") or [] for p in (g if isinstance(g, list) else [g])]
    if peer_ids is not None:
        for name in named:
            if name not in peer_ids:
                raise ScheduleError(f"{where}: no peer {name!r} in this swarm ({', '.join(sorted(peer_ids))})")
    params = {k: v for k, v in values.items() if k in _PARAMS[action]}
    _check_params(action, params, where)
    return FaultEvent(action=action, peer=peer, at=None if at is None else float(at), round=rnd,
                      of=values.get("of"), params=params)


def _check_params(action: str, params: dict, where: str) -> None:
    def number(key: str, low: float, inclusive: bool = True) -> None:
        value = params.get(key)
        if value is None:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
            value >= low if inclusive else value > low)
        if not ok:
            raise ScheduleError(f"{where}.{key}: expected a number {'>=' if inclusive else '>'} {low}, got {value!r}")

    number("duration_s", 0.0, inclusive=False)
    number("factor", 1.0)
    number("delay_s", 0.0)
    number("bytes_per_s", 0.0, inclusive=False)
    number("p", 0.0)
    if action == "drop" and not 0.0 <= params.get("p", 1.0) <= 1.0:
        raise ScheduleError(f"{where}.p: expected a probability in [0, 1], got {params['p']!r}")
    if action == "drop" and params.get("mode", "refuse") not in ("refuse", "abort", "stall"):
        raise ScheduleError(f"{where}.mode: expected refuse, abort or stall, got {params['mode']!r}")
    if action == "slow" and "factor" not in params:
        raise ScheduleError(f"{where}.factor: slow needs a slow-down factor >= 1")
    if action == "partition":
        groups = params.get("groups")
        if not (isinstance(groups, list) and len(groups) >= 2 and all(isinstance(g, list) and g for g in groups)):
            raise ScheduleError(f"{where}.groups: expected two or more non-empty peer-id lists, got {groups!r}")


def schedule_from_dict(values: Any, peer_ids: list[str] | None = None) -> FaultSchedule:
    """Validate a schedule (against the swarm's peer ids when given); raises ``ScheduleError``."""
    if not isinstance(values, dict) or set(values) - {"seed", "events"}:
        raise ScheduleError("fault schedule: expected a mapping with keys seed and events")
    seed = values.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ScheduleError(f"seed: expected an integer, got {seed!r}")
    events = values.get("events") or []
    if not isinstance(events, list):
        raise ScheduleError("events: expected a list")
    ids = set(peer_ids) if peer_ids is not None else None
    return FaultSchedule(seed=seed, events=tuple(_event(e, i, ids) for i, e in enumerate(events)))


def load_schedule(path: str | Path, peer_ids: list[str] | None = None) -> FaultSchedule:
    """Read a fault schedule YAML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ScheduleError(f"fault schedule {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScheduleError(f"fault schedule {path} is not valid YAML: {exc}") from None
    return schedule_from_dict(values, peer_ids)


# ---- generated churn --------------------------------------------------------------------------


@dataclass(frozen=True)
class ChurnRates:
    """Faults per minute of each kind for :func:`generate_schedule`, and their sizes."""

    kill_restart: float = 0.6  # SIGKILL, then the same id restarts after down_s
    stop_resume: float = 0.6  # SIGSTOP for stop_s, then SIGCONT
    slow: float = 0.4  # ×factor for fault_s
    drop: float = 0.4  # p in [0.2, 0.6] for fault_s
    partition: float = 0.2  # two halves for fault_s, then heal
    down_s: tuple[float, float] = (3.0, 8.0)
    stop_s: tuple[float, float] = (4.0, 10.0)
    fault_s: tuple[float, float] = (8.0, 20.0)
    factor: tuple[float, float] = (2.0, 4.0)
    gap_s: tuple[float, float] = (3.0, 10.0)  # quiet time between two faults


def generate_schedule(seed: int, peer_ids: list[str], duration_s: float, rates: ChurnRates = ChurnRates(),
                      warmup_s: float = 10.0) -> FaultSchedule:
    """A random churn schedule from ``seed``: one fault at a time (so every effect has one cause),
    kinds drawn by their rates, victims and sizes uniformly; the same seed gives the same events."""
    rng = random.Random(seed)
    kinds = {"kill_restart": rates.kill_restart, "stop_resume": rates.stop_resume, "slow": rates.slow,
             "drop": rates.drop, "partition": rates.partition}
    kinds = {k: v for k, v in kinds.items() if v > 0 and (k != "partition" or len(peer_ids) >= 2)}
    events: list[FaultEvent] = []
    t = warmup_s
    while kinds and t < duration_s:
        kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        victim = rng.choice(peer_ids)
        if kind == "kill_restart":
            down = rng.uniform(*rates.down_s)
            events += [FaultEvent("kill", victim, at=round(t, 2)),
                       FaultEvent("restart", victim, at=round(t + down, 2))]
            length = down
        elif kind == "stop_resume":
            length = rng.uniform(*rates.stop_s)
            events.append(FaultEvent("stop", victim, at=round(t, 2), params={"duration_s": round(length, 2)}))
        elif kind == "slow":
            length = rng.uniform(*rates.fault_s)
            events.append(FaultEvent("slow", victim, at=round(t, 2), params={
                "factor": round(rng.uniform(*rates.factor), 2), "duration_s": round(length, 2)}))
        elif kind == "drop":
            length = rng.uniform(*rates.fault_s)
            events.append(FaultEvent("drop", victim, at=round(t, 2), params={
                "p": round(rng.uniform(0.2, 0.6), 2), "mode": rng.choice(["refuse", "abort"]),
                "duration_s": round(length, 2)}))
        else:
            length = rng.uniform(*rates.fault_s)
            shuffled = rng.sample(peer_ids, len(peer_ids))
            half = len(shuffled) // 2
            events.append(FaultEvent("partition", None, at=round(t, 2), params={
                "groups": [sorted(shuffled[:half]), sorted(shuffled[half:])], "duration_s": round(length, 2)}))
        t += length + rng.uniform(*rates.gap_s)
    return FaultSchedule(seed=seed, events=tuple(events))


# ---- control files ----------------------------------------------------------------------------


_WRITE_REMOTE = ("import json, os, sys; path, text = {path!r}, {text!r}; "
                 "os.makedirs(os.path.dirname(path), exist_ok=True); tmp = path + '.tmp'; "
                 "open(tmp, 'w').write(text); os.replace(tmp, path)")


class ControlWriter:
    """Writes a peer's ``faults.json`` atomically where its gossip server reads it.

    Peers whose transport shares our disk (local, netns) get a write + rename here; for a remote
    transport (ssh) the same write runs on the host through the transport (the peer's run dir path
    is the same string there: it comes from the peer's config).
    """

    def __init__(self, swarm: LocalSwarm, timeout_s: float = 15.0):
        self.swarm = swarm
        self.timeout_s = timeout_s

    def path(self, peer_id: str) -> Path:
        return self.swarm.run.peer_dir(peer_id) / CONTROL_FILE

    def write(self, peer_id: str, values: dict[str, Any]) -> None:
        path, text = self.path(peer_id), json.dumps(values, sort_keys=True)
        transport = self.swarm.transports.get(peer_id)
        if transport is not None and transport.remote:
            code = _WRITE_REMOTE.format(path=str(path), text=text)
            argv = transport.wrap([sys.executable, "-c", code])
            subprocess.run(argv, check=True, timeout=self.timeout_s, stdin=subprocess.DEVNULL,
                           capture_output=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{CONTROL_FILE}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


# ---- watching rounds --------------------------------------------------------------------------


class RoundWatcher:
    """The highest round each peer has logged, read incrementally from its ``metrics.jsonl``."""

    def __init__(self, swarm: LocalSwarm):
        self.swarm = swarm
        self._offsets: dict[str, int] = {}
        self.rounds: dict[str, int] = {}

    def poll(self) -> dict[str, int]:
        for peer in self.swarm.plan.peers:
            path = self.swarm.run.peer_dir(peer.peer_id) / "metrics.jsonl"
            try:
                with path.open("rb") as fh:
                    fh.seek(self._offsets.get(peer.peer_id, 0))
                    data = fh.read()
            except OSError:
                continue
            complete = data[:data.rfind(b"\n") + 1]  # a line being written waits for the next poll
            self._offsets[peer.peer_id] = self._offsets.get(peer.peer_id, 0) + len(complete)
            for line in complete.splitlines():
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


# ---- applying a schedule ----------------------------------------------------------------------


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
    """Applies a :class:`FaultSchedule` to a running :class:`LocalSwarm` and logs every event.

    ``start()`` runs the triggers on a background thread; ``step()`` fires what is due now (tests
    may drive it themselves); ``close()`` undoes process faults (SIGCONT, no duty cycles) so the
    swarm can be stopped cleanly, and clears the control files.
    """

    def __init__(self, swarm: LocalSwarm, schedule: FaultSchedule, writer: ControlWriter | None = None,
                 poll_s: float = POLL_S):
        self.swarm = swarm
        self.schedule = schedule
        self.writer = writer or ControlWriter(swarm)
        self.poll_s = poll_s
        self.rounds = RoundWatcher(swarm)
        self.fired: list[dict[str, Any]] = []  # timeline entries of what was injected
        self._pending: list[FaultEvent] = list(schedule.events)
        self._controls: dict[str, dict[str, Any]] = {p.peer_id: {} for p in swarm.plan.peers}
        self._partition: list[list[str]] | None = None
        self._slowed: dict[str, _DutyCycle] = {}
        self._stopped: set[str] = set()
        self._t0: float | None = None
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life -----------------------------------------------------------------------------------

    def start(self, background: bool = True) -> FaultRunner:
        """Time zero of the schedule; write every peer's (empty) control file; start triggering."""
        self._t0 = time.monotonic()
        for peer_id in self._controls:
            self._write_control(peer_id)
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
            for peer_id in self._controls:
                self._controls[peer_id] = {}
            self._partition = None
            for peer_id in self._controls:
                try:
                    self._write_control(peer_id)
                except (OSError, subprocess.SubprocessError) as exc:
                    log.warning("could not clear the fault control of %s: %s", peer_id, exc)

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
            due = [e for e in self._pending if self._due(e, now)]
            for event in due:
                self._pending.remove(event)
                fired.append(self._apply(event, now))
        return fired

    def _due(self, event: FaultEvent, now: float) -> bool:
        if event.at is not None:
            return now >= event.at
        return self.rounds.round_of(event.of) >= event.round

    def _apply(self, event: FaultEvent, now: float) -> dict[str, Any]:
        detail = {k: v for k, v in event.params.items()}
        applied = getattr(self, f"_do_{event.action}")(event)
        if event.params.get("duration_s") and event.action in _UNDO:
            self._pending.append(self._undo(event, now + float(event.params["duration_s"])))
        entry = self.swarm.timeline.record("fault", event.peer, action=event.action, t_fault=round(now, 3),
                                           trigger=event.to_dict(), applied=applied, **detail)
        log.info("fault at %.1f s: %s %s %s", now, event.action, event.peer or "", detail)
        self.fired.append(entry)
        return entry

    @staticmethod
    def _undo(event: FaultEvent, at: float) -> FaultEvent:
        params = {"stop": {}, "slow": {"factor": 1.0}, "drop": {"p": 0.0},
                  "delay": {"to": event.params.get("to", "*"), "delay_s": 0.0},
                  "bandwidth": {"to": event.params.get("to", "*"), "bytes_per_s": None},
                  "partition": {}}[event.action]
        return FaultEvent(_UNDO[event.action], event.peer, at=at, params=params)

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
        return self.swarm.send_signal(event.peer, signal.SIGKILL, expected_exit=True)

    def _do_leave(self, event: FaultEvent) -> bool:
        self._unslow(event.peer)
        if event.peer in self._stopped:  # a stopped process cannot handle SIGTERM
            self._signal(event.peer, signal.SIGCONT)
            self._stopped.discard(event.peer)
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
        """Multiaddrs of a live peer's DHT (the original bootstrap peer may be the one that died)."""
        for peer_id in self.swarm.alive():
            info = self.swarm.processes[peer_id].ready() or {}
            if info.get("maddrs"):
                return list(info["maddrs"])
        return list(self.swarm.bootstrap)

    def _do_restart(self, event: FaultEvent) -> bool:
        proc = self.swarm.processes.get(event.peer)
        if proc is not None and proc.alive():
            log.warning("restart of %s skipped: it is still running", event.peer)
            return False
        self._unslow(event.peer)
        self._stopped.discard(event.peer)
        self._write_control(event.peer)
        self.swarm.start_peer(event.peer, bootstrap=self._bootstrap())
        return True

    _do_join = _do_restart

    # -- transport faults -----------------------------------------------------------------------

    def _write_control(self, peer_id: str) -> None:
        values: dict[str, Any] = {"seed": self.schedule.seed, **self._controls[peer_id]}
        if self._partition:
            values["partition"] = self._partition
        self.writer.write(peer_id, values)

    def _do_drop(self, event: FaultEvent) -> bool:
        p = float(event.params.get("p", 1.0))
        control = self._controls[event.peer]
        control.pop("drop", None)
        if p > 0:
            control["drop"] = {"p": p, "mode": event.params.get("mode", "refuse")}
        self._write_control(event.peer)
        return True

    def _set_link(self, event: FaultEvent, key: str, value: float | None) -> bool:
        links = self._controls[event.peer].setdefault("links", {})
        link = links.setdefault(str(event.params.get("to", "*")), {})
        if value is None or value == 0:
            link.pop(key, None)
        else:
            link[key] = value
        self._controls[event.peer]["links"] = {k: v for k, v in links.items() if v}
        self._write_control(event.peer)
        return True

    def _do_delay(self, event: FaultEvent) -> bool:
        return self._set_link(event, "delay_s", event.params.get("delay_s"))

    def _do_bandwidth(self, event: FaultEvent) -> bool:
        return self._set_link(event, "bytes_per_s", event.params.get("bytes_per_s"))

    def _do_partition(self, event: FaultEvent) -> bool:
        self._partition = [list(g) for g in event.params["groups"]]
        for peer_id in self._controls:
            self._write_control(peer_id)
        return True

    def _do_heal(self, event: FaultEvent) -> bool:
        self._partition = None
        for peer_id in self._controls:
            self._write_control(peer_id)
        return True


def start_and_supervise(swarm: LocalSwarm, schedule: FaultSchedule | None, forwarder: SignalForwarder,
                        until: float | None = None, on_ready: Callable[[], None] | None = None
                        ) -> dict[str, int | None]:
    """Start ``swarm`` (holding back the schedule's late joiners), call ``on_ready``, apply
    ``schedule`` while supervising it, undo process faults, then stop. Used by ``dssl swarm``.

    Raises ``PeerStartError`` like :meth:`LocalSwarm.start`.
    """
    swarm.start(wait_all=True, hold=schedule.late_joiners() if schedule else frozenset())
    if on_ready is not None:
        on_ready()
    if schedule is None:
        return supervise(swarm, forwarder, until)
    runner = FaultRunner(swarm, schedule).start()
    try:
        return supervise(swarm, forwarder, until, before_stop=runner.close)
    finally:
        runner.close()
