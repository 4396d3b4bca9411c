"""``dssl sweep GRID.yaml``: expand a grid of swarm runs, run them one after another, tabulate them.

The grid file format and its expansion into runs are :mod:`launcher.grid`.

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
import csv
import json
import logging
import math
import os
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from launcher.collect import collect
from launcher.faults import FaultSchedule, ScheduleError
from launcher.grid import (
    RESULT_COLUMNS_HEAD,
    RESULT_COLUMNS_TAIL,
    SPECIAL_KEYS,
    Grid,
    SweepRun,
    load_grid,
    plan_for,
    schedule_for,
    select,
)
from launcher.rundir import RunDir
from launcher.spec import SpecError, SwarmPlan
from launcher.swarm import check_local_data, run_local
from peer.config import ConfigError

log = logging.getLogger(__name__)

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
