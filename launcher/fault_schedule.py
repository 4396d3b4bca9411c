"""A seeded, replayable fault schedule: its YAML format, validation, and seeded churn generation.

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

Triggers: ``at`` (seconds since the fault runner started) or ``round`` (+ optional ``of``: whose
round; default the highest round any peer has logged). ``duration_s`` on stop / slow / drop / delay /
bandwidth / partition schedules the undo (resume, factor 1, p 0, no delay, no limit, heal).
How each action is applied is ``launcher.fault_runner``'s job.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROCESS_ACTIONS = {"kill", "restart", "stop", "resume", "slow", "join", "leave"}
TRANSPORT_ACTIONS = {"drop", "delay", "bandwidth", "partition", "heal"}
ACTIONS = PROCESS_ACTIONS | TRANSPORT_ACTIONS
_PARAMS: dict[str, set[str]] = {
    "kill": set(),
    "restart": set(),
    "resume": set(),
    "join": set(),
    "leave": set(),
    "heal": set(),
    "stop": {"duration_s"},
    "slow": {"factor", "duration_s"},
    "drop": {"p", "mode", "duration_s"},
    "delay": {"to", "delay_s", "duration_s"},
    "bandwidth": {"to", "bytes_per_s", "duration_s"},
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
        raise ScheduleError(
            f"{where}: unknown key(s) {', '.join(unknown)} for {action}; allowed: "
            f"{', '.join(sorted({'peer'} | _TRIGGER_KEYS | _PARAMS[action]))}"
        )
    if ("at" in values) == ("round" in values):
        raise ScheduleError(f"{where}: give exactly one trigger, at (seconds) or round")
    at, rnd = values.get("at"), values.get("round")
    if at is not None and (not isinstance(at, (int, float)) or isinstance(at, bool) or at < 0):
        raise ScheduleError(f"{where}.at: expected seconds >= 0, got {at!r}")
    if rnd is not None and (not isinstance(rnd, int) or isinstance(rnd, bool) or rnd < 0):
        raise ScheduleError(f"{where}.round: expected an integer >= 0, got {rnd!r}")
    peer = values.get("peer")
    if action not in ("partition", "heal") and not isinstance(peer, str):
        raise ScheduleError(f"{where}.peer: {action} needs the peer id it acts on")
    _check_peers(values, where, peer_ids)
    params = {k: v for k, v in values.items() if k in _PARAMS[action]}
    _check_params(action, params, where)
    return FaultEvent(
        action=action,
        peer=peer,
        at=None if at is None else float(at),
        round=rnd,
        of=values.get("of"),
        params=params,
    )


def _check_peers(values: dict, where: str, peer_ids: set[str] | None) -> None:
    """Every peer an event names (peer, of, to, groups) is one of the swarm's."""
    if peer_ids is None:
        return
    named = [p for p in (values.get("peer"), values.get("of"), values.get("to")) if p not in (None, "*")]
    named += [p for g in values.get("groups") or [] for p in (g if isinstance(g, list) else [g])]
    for name in named:
        if name not in peer_ids:
            raise ScheduleError(f"{where}: no peer {name!r} in this swarm ({', '.join(sorted(peer_ids))})")


def _check_params(action: str, params: dict, where: str) -> None:
    def number(key: str, low: float, inclusive: bool = True) -> None:
        value = params.get(key)
        if value is None:
            return
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (value >= low if inclusive else value > low)
        )
        if not ok:
            raise ScheduleError(
                f"{where}.{key}: expected a number {'>=' if inclusive else '>'} {low}, got {value!r}"
            )

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
        if not (
            isinstance(groups, list) and len(groups) >= 2 and all(isinstance(g, list) and g for g in groups)
        ):
            raise ScheduleError(
                f"{where}.groups: expected two or more non-empty peer-id lists, got {groups!r}"
            )


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


@dataclass(frozen=True, kw_only=True)
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


def _kill_restart(rng: random.Random, rates: ChurnRates, victim: str, t: float, _ids) -> tuple[list, float]:
    down = rng.uniform(*rates.down_s)
    return [
        FaultEvent("kill", victim, at=round(t, 2)),
        FaultEvent("restart", victim, at=round(t + down, 2)),
    ], down


def _stop_resume(rng: random.Random, rates: ChurnRates, victim: str, t: float, _ids) -> tuple[list, float]:
    length = rng.uniform(*rates.stop_s)
    return [FaultEvent("stop", victim, at=round(t, 2), params={"duration_s": round(length, 2)})], length


def _slow(rng: random.Random, rates: ChurnRates, victim: str, t: float, _ids) -> tuple[list, float]:
    length = rng.uniform(*rates.fault_s)
    params = {"factor": round(rng.uniform(*rates.factor), 2), "duration_s": round(length, 2)}
    return [FaultEvent("slow", victim, at=round(t, 2), params=params)], length


def _drop(rng: random.Random, rates: ChurnRates, victim: str, t: float, _ids) -> tuple[list, float]:
    length = rng.uniform(*rates.fault_s)
    params = {
        "p": round(rng.uniform(0.2, 0.6), 2),
        "mode": rng.choice(["refuse", "abort"]),
        "duration_s": round(length, 2),
    }
    return [FaultEvent("drop", victim, at=round(t, 2), params=params)], length


def _partition(
    rng: random.Random, rates: ChurnRates, _victim: str, t: float, ids: list[str]
) -> tuple[list, float]:
    length = rng.uniform(*rates.fault_s)
    shuffled = rng.sample(ids, len(ids))
    half = len(shuffled) // 2
    params = {"groups": [sorted(shuffled[:half]), sorted(shuffled[half:])], "duration_s": round(length, 2)}
    return [FaultEvent("partition", None, at=round(t, 2), params=params)], length


# churn kind -> what one draw of it schedules (its events and how long it lasts)
_CHURN = {
    "kill_restart": _kill_restart,
    "stop_resume": _stop_resume,
    "slow": _slow,
    "drop": _drop,
    "partition": _partition,
}


def generate_schedule(
    seed: int,
    peer_ids: list[str],
    duration_s: float,
    rates: ChurnRates = ChurnRates(),
    warmup_s: float = 10.0,
) -> FaultSchedule:
    """A random churn schedule from ``seed``: one fault at a time (so every effect has one cause),
    kinds drawn by their rates, victims and sizes uniformly; the same seed gives the same events."""
    rng = random.Random(seed)
    kinds = {kind: getattr(rates, kind) for kind in _CHURN}
    kinds = {k: v for k, v in kinds.items() if v > 0 and (k != "partition" or len(peer_ids) >= 2)}
    events: list[FaultEvent] = []
    t = warmup_s
    while kinds and t < duration_s:
        kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        victim = rng.choice(peer_ids)
        drawn, length = _CHURN[kind](rng, rates, victim, t, peer_ids)
        events += drawn
        t += length + rng.uniform(*rates.gap_s)
    return FaultSchedule(seed=seed, events=tuple(events))


def kill_schedule(
    seed: int,
    peer_ids: list[str],
    duration_s: float,
    every_s: float,
    restart_after_s: float = 2.0,
    warmup_s: float = 10.0,
) -> FaultSchedule:
    """Every ``every_s`` seconds a random peer (seeded) is killed with SIGKILL and restarted
    ``restart_after_s`` later from its checkpoint: the churn of a crash-prone swarm at a steady rate."""
    if every_s <= restart_after_s:
        raise ScheduleError(f"every_s={every_s:g} must exceed restart_after_s={restart_after_s:g}")
    rng = random.Random(seed)
    events: list[FaultEvent] = []
    t = warmup_s
    while t + restart_after_s < duration_s:
        victim = rng.choice(peer_ids)
        events += [
            FaultEvent(action="kill", peer=victim, at=round(t, 3)),
            FaultEvent(action="restart", peer=victim, at=round(t + restart_after_s, 3)),
        ]
        t += every_s
    return FaultSchedule(seed=seed, events=tuple(events))
