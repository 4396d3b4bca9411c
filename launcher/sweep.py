"""``dssl sweep GRID.yaml``: expand a grid of swarm runs, run them one after another, tabulate them.

The grid file format and its expansion into runs are :mod:`launcher.grid`.

Sweep directory::

    <run_root>/<name>/
      grid.yaml                     the grid file as given
      sweep.json                    axis and run order of the grid last run
      results.csv                   one row per run (analysis.results), rewritten after every run
      runs/<run name>/run.json      the run's manifest: status pending|running|complete|failed|interrupted
      runs/<run name>/<ts>-<swarm>/ the swarm run directory of each attempt (launcher.swarm)

Everything (every run's plan, data directory and fault schedule) is checked before the first run
starts. A run is complete when every peer exited 0 and every peer left its final results; complete
runs are skipped when the sweep is started again, running (crashed), failed
and interrupted (Ctrl-C) ones are re-run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from analysis.collect import collect
from analysis.results import read_json, write_results
from launcher.fault_schedule import FaultSchedule, ScheduleError
from launcher.follow_ups import follow_ups, missing_follow_ups
from launcher.grid import (
    SPECIAL_KEYS,
    Grid,
    SweepRun,
    load_grid,
    plan_for,
    schedule_for,
    select,
)
from launcher.hosts import load_inventory
from launcher.signal_watch import INTERRUPTED_EXIT, SignalWatch
from launcher.spec import SpecError, SwarmPlan
from launcher.swarm import check_local_data, run_swarm
from peer.atomic_file import write_json
from peer.config import ConfigError
from peer.rundir import GRID_FILE, RUN_MANIFEST_FILE, SWEEP_FILE, SWEEP_RUNS_DIR, RunDir

log = logging.getLogger(__name__)

# (plan, argv, run_root, faults, insecure) -> (run directory, exit code per peer); default run_swarm
Runner = Callable[
    [SwarmPlan, list, str, "FaultSchedule | None", bool], "tuple[RunDir, dict[str, int | None]]"
]


def check_runs(
    grid: Grid, runs: list[SweepRun], hosts: str | Path | None = None
) -> dict[str, tuple[SwarmPlan, FaultSchedule | None]]:
    """Resolve every run's plan and schedule for where it will run; raises SpecError before anything starts.

    On this host every data directory must exist here; with a hosts inventory every run must plan
    as many peers as the inventory hosts (``swarm.size`` may be left to it), and a fault schedule
    needs hosts whose peers' run directories are on this machine (local / netns)."""
    inventory = None
    if hosts is not None:
        inventory = load_inventory(hosts)
    out = {}
    for run in runs:
        size = None
        if inventory is not None:
            if run.size is not None and run.size != inventory.total_peers:
                raise SpecError(
                    f"run {run.name}: swarm.size is {run.size} but the hosts inventory "
                    f"hosts {inventory.total_peers} peers"
                )
            remote = [
                h.address
                for h in inventory.hosts
                if h.transport not in ("local",) and not h.transport.startswith("netns:")
            ]
            if run.faults is not None and remote:
                raise SpecError(
                    f"run {run.name}: swarm.faults needs every peer's run directory on this "
                    f"machine; the ssh hosts {', '.join(remote)} cannot take a fault schedule"
                )
            size = inventory.total_peers
        plan = plan_for(grid, run, size=size)
        if inventory is None:
            check_local_data(plan)
        out[run.name] = (plan, schedule_for(run, plan))
    return out


# ---- run manifests ----------------------------------------------------------------------------


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def manifest_path(sweep_dir: Path, name: str) -> Path:
    return Path(sweep_dir) / SWEEP_RUNS_DIR / name / RUN_MANIFEST_FILE


def write_manifest(sweep_dir: Path, manifest: dict) -> None:
    write_json(manifest_path(sweep_dir, manifest["name"]), manifest)


def _fresh_manifest(run: SweepRun, plan: SwarmPlan) -> dict:
    first = plan.peers[0].config
    return {
        "name": run.name,
        **run.identity(),
        "axes": run.axes,
        "aliases": list(run.aliases),
        "peers": len(plan.peers),
        "objective": first.objective.name,
        "partition": first.data.partition,
        "topology": first.gossip.topology,
        "steps": first.train.steps,
        "period": first.train.period,
        "status": "pending",
        "started": None,
        "finished": None,
        "wall_s": None,
        "exit_codes": None,
        "run_dir": None,
        "error": None,
        "attempts": [],
    }


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _manifests(grid: Grid, plans: dict[str, tuple[SwarmPlan, Any]]) -> dict[str, dict]:
    """Every run's manifest: a complete one as found (it must be the same run), any other one
    refreshed from the grid, keeping its status, swarm dir and earlier attempts."""
    out = {}
    for run in grid.runs:
        old = read_json(manifest_path(grid.sweep_dir, run.name))
        fresh = _fresh_manifest(run, plans[run.name][0])
        if old is not None and old.get("status") == "complete":
            if not _same({k: old.get(k) for k in run.identity()}, run.identity()):
                recorded = {k: old.get(k) for k in run.identity()}
                where = manifest_path(grid.sweep_dir, run.name)
                raise SpecError(
                    f"run {run.name}: {where} is a complete run with other settings "
                    f"({recorded}); use another sweep.name or remove that run's directory"
                )
            out[run.name] = old
            continue
        if old is not None:
            fresh.update(
                {
                    k: old.get(k)
                    for k in ("status", "started", "finished", "wall_s", "exit_codes", "run_dir", "error")
                }
            )
            fresh["attempts"] = list(old.get("attempts") or [])
        out[run.name] = fresh
    return out


# ---- running ----------------------------------------------------------------------------------


def _default_runner(hosts: str | Path | None) -> Runner:
    inventory = load_inventory(hosts) if hosts is not None else None
    return lambda plan, argv, run_root, faults, insecure: run_swarm(
        plan, argv, inventory=inventory, run_root=run_root, faults=faults, insecure=insecure
    )


def _relative(path: Path, sweep_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(sweep_dir).resolve()))
    except ValueError:
        return str(path)


def _start_attempt(sweep_dir: Path, manifest: dict) -> None:
    """Mark the run running (an earlier attempt's swarm dir goes to ``attempts``) and write it."""
    if manifest.get("run_dir"):
        manifest["attempts"] = [*(manifest.get("attempts") or []), manifest["run_dir"]]
    manifest.update(
        status="running",
        started=_utc(),
        finished=None,
        wall_s=None,
        exit_codes=None,
        run_dir=None,
        error=None,
    )
    write_manifest(sweep_dir, manifest)


def _outcome(plan: SwarmPlan, codes: dict[str, int | None], result, interrupted: bool) -> str | None:
    """Why a finished swarm run is not complete (None when it is)."""
    crashed = {peer: code for peer, code in codes.items() if code != 0}
    missing = sorted({p.peer_id for p in plan.peers} - {p.peer_id for p in result.peers})
    if interrupted:
        return "interrupted"
    if crashed:
        return "exit codes " + ", ".join(f"{peer}={code}" for peer, code in sorted(crashed.items()))
    if missing:
        return f"no final results from {', '.join(missing)}"
    return None


def _execute(
    grid: Grid,
    run: SweepRun,
    plan: SwarmPlan,
    schedule: FaultSchedule | None,
    manifest: dict,
    runner: Runner,
    tag: str,
) -> tuple[bool, float | None]:
    """Run one swarm, collect it and record the outcome in ``manifest`` (written). Returns
    (interrupted, mean final kNN)."""
    sweep_dir = grid.sweep_dir
    _start_attempt(sweep_dir, manifest)
    print(f"dssl sweep: {tag} ...", flush=True)
    argv = ["sweep", str(grid.source), "--only", run.name]
    started = time.monotonic()
    watch, knn, error, interrupted = SignalWatch(), None, None, False
    try:
        with watch:
            run_root = str(sweep_dir / SWEEP_RUNS_DIR / run.name)
            run_dir, codes = runner(plan, argv, run_root, schedule, grid.insecure)
        manifest.update(run_dir=_relative(run_dir.path, sweep_dir), exit_codes=codes)
        interrupted = watch.interrupted
        result = collect(run_dir.path)
        knn = result.knn_mean
        error = _outcome(plan, codes, result, interrupted)
        if error is None:
            manifest["follow_ups"] = follow_ups(run_dir.path, grid.consensus, grid.baselines, "dssl sweep")
    except KeyboardInterrupt:
        interrupted, error = True, "interrupted"
    except Exception as exc:  # one broken run must not end the sweep: its error is recorded instead
        log.exception("sweep run %s failed", run.name)
        error = f"{type(exc).__name__}: {exc}"
    wall_s = round(time.monotonic() - started, 1)
    status = "interrupted" if interrupted else "failed" if error else "complete"
    manifest.update(status=status, error=error, finished=_utc(), wall_s=wall_s)
    write_manifest(sweep_dir, manifest)
    return interrupted, knn


def _finish_follow_ups(grid: Grid, manifest: dict, tag: str) -> None:
    """A complete run from an earlier sweep whose θ̄ / baselines are missing: do them now."""
    run_path = grid.sweep_dir / manifest["run_dir"]
    if missing_follow_ups(run_path, grid.consensus, grid.baselines):
        print(f"dssl sweep: {tag} complete; finishing its consensus model / baselines", flush=True)
        manifest["follow_ups"] = follow_ups(run_path, grid.consensus, grid.baselines, "dssl sweep")
        write_manifest(grid.sweep_dir, manifest)


def _copy_grid(grid: Grid) -> None:
    target = grid.sweep_dir / GRID_FILE
    if not target.exists() or not target.samefile(grid.source):
        shutil.copyfile(grid.source, target)


def run_sweep(
    grid: Grid,
    *,
    only: list[str] | None = None,
    hosts: str | Path | None = None,
    keep_going: bool = True,
    runner: Runner | None = None,
) -> int:
    """Run the grid's runs (those matching ``only``) one after another; returns the exit status:
    0 when every selected run is complete, 1 otherwise, 130 when interrupted.

    ``runner`` replaces the swarm launcher (tests); by default ``run_swarm`` (on this host, or over
    the ``hosts`` inventory). Raises SpecError (nothing started) when a run cannot be planned."""
    selected = select(grid.runs, only)
    if not selected:
        raise SpecError(
            f"--only {' '.join(only or [])}: no run of the sweep matches "
            f"({len(grid.runs)} runs, e.g. {grid.runs[0].name})"
        )
    plans = check_runs(grid, grid.runs, hosts)
    runner = runner or _default_runner(hosts)
    manifests = _manifests(grid, plans)
    _prepare_sweep_dir(grid, manifests)
    try:
        status = _run_all(grid, selected, plans, manifests, runner, keep_going)
    except KeyboardInterrupt:  # between two runs: nothing is running, the manifests are written
        status = INTERRUPTED_EXIT
    results = write_results(grid.sweep_dir)
    counts = {
        s: sum(1 for r in selected if manifests[r.name]["status"] == s)
        for s in ("complete", "failed", "interrupted", "running", "pending")
    }
    short = sum(1 for r in selected if manifests[r.name].get("follow_ups"))  # θ̄ / baselines missing
    parts = [f"{counts['complete']} complete", f"{counts['failed']} failed"]
    parts += [f"{counts[s]} {s}" for s in ("interrupted", "running", "pending") if counts[s]]
    parts += [f"{short} without their consensus model / baselines"] if short else []
    print(f"dssl sweep: {len(selected)} runs: {', '.join(parts)}; results {results}", flush=True)
    if status:
        return status
    return 0 if counts["complete"] == len(selected) and not short else 1


def _prepare_sweep_dir(grid: Grid, manifests: dict[str, dict]) -> None:
    """Write the grid copy, sweep.json (axis and run order), every run's manifest and results.csv."""
    sweep_dir = grid.sweep_dir
    (sweep_dir / SWEEP_RUNS_DIR).mkdir(parents=True, exist_ok=True)
    _copy_grid(grid)
    order = {
        "name": grid.name,
        "grid": str(grid.source),
        "spec": str(grid.spec_path),
        "seeds": list(grid.seeds),
        "axes": list(grid.axes),
        "runs": [r.name for r in grid.runs],
    }
    write_json(sweep_dir / SWEEP_FILE, order)
    for manifest in manifests.values():
        write_manifest(sweep_dir, manifest)
    write_results(sweep_dir)


def _run_all(
    grid: Grid,
    selected: list[SweepRun],
    plans: dict,
    manifests: dict[str, dict],
    runner: Runner,
    keep_going: bool,
) -> int:
    """The sweep's loop: skip complete runs, run the others; 130 when interrupted, else 0."""
    for i, run in enumerate(selected, 1):
        manifest = manifests[run.name]
        tag = f"[{i}/{len(selected)}] {run.name}"
        if manifest["status"] == "complete":
            print(f"dssl sweep: {tag} skip (complete)", flush=True)
            _finish_follow_ups(grid, manifest, tag)
            continue
        plan, schedule = plans[run.name]
        interrupted, knn = _execute(grid, run, plan, schedule, manifest, runner, tag)
        write_results(grid.sweep_dir)
        if interrupted:
            print(f"dssl sweep: {tag} interrupted after {manifest['wall_s']:.0f} s", flush=True)
            return INTERRUPTED_EXIT
        if manifest["status"] == "complete":
            shown = f"{knn:.3f}" if knn is not None and math.isfinite(knn) else "-"
            missing = "; " + ", ".join(manifest["follow_ups"]) if manifest.get("follow_ups") else ""
            wall = manifest["wall_s"]
            print(f"dssl sweep: {tag} complete in {wall:.0f} s (knn {shown}){missing}", flush=True)
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
    common = SweepRun(
        name="", seed=0, axes={}, overrides={k: v for k, v in grid.base.items() if k not in SPECIAL_KEYS}
    )
    print(f"every run: {' '.join(common.set_args()) or '(spec as is)'}  (spec {grid.spec_path})")
    for run in selected:
        plan, _ = plans[run.name]
        own = {k: v for k, v in run.overrides.items() if k not in grid.base or grid.base[k] != v}
        shown = " ".join(SweepRun(name="", seed=0, axes={}, overrides=own).set_args())
        known = read_json(manifest_path(grid.sweep_dir, run.name)) or {}
        status = f"  [{known['status']}]" if known.get("status") else ""
        faults = f"  faults={run.faults}" if run.faults is not None else ""
        print(f"{run.name}  peers={len(plan.peers)}  {shown}{faults}{status}")
    print(
        f"dssl sweep: {len(selected)} runs of {grid.name} (dry run, nothing started); "
        f"sweep dir {grid.sweep_dir}"
    )
    return 0


# ---- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dssl sweep",
        description="Run a grid of swarm runs one after another "
        "(resumable) and tabulate them in <run_root>/<name>/results.csv.",
    )
    p.add_argument("grid", type=Path, help="sweep grid YAML (see examples/sweep_tiny.yaml)")
    p.add_argument("--dry-run", action="store_true", help="check everything, list the runs, start nothing")
    p.add_argument(
        "--only",
        nargs="+",
        action="extend",
        default=None,
        metavar="SUBSTR",
        help="run only the runs whose name contains one of these substrings",
    )
    p.add_argument(
        "--hosts",
        type=Path,
        default=None,
        help="hosts inventory: run each swarm over these hosts (as dssl swarm --hosts)",
    )
    failure = p.add_mutually_exclusive_group()
    failure.add_argument(
        "--keep-going",
        dest="keep_going",
        action="store_true",
        default=True,
        help="after a failed run, go on with the next (default)",
    )
    failure.add_argument(
        "--stop-on-failure",
        dest="keep_going",
        action="store_false",
        help="stop the sweep at the first failed run",
    )
    return p


def sweep_main(argv: list[str]) -> int:
    """``dssl sweep GRID.yaml``: run (or with --dry-run list) the grid's swarm runs; see the module doc."""
    args = _parser().parse_args(argv)
    try:
        grid = load_grid(args.grid)
        if args.dry_run:
            return dry_run(grid, only=args.only, hosts=args.hosts)
        return run_sweep(grid, only=args.only, hosts=args.hosts, keep_going=args.keep_going)
    except (SpecError, ConfigError, ScheduleError) as exc:
        print(f"dssl sweep: error: {exc}", file=sys.stderr)
        return 2
