"""``dssl sweep GRID.yaml``: expand a grid of swarm runs, run them one after another, tabulate them.

A grid file names the swarm spec every run starts from and the axes it varies::

    sweep:
      name: claims                  # sweep directory <run_root>/<name>
      spec: ../examples/swarm.yaml  # swarm spec (launcher/spec.py), relative to this grid file
      seeds: [0, 1, 2]              # each run once per seed (swarm.seed: partition, init, topology)
      run_root: runs/sweeps         # optional (relative to the current directory)
      insecure: false               # optional: plaintext gossip for every run (default: mutual TLS)
    set: {train.steps: 300}         # optional overrides of every run
    grids:                          # the sweep = union over grids of the product of each grid's axes
      - axes:                       # (a grid may add its own `seeds: [...]`, replacing sweep.seeds)
          method:                   # axis name -> {label: overrides}
            simsiam: {objective.name: simsiam, objective.backbone: test_resnet}
            mae: {objective.name: mae}
          split:
            iid: {data.partition: iid}
            dir0.1: {data.partition: "dirichlet:0.1"}
    claims: [...]                   # optional, read by launcher.claims (ignored here)

Override keys are dotted peer-config keys, exactly as ``dssl swarm --set`` takes them, plus
``swarm.size`` (peers) and ``swarm.faults`` (a fault schedule, relative to the grid file). A run's
overrides are ``set``, then each axis' label in order of appearance (later axes win). Its name is
its labels and seed, ``method=mae,split=dir0.1,seed=0``; runs that resolve to the same overrides
and seed in two grids run once (the first name, with both grids' labels).

Sweep directory::

    <run_root>/<name>/
      grid.yaml                     the grid file as given
      sweep.json                    axis and run order of the grid last run
      results.csv                   one row per run (result_columns()), rewritten after every run
      runs/<run name>/run.json      the run's manifest: status pending|running|complete|failed ...
      runs/<run name>/<ts>-<swarm>/ the swarm run directory of each attempt (launcher.swarm)

Everything (every run's plan, data directory and fault schedule) is checked before the first run
starts. A run is complete when every peer exited 0 and every peer left its final results; complete
runs are skipped when the sweep is started again, running (crashed) or failed ones are re-run.
"""

from __future__ import annotations

import argparse
import copy
import csv
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from launcher.collect import collect
from launcher.faults import FaultSchedule, ScheduleError, load_schedule
from launcher.rundir import RunDir
from launcher.spec import SpecError, SwarmPlan, _read_yaml, plan_from_dict
from launcher.swarm import check_local_data, run_local
from peer.config import ConfigError, config_from_dict, config_to_dict

log = logging.getLogger(__name__)

DEFAULT_RUN_ROOT = "runs/sweeps"
SPECIAL_KEYS = {"swarm.size", "swarm.faults"}  # launcher settings a grid may vary besides peer config keys
# peer-config keys the launcher sets itself (seeds come from sweep.seeds, peers from swarm.size)
_LAUNCHER_KEYS = {"data.num_peers", "data.peer_index", "data.seed", "train.seed", "train.run_dir",
                  "gossip.swarm_id", "gossip.peer_id"}
_TOP_KEYS = {"sweep", "set", "grids", "claims"}
_SWEEP_KEYS = {"name", "spec", "seeds", "run_root", "insecure"}
_AXIS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")

RESULT_COLUMNS_HEAD = ("run", "status", "seed")  # then the axis names, then RESULT_COLUMNS_TAIL
RESULT_COLUMNS_TAIL = (
    "objective", "partition", "topology", "peers", "steps", "period", "faults",
    "knn_mean", "knn_std", "knn_min", "knn_max", "knn_init_mean", "linear_mean", "consensus_distance",
    "spectral_gap_mean", "spectral_gap_min", "average_connectivity_mean", "harmonic_connectivity_mean",
    "bytes_out_total", "rounds_min", "collapse_std_mean", "a_mmd_mean", "wall_s", "run_dir",
)
FIXED_COLUMNS = frozenset(RESULT_COLUMNS_HEAD + RESULT_COLUMNS_TAIL)
_INT_COLUMNS = {"seed", "peers", "steps", "period", "bytes_out_total", "rounds_min"}
_FLOAT_COLUMNS = {"knn_mean", "knn_std", "knn_min", "knn_max", "knn_init_mean", "linear_mean", "consensus_distance",
                  "spectral_gap_mean", "spectral_gap_min", "average_connectivity_mean",
                  "harmonic_connectivity_mean", "collapse_std_mean", "a_mmd_mean", "wall_s"}
_MANIFEST_COLUMNS = ("objective", "partition", "topology", "peers", "steps", "period", "wall_s", "run_dir")
_DIAGNOSTIC_COLUMNS = ("spectral_gap_mean", "spectral_gap_min", "average_connectivity_mean",
                       "harmonic_connectivity_mean", "bytes_out_total", "collapse_std_mean", "a_mmd_mean")

# (plan, argv, run_root, faults, insecure) -> (run directory, exit code per peer); default run_local
Runner = Callable[[SwarmPlan, list, str, "FaultSchedule | None", bool],
                  "tuple[RunDir, dict[str, int | None]]"]


@dataclass(frozen=True)
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
        return {"seed": self.seed, "overrides": self.overrides, "size": self.size,
                "faults": str(self.faults) if self.faults is not None else None}


@dataclass(frozen=True)
class Grid:
    """A loaded, validated grid file."""

    name: str
    source: Path  # the grid file
    spec_path: Path
    spec: dict  # the swarm spec's contents
    seeds: tuple[int, ...]
    run_root: Path
    insecure: bool
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
        raise _fail(where, f"override key {key!r}: expected a dotted key such as train.steps "
                           f"or one of {', '.join(sorted(SPECIAL_KEYS))}")
    if key == "swarm.size":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _fail(f"{where}.swarm.size", f"expected a number of peers >= 1, got {value!r}")
        return
    if key == "swarm.faults":
        if value is not None and not isinstance(value, str):
            raise _fail(f"{where}.swarm.faults", f"expected a fault schedule path (or null), got {value!r}")
        return
    if key.startswith("swarm."):
        raise _fail(where, f"override key {key!r}: a grid may set only {', '.join(sorted(SPECIAL_KEYS))} "
                           f"of the swarm section (seeds come from sweep.seeds)")
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
        items = [(_label(label, awhere), _overrides(values, f"{awhere}.{label}", known))
                 for label, values in labels.items()]
        safe = [_UNSAFE.sub("_", label) for label, _ in items]
        if len(set(safe)) != len(safe):
            raise _fail(awhere, f"labels {[label for label, _ in items]} are not distinct as file names")
        out.append((name, items))
    return out


def _seeds(values: Any, where: str) -> tuple[int, ...]:
    ok = (isinstance(values, list) and values
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in values))
    if not ok or len(set(values)) != len(values):
        raise _fail(where, f"expected a non-empty list of distinct integers >= 0, got {values!r}")
    return tuple(values)


def _run_name(axes: dict[str, str], seed: int) -> str:
    return ",".join([*(f"{k}={_UNSAFE.sub('_', v)}" for k, v in axes.items()), f"seed={seed}"])


def _expand(base: dict[str, Any], grids: list, seeds: list[tuple[int, ...]], here: Path) -> list[SweepRun]:
    """Union over grids of the product of their axes, times each grid's seeds. A run identical to an earlier
    one (same overrides, size, faults and seed) is folded into it: it keeps the first name and
    gains the later run's axis labels (so both grids' columns are filled) and its name as an alias."""
    runs: dict[str, dict] = {}  # identity -> run fields
    for axes, grid_seeds in zip(grids, seeds):
        for combo in itertools.product(*[[(name, label, values) for label, values in labels]
                                         for name, labels in axes]):
            merged = dict(base)
            for _, _, values in combo:
                merged.update(values)
            size = merged.pop("swarm.size", None)
            faults = merged.pop("swarm.faults", None)
            faults_path = (here / faults).resolve() if faults is not None else None
            labels = {name: label for name, label, _ in combo}
            for seed in grid_seeds:
                identity = json.dumps([seed, merged, size, str(faults_path)], sort_keys=True, default=str)
                name = _run_name(labels, seed)
                first = runs.get(identity)
                if first is None:
                    runs[identity] = {"name": name, "seed": seed, "axes": dict(labels), "overrides": merged,
                                      "size": size, "faults": faults_path, "aliases": []}
                    continue
                if name != first["name"]:
                    first["aliases"].append(name)
                for axis, label in labels.items():
                    first["axes"].setdefault(axis, label)
    out: dict[str, SweepRun] = {}
    for fields in runs.values():
        run = SweepRun(**{**fields, "aliases": tuple(fields["aliases"])})
        if run.name in out:
            raise SpecError(f"run {run.name}: two runs of the grids share this name but differ in their "
                            f"overrides; give their labels different names")
        out[run.name] = run
    return list(out.values())


def load_grid(path: str | Path) -> Grid:
    """Read and validate a grid file; every run's swarm plan and fault schedule is resolved here,
    so a bad grid fails before anything runs. Raises :class:`SpecError` naming the key."""
    path = Path(path)
    values = _read_yaml(path, "sweep grid")
    unknown = sorted(str(k) for k in values if k not in _TOP_KEYS)
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(sorted(_TOP_KEYS))}")
    sweep = values.get("sweep")
    if not isinstance(sweep, dict):
        raise SpecError(f"{path}: sweep: expected a mapping with name, spec, seeds "
                        f"(run_root, insecure optional)")
    bad = sorted(str(k) for k in sweep if k not in _SWEEP_KEYS)
    if bad:
        raise SpecError(f"sweep: unknown key(s) {', '.join(bad)}; allowed: {', '.join(sorted(_SWEEP_KEYS))}")
    name = sweep.get("name", path.stem)
    if not isinstance(name, str) or not name or _UNSAFE.search(name):
        raise SpecError(f"sweep.name: expected a directory name of letters, digits and . _ + -, got {name!r}")
    if not isinstance(sweep.get("spec"), str):
        raise SpecError(f"sweep.spec: expected the path of a swarm spec (relative to {path}), "
                        f"got {sweep.get('spec')!r}")
    here = path.parent
    spec_path = (here / sweep["spec"]).resolve()
    try:
        spec = _read_yaml(spec_path, "swarm spec")
    except SpecError as exc:
        raise SpecError(f"sweep.spec: {exc}") from None
    seeds = _seeds(sweep.get("seeds", [0]), "sweep.seeds")
    run_root = sweep.get("run_root", DEFAULT_RUN_ROOT)
    if not isinstance(run_root, str) or not run_root:
        raise SpecError(f"sweep.run_root: expected a directory path, got {run_root!r}")
    insecure = sweep.get("insecure", False)
    if not isinstance(insecure, bool):
        raise SpecError(f"sweep.insecure: expected true or false, got {insecure!r}")
    known = _known_keys()
    base = _overrides(values.get("set"), "set", known)
    grids = values.get("grids")
    if not isinstance(grids, list) or not grids:
        raise SpecError("grids: expected a non-empty list of {axes: {...}}")
    expanded = [_grid_axes(g, i, known) for i, g in enumerate(grids)]
    grid_seeds = [_seeds(g["seeds"], f"grids[{i}].seeds") if "seeds" in g else seeds for i, g in enumerate(grids)]
    axes: list[str] = []
    for grid in expanded:
        axes += [name for name, _ in grid if name not in axes]
    grid = Grid(name=name, source=path.resolve(), spec_path=spec_path, spec=spec, seeds=seeds,
                run_root=Path(run_root).resolve(), insecure=insecure, axes=tuple(axes), base=base,
                runs=_expand(base, expanded, grid_seeds, here))
    for run in grid.runs:
        schedule_for(run, plan_for(grid, run))
    return grid


def plan_for(grid: Grid, run: SweepRun, size: int | None = None) -> SwarmPlan:
    """The run's swarm plan: the grid's spec with the run's seed, size and overrides."""
    spec = copy.deepcopy(grid.spec)
    if isinstance(spec.get("swarm") or {}, dict):  # anything else: plan_from_dict names the problem
        spec["swarm"] = {**(spec.get("swarm") or {}), "seed": run.seed}
    try:
        return plan_from_dict(spec, size=size if size is not None else run.size,
                              base_dir=grid.spec_path.parent, source=str(grid.spec_path),
                              overrides=run.set_args())
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


def check_runs(grid: Grid, runs: list[SweepRun], hosts: str | Path | None = None
               ) -> dict[str, tuple[SwarmPlan, FaultSchedule | None]]:
    """Resolve every run's plan and schedule for where it will run; raises SpecError before anything starts.

    On this host every data directory must exist here; with a hosts inventory every run must plan
    as many peers as the inventory hosts (``swarm.size`` may be left to it), and a fault schedule
    needs hosts whose peers' run directories are on this machine (local / netns)."""
    inventory = None
    if hosts is not None:
        from launcher.hosts import load_inventory

        inventory = load_inventory(hosts)
    out = {}
    for run in runs:
        size = None
        if inventory is not None:
            if run.size is not None and run.size != inventory.total_peers:
                raise SpecError(f"run {run.name}: swarm.size is {run.size} but the hosts inventory "
                                f"hosts {inventory.total_peers} peers")
            remote = [h.address for h in inventory.hosts if h.transport not in ("local",)
                      and not h.transport.startswith("netns:")]
            if run.faults is not None and remote:
                raise SpecError(f"run {run.name}: swarm.faults needs every peer's run directory on this "
                                f"machine; the ssh hosts {', '.join(remote)} cannot take a fault schedule")
            size = inventory.total_peers
        plan = plan_for(grid, run, size=size)
        if inventory is None:
            check_local_data(plan)
        out[run.name] = (plan, schedule_for(run, plan))
    return out


# ---- run manifests ----------------------------------------------------------------------------


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over: readers never see half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def manifest_path(sweep_dir: Path, name: str) -> Path:
    return Path(sweep_dir) / "runs" / name / "run.json"


def write_manifest(sweep_dir: Path, manifest: dict) -> None:
    path = manifest_path(sweep_dir, manifest["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(manifest, indent=2, default=str) + "\n")


def _fresh_manifest(run: SweepRun, plan: SwarmPlan) -> dict:
    first = plan.peers[0].config
    return {
        "name": run.name, **run.identity(), "axes": run.axes, "aliases": list(run.aliases),
        "peers": len(plan.peers), "objective": first.objective.name, "partition": first.data.partition,
        "topology": first.gossip.topology, "steps": first.train.steps, "period": first.train.period,
        "status": "pending", "started": None, "finished": None, "wall_s": None, "exit_codes": None,
        "run_dir": None, "error": None, "attempts": [],
    }


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _manifests(grid: Grid, plans: dict[str, tuple[SwarmPlan, Any]]) -> dict[str, dict]:
    """Every run's manifest: a complete one as found (it must be the same run), any other one
    refreshed from the grid, keeping its status, swarm dir and earlier attempts."""
    out = {}
    for run in grid.runs:
        old = _read_json(manifest_path(grid.sweep_dir, run.name))
        fresh = _fresh_manifest(run, plans[run.name][0])
        if old is not None and old.get("status") == "complete":
            if not _same({k: old.get(k) for k in run.identity()}, run.identity()):
                recorded = {k: old.get(k) for k in run.identity()}
                where = manifest_path(grid.sweep_dir, run.name)
                raise SpecError(f"run {run.name}: {where} is a complete run with other settings "
                                f"({recorded}); use another sweep.name or remove that run's directory")
            out[run.name] = old
            continue
        if old is not None:
            fresh.update({k: old.get(k) for k in ("status", "started", "finished", "wall_s", "exit_codes",
                                                  "run_dir", "error")})
            fresh["attempts"] = list(old.get("attempts") or [])
        out[run.name] = fresh
    return out


# ---- running ----------------------------------------------------------------------------------


class _SignalWatch:
    """Notices SIGINT / SIGTERM delivered while someone else's Python handler is installed.

    ``run_local`` catches Ctrl-C itself (its ``SignalForwarder`` stops the swarm cleanly) and returns
    as if the swarm had ended. The interpreter writes every handled signal's number to the wakeup fd
    whoever's handler runs, so reading it afterwards tells the sweep the run was interrupted. Off the
    main thread (where the wakeup fd cannot be set) nothing is noticed.
    """

    def __init__(self) -> None:
        self.signals: set[int] = set()
        self._fds: tuple[int, int] | None = None
        self._previous = -1

    def __enter__(self) -> Self:
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        try:
            self._previous = signal.set_wakeup_fd(write)
        except ValueError:  # not the main thread
            os.close(read)
            os.close(write)
            return self
        self._fds = (read, write)
        return self

    def __exit__(self, *exc) -> None:
        if self._fds is None:
            return
        signal.set_wakeup_fd(self._previous)
        read, write = self._fds
        try:
            while chunk := os.read(read, 512):
                self.signals.update(chunk)
        except BlockingIOError:
            pass
        os.close(read)
        os.close(write)
        self._fds = None

    @property
    def interrupted(self) -> bool:
        return bool(self.signals & {signal.SIGINT, signal.SIGTERM})


def _default_runner(hosts: str | Path | None) -> Runner:
    if hosts is None:
        return lambda plan, argv, run_root, faults, insecure: run_local(
            plan, argv, run_root=run_root, faults=faults, insecure=insecure)
    from launcher.hosts import load_inventory, run_hosts

    inventory = load_inventory(hosts)
    return lambda plan, argv, run_root, faults, insecure: run_hosts(plan, inventory, argv, run_root=run_root,
                                                                    faults=faults, insecure=insecure)


def _relative(path: Path, sweep_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(sweep_dir).resolve()))
    except ValueError:
        return str(path)


def _execute(grid: Grid, run: SweepRun, plan: SwarmPlan, schedule: FaultSchedule | None, manifest: dict,
             runner: Runner, tag: str) -> tuple[bool, float | None]:
    """Run one swarm, collect it and record the outcome in ``manifest`` (written). Returns
    (interrupted, mean final kNN)."""
    sweep_dir = grid.sweep_dir
    if manifest.get("run_dir"):
        manifest["attempts"] = [*(manifest.get("attempts") or []), manifest["run_dir"]]
    manifest.update(status="running", started=_utc(), finished=None, wall_s=None, exit_codes=None,
                    run_dir=None, error=None)
    write_manifest(sweep_dir, manifest)
    print(f"dssl sweep: {tag} ...", flush=True)
    argv = ["sweep", str(grid.source), "--only", run.name]
    started = time.monotonic()
    watch, knn, error, interrupted = _SignalWatch(), None, None, False
    try:
        with watch:
            run_dir, codes = runner(plan, argv, str(sweep_dir / "runs" / run.name), schedule, grid.insecure)
        manifest.update(run_dir=_relative(run_dir.path, sweep_dir), exit_codes=codes)
        interrupted = watch.interrupted
        result = collect(run_dir)
        knn = result.knn_mean
        crashed = {peer: code for peer, code in codes.items() if code != 0}
        missing = sorted({p.peer_id for p in plan.peers} - {p.peer_id for p in result.peers})
        if interrupted:
            error = "interrupted"
        elif crashed:
            error = "exit codes " + ", ".join(f"{peer}={code}" for peer, code in sorted(crashed.items()))
        elif missing:
            error = f"no final results from {', '.join(missing)}"
    except KeyboardInterrupt:
        interrupted, error = True, "interrupted"
    except Exception as exc:  # one broken run must not end the sweep: its error is recorded instead
        log.exception("sweep run %s failed", run.name)
        error = f"{type(exc).__name__}: {exc}"
    manifest.update(status="failed" if error else "complete", error=error, finished=_utc(),
                    wall_s=round(time.monotonic() - started, 1))
    write_manifest(sweep_dir, manifest)
    return interrupted, knn


def _copy_grid(grid: Grid) -> None:
    target = grid.sweep_dir / "grid.yaml"
    if not target.exists() or not target.samefile(grid.source):
        shutil.copyfile(grid.source, target)


def run_sweep(grid: Grid, *, only: list[str] | None = None, hosts: str | Path | None = None,
              keep_going: bool = True, runner: Runner | None = None) -> int:
    """Run the grid's runs (those matching ``only``) one after another; returns the exit status:
    0 when every selected run is complete, 1 otherwise, 130 when interrupted.

    ``runner`` replaces the swarm launcher (tests); by default ``run_local``, or ``run_hosts``
    over the ``hosts`` inventory. Raises SpecError (nothing started) when a run cannot be planned."""
    selected = select(grid.runs, only)
    if not selected:
        raise SpecError(f"--only {' '.join(only or [])}: no run of the sweep matches "
                        f"({len(grid.runs)} runs, e.g. {grid.runs[0].name})")
    plans = check_runs(grid, grid.runs, hosts)
    runner = runner or _default_runner(hosts)
    sweep_dir = grid.sweep_dir
    manifests = _manifests(grid, plans)
    (sweep_dir / "runs").mkdir(parents=True, exist_ok=True)
    _copy_grid(grid)
    _write_atomic(sweep_dir / "sweep.json", json.dumps({
        "name": grid.name, "grid": str(grid.source), "spec": str(grid.spec_path), "seeds": list(grid.seeds),
        "axes": list(grid.axes), "runs": [r.name for r in grid.runs]}, indent=2) + "\n")
    for manifest in manifests.values():
        write_manifest(sweep_dir, manifest)
    results = write_results(sweep_dir)
    try:
        status = _run_all(grid, selected, plans, manifests, runner, keep_going)
    except KeyboardInterrupt:  # between two runs: nothing is running, the manifests are written
        status = 130
    results = write_results(sweep_dir)
    counts = {s: sum(1 for r in selected if manifests[r.name]["status"] == s)
              for s in ("complete", "failed", "running", "pending")}
    parts = [f"{counts['complete']} complete", f"{counts['failed']} failed"]
    parts += [f"{counts[s]} {s}" for s in ("running", "pending") if counts[s]]
    print(f"dssl sweep: {len(selected)} runs: {', '.join(parts)}; results {results}", flush=True)
    if status:
        return status
    return 0 if counts["complete"] == len(selected) else 1


def _run_all(grid: Grid, selected: list[SweepRun], plans: dict, manifests: dict[str, dict], runner: Runner,
             keep_going: bool) -> int:
    """The sweep's loop: skip complete runs, run the others; 130 when interrupted, else 0."""
    for i, run in enumerate(selected, 1):
        manifest = manifests[run.name]
        tag = f"[{i}/{len(selected)}] {run.name}"
        if manifest["status"] == "complete":
            print(f"dssl sweep: {tag} skip (complete)", flush=True)
            continue
        plan, schedule = plans[run.name]
        interrupted, knn = _execute(grid, run, plan, schedule, manifest, runner, tag)
        write_results(grid.sweep_dir)
        if interrupted:
            print(f"dssl sweep: {tag} interrupted after {manifest['wall_s']:.0f} s", flush=True)
            return 130
        if manifest["status"] == "complete":
            shown = f"{knn:.3f}" if knn is not None and math.isfinite(knn) else "-"
            print(f"dssl sweep: {tag} complete in {manifest['wall_s']:.0f} s (knn {shown})", flush=True)
        else:
            print(f"dssl sweep: {tag} failed in {manifest['wall_s']:.0f} s: {manifest['error']}", flush=True)
            if not keep_going:
                break
    return 0


def dry_run(grid: Grid, *, only: list[str] | None = None, hosts: str | Path | None = None) -> int:
    """Print the runs (name, peers, overrides, status if the sweep dir knows it) after checking them all."""
    selected = select(grid.runs, only)
    if not selected:
        raise SpecError(f"--only {' '.join(only or [])}: no run of the sweep matches")
    plans = check_runs(grid, selected, hosts)
    common = SweepRun(name="", seed=0, axes={},
                      overrides={k: v for k, v in grid.base.items() if k not in SPECIAL_KEYS})
    print(f"every run: {' '.join(common.set_args()) or '(spec as is)'}  (spec {grid.spec_path})")
    for run in selected:
        plan, _ = plans[run.name]
        own = {k: v for k, v in run.overrides.items() if k not in grid.base or grid.base[k] != v}
        shown = ' '.join(SweepRun(name="", seed=0, axes={}, overrides=own).set_args())
        known = _read_json(manifest_path(grid.sweep_dir, run.name)) or {}
        status = f"  [{known['status']}]" if known.get("status") else ""
        faults = f"  faults={run.faults}" if run.faults is not None else ""
        print(f"{run.name}  peers={len(plan.peers)}  {shown}{faults}{status}")
    print(f"dssl sweep: {len(selected)} runs of {grid.name} (dry run, nothing started); "
          f"sweep dir {grid.sweep_dir}")
    return 0


# ---- results table ----------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _run_metrics(run_path: Path) -> dict[str, Any]:
    """The numbers of a complete run: kNN over its peers (summary.json, written by collect), the
    linear probe over its peers (each peer's final.json) and the swarm diagnostics
    (diagnostics.json); keys a file lacks stay None."""
    summary = _read_json(run_path / "summary.json") or {}
    finals = [_read_json(p) or {} for p in sorted(run_path.glob("peers/*/final.json"))]
    linear = [v for v in (_finite((f.get("eval_final") or {}).get("linear")) for f in finals) if v is not None]
    diagnostics = _read_json(run_path / "diagnostics.json") or {}
    peers = summary.get("peers") or []
    knn = [v for v in (_finite(p.get("knn")) for p in peers) if v is not None]
    init = [v for v in (_finite(p.get("knn_init")) for p in peers) if v is not None]
    out: dict[str, Any] = {
        "knn_mean": statistics.fmean(knn) if knn else None,
        "knn_std": statistics.pstdev(knn) if knn else None,  # spread over this run's peers
        "knn_min": min(knn, default=None), "knn_max": max(knn, default=None),
        "knn_init_mean": statistics.fmean(init) if init else None,
        "linear_mean": statistics.fmean(linear) if linear else None,
        "consensus_distance": _finite(summary.get("consensus_distance")),
        "rounds_min": summary.get("min_rounds"),
    }
    for key in _DIAGNOSTIC_COLUMNS:
        out[key] = _finite(diagnostics.get(key))
    return out


def _row(sweep_dir: Path, manifest: dict, axes: list[str]) -> dict[str, Any]:
    labels = manifest.get("axes") or {}
    faults = manifest.get("faults")
    row: dict[str, Any] = {
        "run": manifest.get("name"), "status": manifest.get("status"), "seed": manifest.get("seed"),
        **{axis: labels.get(axis) for axis in axes},
        **{key: manifest.get(key) for key in _MANIFEST_COLUMNS},
        "faults": Path(faults).name if faults else None,
    }
    if manifest.get("status") == "complete" and manifest.get("run_dir"):
        row.update(_run_metrics(Path(sweep_dir) / manifest["run_dir"]))
    return row


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return str(value)


def result_columns(axes: list[str]) -> list[str]:
    return [*RESULT_COLUMNS_HEAD, *axes, *RESULT_COLUMNS_TAIL]


def write_results(sweep_dir: str | Path) -> Path:
    """Rewrite ``results.csv`` (atomically) from every run.json of the sweep and each complete run's
    summary.json / diagnostics.json: runs in grid order (then any others by name), axes as columns."""
    sweep_dir = Path(sweep_dir)
    order = _read_json(sweep_dir / "sweep.json") or {}
    manifests = {m["name"]: m for m in (_read_json(p) for p in sorted(sweep_dir.glob("runs/*/run.json")))
                 if m is not None and m.get("name")}
    names = [n for n in order.get("runs", []) if n in manifests]
    names += sorted(set(manifests) - set(names))
    axes = list(order.get("axes", []))
    for name in names:
        axes += [a for a in manifests[name].get("axes") or {} if a not in axes]
    columns = result_columns(axes)
    path = sweep_dir / "results.csv"
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for name in names:
            row = _row(sweep_dir, manifests[name], axes)
            writer.writerow([_cell(row.get(c)) for c in columns])
    os.replace(tmp, path)
    return path


def _parse(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in _INT_COLUMNS:
        try:
            return int(text)
        except ValueError:
            return float(text)
    if column in _FLOAT_COLUMNS:
        return float(text)
    return text


def read_results(sweep_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a sweep's ``results.csv``: numbers as int / float, empty cells as None, axis
    labels and names as strings."""
    path = Path(sweep_dir) / "results.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return [{column: _parse(column, text) for column, text in row.items()} for row in csv.DictReader(fh)]


# ---- command line -----------------------------------------------------------------------------


def sweep_main(argv: list[str]) -> int:
    """``dssl sweep GRID.yaml``: run (or with --dry-run list) the grid's swarm runs; see the module doc."""
    p = argparse.ArgumentParser(prog="dssl sweep", description="Run a grid of swarm runs one after another "
                                "(resumable) and tabulate them in <run_root>/<name>/results.csv.")
    p.add_argument("grid", type=Path, help="sweep grid YAML (see examples/sweep_tiny.yaml)")
    p.add_argument("--dry-run", action="store_true", help="check everything, list the runs, start nothing")
    p.add_argument("--only", nargs="+", action="extend", default=None, metavar="SUBSTR",
                   help="run only the runs whose name contains one of these substrings")
    p.add_argument("--hosts", type=Path, default=None,
                   help="hosts inventory: run each swarm over these hosts (as dssl swarm --hosts)")
    failure = p.add_mutually_exclusive_group()
    failure.add_argument("--keep-going", dest="keep_going", action="store_true", default=True,
                         help="after a failed run, go on with the next (default)")
    failure.add_argument("--stop-on-failure", dest="keep_going", action="store_false",
                         help="stop the sweep at the first failed run")
    args = p.parse_args(argv)
    try:
        grid = load_grid(args.grid)
        if args.dry_run:
            return dry_run(grid, only=args.only, hosts=args.hosts)
        return run_sweep(grid, only=args.only, hosts=args.hosts, keep_going=args.keep_going)
    except (SpecError, ConfigError, ScheduleError) as exc:
        print(f"dssl sweep: error: {exc}", file=sys.stderr)
        return 2
