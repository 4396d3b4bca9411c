"""The swarm spec: one YAML file that says how many peers to start and how each one differs.

A spec has swarm-level settings, a base peer config shared by every peer, and per-peer knobs::

    swarm:                       # launcher settings
      id: fmnist-ring            # DHT key prefix (gossip.swarm_id); peers of other swarms never meet
      size: 4                    # peer processes (``dssl swarm --peers N`` overrides it)
      run_root: runs             # the run directory is created under it
      ready_timeout_s: 180       # how long to wait for the bootstrap peer to serve
      stop_deadline_s: 30        # SIGTERM -> this many seconds -> SIGKILL of the process group
    config: train_fmnist.yaml    # optional base peer config file (relative to this spec)
    base:                        # peer config values for every peer (sections of peer.config.Config)
      train: {steps: 200, period: 10}
      gossip: {topology: ring}
    defaults:                    # per-peer knobs applied to every peer
      threads: 1
    peers:                       # per-peer knobs by index (a list, or a mapping index -> knobs)
      1: {slowdown: 3.0, batch_size: 32}

Per-peer knobs (``PEER_KNOBS``) are shorthands for config keys — batch size, compute slow-down,
data share (an image cap), device and threads — plus ``id`` and ``set`` (any dotted config key).
``device: auto`` becomes ``cuda:<i mod #GPUs>`` round-robin when GPUs exist, ``cpu`` otherwise.

Everything is checked here, by building every peer's full config through ``peer.config``: an
unknown key or a bad value raises :class:`SpecError` naming it, before any process is spawned.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from peer.config import Config, ConfigError, apply_overrides, config_from_dict, validate


class SpecError(ValueError):
    """A swarm spec problem, phrased for the user (names the key and what was expected)."""


# knob -> (dotted config key, accepted python types, human description)
PEER_KNOBS: dict[str, tuple[str, tuple[type, ...], str]] = {
    "batch_size": ("train.batch_size", (int,), "images per step"),
    "slowdown": ("train.slowdown", (int, float), "compute slow-down factor >= 1"),
    "threads": ("train.threads", (int,), "CPU threads of this peer"),
    "device": ("train.device", (str,), "auto, cpu, cuda or cuda:<i>"),
    "share": ("data.train_limit", (int, type(None)), "cap on this peer's images (quantity skew)"),
    "steps": ("train.steps", (int, type(None)), "optimizer steps of this peer"),
}
_PEER_KEYS = {"id", "set", *PEER_KNOBS}
_SWARM_KEYS = {"id", "size", "run_root", "ready_timeout_s", "stop_deadline_s", "seed", "zygote"}
_TOP_KEYS = {"swarm", "config", "base", "defaults", "peers"}


@dataclass(frozen=True, kw_only=True)
class SwarmSettings:
    """Launcher-level settings (not part of any peer's config)."""

    swarm_id: str = "dssl"  # gossip.swarm_id of every peer
    size: int = 3  # number of peer processes
    run_root: str = "runs"  # parent of the run directory
    ready_timeout_s: float = 180.0  # bootstrap peer must write ready.json within this
    stop_deadline_s: float = 30.0  # graceful stop deadline before SIGKILL
    seed: int = 0  # swarm seed: data partition, topology draws, model init of every peer
    # fork this host's peers from one process that imported the peer's stack once (launcher.zygote):
    # a start or restart then costs no import CPU, which on a shared host is the other peers' CPU
    zygote: bool = False


@dataclass(frozen=True, kw_only=True)
class PeerPlan:
    """One peer as the launcher will start it: its id and its full, validated config."""

    index: int
    peer_id: str
    config: Config
    knobs: dict[str, Any] = field(default_factory=dict)  # the per-peer knobs that were applied


@dataclass(frozen=True)
class SwarmPlan:
    """The resolved spec: settings plus one validated config per peer."""

    settings: SwarmSettings
    peers: tuple[PeerPlan, ...]
    source: str | None = None  # the spec file it came from (None when built from --peers only)


def _check_keys(values: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(str(k) for k in values if k not in allowed)
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
    return value


def _settings(values: dict, size_override: int | None) -> SwarmSettings:
    _check_keys(values, _SWARM_KEYS, "swarm")
    kinds = {
        "id": str,
        "size": int,
        "run_root": str,
        "ready_timeout_s": (int, float),
        "stop_deadline_s": (int, float),
        "seed": int,
    }
    for key, kind in kinds.items():
        if key in values and (not isinstance(values[key], kind) or isinstance(values[key], bool)):
            raise SpecError(f"swarm.{key}: expected {kind}, got {values[key]!r}")
    settings = SwarmSettings(
        swarm_id=values.get("id", SwarmSettings.swarm_id),
        size=size_override if size_override is not None else values.get("size", SwarmSettings.size),
        run_root=values.get("run_root", SwarmSettings.run_root),
        ready_timeout_s=float(values.get("ready_timeout_s", SwarmSettings.ready_timeout_s)),
        stop_deadline_s=float(values.get("stop_deadline_s", SwarmSettings.stop_deadline_s)),
        seed=values.get("seed", SwarmSettings.seed),
        zygote=values.get("zygote", SwarmSettings.zygote),
    )
    if not isinstance(settings.zygote, bool):
        raise SpecError(f"swarm.zygote: expected true or false, got {settings.zygote!r}")
    if settings.size < 1:
        raise SpecError(f"swarm.size: expected >= 1 peers, got {settings.size}")
    if not settings.swarm_id or "/" in settings.swarm_id:
        raise SpecError(f"swarm.id: expected a non-empty name without '/', got {settings.swarm_id!r}")
    if settings.ready_timeout_s <= 0 or settings.stop_deadline_s <= 0:
        raise SpecError("swarm.ready_timeout_s and swarm.stop_deadline_s must be > 0")
    return settings


def _per_peer(values: Any, size: int) -> dict[int, dict]:
    """Normalise ``peers:`` (a list, or a mapping index -> knobs) to {index: knobs}."""
    if values is None:
        return {}
    if isinstance(values, list):
        items = dict(enumerate(values))
    elif isinstance(values, dict):
        items = values
    else:
        raise SpecError(f"peers: expected a list or a mapping index -> knobs, got {type(values).__name__}")
    out: dict[int, dict] = {}
    for key, knobs in items.items():
        if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key < size:
            raise SpecError(f"peers: key {key!r} is not a peer index in 0..{size - 1}")
        out[key] = _mapping(knobs, f"peers[{key}]")
    return out


def _check_knobs(knobs: dict, where: str) -> None:
    _check_keys(knobs, _PEER_KEYS, where)
    for knob, value in knobs.items():
        if knob in PEER_KNOBS:
            _, kinds, what = PEER_KNOBS[knob]
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise SpecError(f"{where}.{knob}: expected {what}, got {value!r}")
    if "id" in knobs and (not isinstance(knobs["id"], str) or not knobs["id"] or "/" in knobs["id"]):
        raise SpecError(f"{where}.id: expected a non-empty peer id without '/', got {knobs.get('id')!r}")
    if "set" in knobs:
        _mapping(knobs["set"], f"{where}.set")


def gpu_count() -> int:
    """Visible CUDA devices (0 on a CPU-only machine)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install must not stop a CPU swarm
        return 0


def _device(value: str, index: int, gpus: int) -> str:
    if value != "auto":
        return value
    return f"cuda:{index % gpus}" if gpus else "cpu"


def _default_threads(size: int) -> int:
    """Share the host's cores among the local peers (at least one thread each)."""
    return max(1, (os.cpu_count() or 1) // size)


def _peer_values(base: dict, settings: SwarmSettings, index: int, knobs: dict, gpus: int) -> tuple[str, dict]:
    values = copy.deepcopy(base)
    peer_id = knobs.get("id", f"p{index}")
    fixed = {
        "data.num_peers": settings.size,
        "data.peer_index": index,
        "data.seed": settings.seed,
        "train.seed": settings.seed,
        "gossip.swarm_id": settings.swarm_id,
        "gossip.peer_id": peer_id,
    }
    applied = {"threads": _default_threads(settings.size), "device": "auto", **knobs}
    for knob, value in applied.items():
        if knob in PEER_KNOBS:
            key = PEER_KNOBS[knob][0]
            fixed[key] = _device(value, index, gpus) if knob == "device" else value
    for key, value in fixed.items():
        section, name = key.split(".")
        _mapping(values.setdefault(section, {}), section)[name] = value
    for key, value in (knobs.get("set") or {}).items():
        apply_overrides(values, [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"])
    return peer_id, values


def read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise SpecError(f"{what} {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{what} {path} is not valid YAML: {exc}") from None
    return _mapping(loaded, str(path))


def _base_config(spec: dict, base_dir: Path | None, overrides: list[str] | None) -> dict:
    """Every peer's config values before its knobs: the ``config:`` file, ``base:``, then ``--set``."""
    base: dict = {}
    if spec.get("config") is not None:
        if not isinstance(spec["config"], str):
            raise SpecError(f"config: expected a file path, got {spec['config']!r}")
        path = Path(spec["config"])
        base = read_yaml(path if path.is_absolute() else (base_dir or Path.cwd()) / path, "config file")
    try:
        _merge(base, copy.deepcopy(_mapping(spec.get("base"), "base")))
        apply_overrides(base, list(overrides or []))
    except ConfigError as exc:
        raise SpecError(str(exc)) from None
    return base


def _peer_plan(base: dict, settings: SwarmSettings, index: int, knobs: dict, gpus: int) -> PeerPlan:
    _check_knobs(knobs, f"peers[{index}]")
    try:
        peer_id, values = _peer_values(base, settings, index, knobs, gpus)
        config = config_from_dict(values)
        validate(config)
    except ConfigError as exc:
        raise SpecError(f"peer {index}: {exc}") from None
    return PeerPlan(index=index, peer_id=peer_id, config=config, knobs=knobs)


def plan_from_dict(
    spec: dict,
    *,
    size: int | None = None,
    base_dir: Path | None = None,
    source: str | None = None,
    overrides: list[str] | None = None,
) -> SwarmPlan:
    """Resolve a spec dict into a :class:`SwarmPlan`; raises SpecError before anything runs.

    ``size`` overrides ``swarm.size``; ``overrides`` are ``section.key=value`` strings applied to
    every peer's config after the spec (the command line's ``--set``).
    """
    spec = _mapping(spec, "swarm spec")
    _check_keys(spec, _TOP_KEYS, "swarm spec")
    settings = _settings(_mapping(spec.get("swarm"), "swarm"), size)
    base = _base_config(spec, base_dir, overrides)
    defaults = _mapping(spec.get("defaults"), "defaults")
    _check_knobs(defaults, "defaults")
    per_peer = _per_peer(spec.get("peers"), settings.size)
    gpus = gpu_count()
    plans: list[PeerPlan] = []
    for index in range(settings.size):
        plan = _peer_plan(base, settings, index, {**defaults, **per_peer.get(index, {})}, gpus)
        if plan.peer_id in {p.peer_id for p in plans}:
            raise SpecError(f"peers[{index}].id: peer id {plan.peer_id!r} is used twice")
        plans.append(plan)
    return SwarmPlan(settings=settings, peers=tuple(plans), source=source)


def _merge(into: dict, extra: dict) -> dict:
    """Deep-merge ``extra`` into ``into`` (mappings merge, everything else replaces)."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def load_plan(
    path: str | Path | None, *, size: int | None = None, overrides: list[str] | None = None
) -> SwarmPlan:
    """Read a swarm spec file (or none: defaults + ``--peers N``) and resolve it."""
    if path is None:
        return plan_from_dict({}, size=size, overrides=overrides)
    path = Path(path)
    return plan_from_dict(
        read_yaml(path, "swarm spec"), size=size, base_dir=path.parent, source=str(path), overrides=overrides
    )
