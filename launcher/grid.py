"""Sweep grid files: the format ``dssl sweep`` reads, validated and expanded into swarm runs.

A grid file names the swarm spec every run starts from and the axes it varies::

    sweep:
      name: claims                  # sweep directory <run_root>/<name>
      spec: ../examples/swarm.yaml  # swarm spec (launcher/spec.py), relative to this grid file
      seeds: [0, 1, 2]              # each run once per seed (swarm.seed: partition, init, topology)
      run_root: runs/sweeps         # optional (relative to the current directory)
      insecure: false               # optional: plaintext gossip for every run (default: mutual TLS)
      consensus: false              # optional: evaluate each run's consensus model θ̄ (dssl consensus)
      baselines: false              # optional: train each run's local-only + centralised baselines
    set: {train.steps: 300}         # optional overrides of every run
    grids:                          # the sweep = union over grids of the product of each grid's axes
      - axes:                       # (a grid may add its own `seeds: [...]`, replacing sweep.seeds)
          method:                   # axis name -> {label: overrides}
            simsiam: {objective.name: simsiam, objective.backbone: test_resnet}
            mae: {objective.name: mae}
          split:
            iid: {data.partition: iid}
            dir0.1: {data.partition: "dirichlet:0.1"}
    claims: [...]                   # optional, read by analysis.claims (ignored here)

Override keys are dotted peer-config keys, exactly as ``dssl swarm --set`` takes them, plus
``swarm.size`` (peers) and ``swarm.faults`` (a fault schedule, relative to the grid file). A run's
overrides are ``set``, then each axis' label in order of appearance (later axes win). Its name is
its labels and seed, ``method=mae,split=dir0.1,seed=0``; runs that resolve to the same overrides
and seed in two grids run once (the first name, with both grids' labels).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis.results import FIXED_COLUMNS
from launcher.fault_schedule import FaultSchedule, ScheduleError, load_schedule
from launcher.spec import SpecError, SwarmPlan, plan_from_dict, read_yaml
from peer.config import ConfigError, config_from_dict, config_to_dict

DEFAULT_RUN_ROOT = "runs/sweeps"
SPECIAL_KEYS = {"swarm.size", "swarm.faults"}  # launcher settings a grid may vary besides peer config keys
# peer-config keys the launcher sets itself (seeds come from sweep.seeds, peers from swarm.size)
_LAUNCHER_KEYS = {
    "data.num_peers",
    "data.peer_index",
    "data.seed",
    "train.seed",
    "train.run_dir",
    "gossip.swarm_id",
    "gossip.peer_id",
}
_TOP_KEYS = {"sweep", "set", "grids", "claims"}
_SWEEP_KEYS = {"name", "spec", "seeds", "run_root", "insecure", "consensus", "baselines"}
_SWEEP_FLAGS = ("insecure", "consensus", "baselines")  # optional booleans of `sweep:`, default false
_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True, kw_only=True)
class SweepRun:
    """One swarm run of the sweep: its axis labels, seed and resolved overrides."""

    name: str  # filesystem-safe: "<axis>=<label>,...,seed=<seed>"
    seed: int
    axes: dict[str, str]  # axis name -> label, in order of appearance
    overrides: dict[str, Any]  # dotted peer-config key -> value (set, then each label; later win)
    size: int | None = None  # swarm.size override (None: the spec's)
    faults: Path | None = None  # swarm.faults: resolved fault schedule path
    aliases: tuple[str, ...] = ()  # names of identical runs of other grids, folded into this one

    def set_args(self) -> list[str]:
        """The overrides as ``dssl swarm --set`` strings (JSON is YAML, so "dirichlet:0.1" stays a string)."""
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same run (stored in run.json, compared when a sweep resumes)."""
        return {
            "seed": self.seed,
            "overrides": self.overrides,
            "size": self.size,
            "faults": str(self.faults) if self.faults is not None else None,
        }


@dataclass(frozen=True, kw_only=True)
class Grid:
    """A loaded, validated grid file."""

    name: str
    source: Path  # the grid file
    spec_path: Path
    spec: dict  # the swarm spec's contents
    seeds: tuple[int, ...]
    run_root: Path
    insecure: bool
    consensus: bool = False  # evaluate θ̄ after each complete run
    baselines: bool = False  # train local-only + centralised baselines after each complete run
    axes: tuple[str, ...]  # axis names, in order of first appearance
    base: dict[str, Any] = field(default_factory=dict)  # the `set:` overrides of every run
    runs: list[SweepRun] = field(default_factory=list)

    @property
    def sweep_dir(self) -> Path:
        return self.run_root / self.name


# ---- loading a grid ---------------------------------------------------------------------------


def _fail(where: str, message: str) -> SpecError:
    return SpecError(f"{where}: {message}")


def _known_keys() -> dict:
    return config_to_dict(config_from_dict({}))


def _check_override_key(key: Any, value: Any, where: str, known: dict) -> None:
    """A key must be a special swarm key or an existing peer-config key the launcher does not own."""
    if not isinstance(key, str) or "." not in key:
        raise _fail(
            where,
            f"override key {key!r}: expected a dotted key such as train.steps "
            f"or one of {', '.join(sorted(SPECIAL_KEYS))}",
        )
    if key == "swarm.size":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _fail(f"{where}.swarm.size", f"expected a number of peers >= 1, got {value!r}")
        return
    if key == "swarm.faults":
        if value is not None and not isinstance(value, str):
            raise _fail(f"{where}.swarm.faults", f"expected a fault schedule path (or null), got {value!r}")
        return
    if key.startswith("swarm."):
        raise _fail(
            where,
            f"override key {key!r}: a grid may set only {', '.join(sorted(SPECIAL_KEYS))} "
            f"of the swarm section (seeds come from sweep.seeds)",
        )
    if key in _LAUNCHER_KEYS:
        raise _fail(where, f"override key {key!r} is set by the launcher (use sweep.seeds / swarm.size)")
    node: Any = known
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise _fail(where, f"override key {key!r}: unknown peer-config key ({part!r} is not a key there)")
        node = node[part]
    if isinstance(node, dict):
        raise _fail(where, f"override key {key!r} is a section; name one of its keys")


def _overrides(values: Any, where: str, known: dict) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise _fail(where, f"expected a mapping of dotted keys to values, got {values!r}")
    for key, value in values.items():
        _check_override_key(key, value, where, known)
    return dict(values)


def _label(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)) or str(value) == "":
        raise _fail(where, f"label {value!r}: expected a non-empty name")
    return str(value)


def _grid_axes(grid: Any, index: int, known: dict) -> list[tuple[str, list[tuple[str, dict]]]]:
    """One grid's axes as [(axis name, [(label, overrides), ...]), ...] in file order."""
    where = f"grids[{index}]"
    if not isinstance(grid, dict) or "axes" not in grid or not set(grid) <= {"axes", "seeds"}:
        raise _fail(where, "expected a mapping with the key axes (and optionally seeds)")
    axes = grid["axes"]
    if not isinstance(axes, dict) or not axes:
        raise _fail(f"{where}.axes", "expected a non-empty mapping axis name -> {label: overrides}")
    out = []
    for name, labels in axes.items():
        awhere = f"{where}.axes.{name}"
        if not isinstance(name, str) or not _AXIS_NAME.match(name):
            raise _fail(awhere, "an axis name is a word of letters, digits, _ . - (starting with a letter)")
        if name in FIXED_COLUMNS:
            raise _fail(awhere, f"axis name {name!r} clashes with a results column; rename the axis")
        if not isinstance(labels, dict) or not labels:
            raise _fail(awhere, "empty axis: expected a mapping label -> overrides with at least one label")
        items = [
            (_label(label, awhere), _overrides(values, f"{awhere}.{label}", known))
            for label, values in labels.items()
        ]
        safe = [_UNSAFE.sub("_", label) for label, _ in items]
        if len(set(safe)) != len(safe):
            raise _fail(awhere, f"labels {[label for label, _ in items]} are not distinct as file names")
        out.append((name, items))
    return out


def _seeds(values: Any, where: str) -> tuple[int, ...]:
    ok = (
        isinstance(values, list)
        and values
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in values)
    )
    if not ok or len(set(values)) != len(values):
        raise _fail(where, f"expected a non-empty list of distinct integers >= 0, got {values!r}")
    return tuple(values)


def _run_name(axes: dict[str, str], seed: int) -> str:
    return ",".join([*(f"{k}={_UNSAFE.sub('_', v)}" for k, v in axes.items()), f"seed={seed}"])


def _combinations(
    base: dict[str, Any], axes: list, here: Path
) -> list[tuple[dict, dict, int | None, Path | None]]:
    """Every combination of one grid's axis labels: (labels, overrides, swarm.size, faults path)."""
    out = []
    for combo in itertools.product(
        *[[(name, label, values) for label, values in labels] for name, labels in axes]
    ):
        merged = dict(base)
        for _, _, values in combo:
            merged.update(values)
        size = merged.pop("swarm.size", None)
        faults = merged.pop("swarm.faults", None)
        faults_path = (here / faults).resolve() if faults is not None else None
        out.append(({name: label for name, label, _ in combo}, merged, size, faults_path))
    return out


def _fold(
    runs: dict[str, dict], labels: dict, merged: dict, size: int | None, faults: Path | None, seed: int
) -> None:
    """Add one run to ``runs`` (identity -> run fields), or fold it into an identical earlier one."""
    identity = json.dumps([seed, merged, size, str(faults)], sort_keys=True, default=str)
    name = _run_name(labels, seed)
    first = runs.get(identity)
    if first is None:
        runs[identity] = {
            "name": name,
            "seed": seed,
            "axes": dict(labels),
            "overrides": merged,
            "size": size,
            "faults": faults,
            "aliases": [],
        }
        return
    if name != first["name"]:
        first["aliases"].append(name)
    for axis, label in labels.items():
        first["axes"].setdefault(axis, label)


def _expand(base: dict[str, Any], grids: list, seeds: list[tuple[int, ...]], here: Path) -> list[SweepRun]:
    """Union over grids of the product of their axes, times each grid's seeds, ordered seed by seed (so
    a sweep cut short holds every condition of its first seeds: complete pairs for the claims). A
    run identical to an earlier one (same overrides, size, faults and seed) is folded into it: it
    keeps the first name and gains the later run's axis labels (so both grids' columns are filled)
    and its name as an alias."""
    runs: dict[str, dict] = {}  # identity -> run fields
    for axes, grid_seeds in zip(grids, seeds):
        for labels, merged, size, faults in _combinations(base, axes, here):
            for seed in grid_seeds:
                _fold(runs, labels, merged, size, faults, seed)
    out: dict[str, SweepRun] = {}
    for fields in sorted(runs.values(), key=lambda f: f["seed"]):
        run = SweepRun(**{**fields, "aliases": tuple(fields["aliases"])})
        if run.name in out:
            raise SpecError(
                f"run {run.name}: two runs of the grids share this name but differ in their "
                f"overrides; give their labels different names"
            )
        out[run.name] = run
    return list(out.values())


def _sweep_mapping(values: dict, path: Path) -> dict:
    """The grid file's ``sweep:`` mapping, its keys and the file's top-level keys checked."""
    unknown = sorted(str(k) for k in values if k not in _TOP_KEYS)
    if unknown:
        raise SpecError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_TOP_KEYS))}"
        )
    sweep = values.get("sweep")
    if not isinstance(sweep, dict):
        raise SpecError(
            f"{path}: sweep: expected a mapping with name, spec, seeds (run_root, insecure optional)"
        )
    bad = sorted(str(k) for k in sweep if k not in _SWEEP_KEYS)
    if bad:
        raise SpecError(f"sweep: unknown key(s) {', '.join(bad)}; allowed: {', '.join(sorted(_SWEEP_KEYS))}")
    return sweep


def _sweep_section(values: dict, path: Path) -> dict[str, Any]:
    """The checked ``sweep:`` section: name, spec_path, spec, seeds, run_root and the flags."""
    sweep = _sweep_mapping(values, path)
    name = sweep.get("name", path.stem)
    if not isinstance(name, str) or not name or _UNSAFE.search(name):
        raise SpecError(f"sweep.name: expected a directory name of letters, digits and . _ + -, got {name!r}")
    if not isinstance(sweep.get("spec"), str):
        raise SpecError(
            f"sweep.spec: expected the path of a swarm spec (relative to {path}), got {sweep.get('spec')!r}"
        )
    spec_path = (path.parent / sweep["spec"]).resolve()
    try:
        spec = read_yaml(spec_path, "swarm spec")
    except SpecError as exc:
        raise SpecError(f"sweep.spec: {exc}") from None
    seeds = _seeds(sweep.get("seeds", [0]), "sweep.seeds")
    run_root = sweep.get("run_root", DEFAULT_RUN_ROOT)
    if not isinstance(run_root, str) or not run_root:
        raise SpecError(f"sweep.run_root: expected a directory path, got {run_root!r}")
    flags = {key: sweep.get(key, False) for key in _SWEEP_FLAGS}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise SpecError(f"sweep.{key}: expected true or false, got {value!r}")
    return {"name": name, "spec_path": spec_path, "spec": spec, "seeds": seeds, "run_root": run_root, **flags}


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid file; every run's swarm plan and fault schedule is resolved here,
    so a bad grid fails before anything runs. Raises :class:`SpecError` naming the key."""
    path = Path(path)
    values = read_yaml(path, "sweep grid")
    sweep = _sweep_section(values, path)
    known = _known_keys()
    base = _overrides(values.get("set"), "set", known)
    grids = values.get("grids")
    if not isinstance(grids, list) or not grids:
        raise SpecError("grids: expected a non-empty list of {axes: {...}}")
    expanded = [_grid_axes(g, i, known) for i, g in enumerate(grids)]
    grid_seeds = [
        _seeds(g["seeds"], f"grids[{i}].seeds") if "seeds" in g else sweep["seeds"]
        for i, g in enumerate(grids)
    ]
    axes: list[str] = []
    for grid in expanded:
        axes += [name for name, _ in grid if name not in axes]
    grid = Grid(
        name=sweep["name"],
        source=path.resolve(),
        spec_path=sweep["spec_path"],
        spec=sweep["spec"],
        seeds=sweep["seeds"],
        run_root=Path(sweep["run_root"]).resolve(),
        **{key: sweep[key] for key in _SWEEP_FLAGS},
        axes=tuple(axes),
        base=base,
        runs=_expand(base, expanded, grid_seeds, path.parent),
    )
    for run in grid.runs:
        schedule_for(run, plan_for(grid, run))
    return grid


def plan_for(grid: Grid, run: SweepRun, size: int | None = None) -> SwarmPlan:
    """The run's swarm plan: the grid's spec with the run's seed, size and overrides."""
    spec = copy.deepcopy(grid.spec)
    if isinstance(spec.get("swarm") or {}, dict):  # anything else: plan_from_dict names the problem
        spec["swarm"] = {**(spec.get("swarm") or {}), "seed": run.seed}
    try:
        return plan_from_dict(
            spec,
            size=size if size is not None else run.size,
            base_dir=grid.spec_path.parent,
            source=str(grid.spec_path),
            overrides=run.set_args(),
        )
    except (SpecError, ConfigError) as exc:
        raise SpecError(f"run {run.name}: {exc}") from None


def schedule_for(run: SweepRun, plan: SwarmPlan) -> FaultSchedule | None:
    """The run's fault schedule, checked against its peer ids (None without swarm.faults)."""
    if run.faults is None:
        return None
    try:
        return load_schedule(run.faults, [p.peer_id for p in plan.peers])
    except ScheduleError as exc:
        raise SpecError(f"run {run.name}: swarm.faults: {exc}") from None


def select(runs: list[SweepRun], only: list[str] | None) -> list[SweepRun]:
    """The runs whose name contains one of the ``only`` substrings (all runs when None)."""
    if not only:
        return list(runs)
    return [run for run in runs if any(part in run.name for part in only)]
