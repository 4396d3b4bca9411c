"""Train a swarm run's baselines: every peer alone (local-only) and one centralised model.

    dssl swarm ... --baselines        # after the swarm (dssl demo does it unless --no-baselines)
    dssl baselines RUN_DIR            # for a finished run; resumable: a finished baseline is kept

Each baseline is a ``dssl train`` process (no gossip) started from a peer's resolved config in the
run directory, so it sees the swarm's own share, seeds, batch, steps and evaluation sets:

* local-only: ``peers/<id>/config.yaml`` for the steps that peer trained in the swarm (a swarm
  stopped early or by a time budget gives its peers' baselines the same work) ->
  ``baselines/local/<id>/``;
* centralised: peer 0's config with ``data.union=true`` (the union of every peer's share, each
  capped as its peer capped it) and ``train.steps`` = the sum of the peers' steps (the swarm's
  total compute), at the swarm's fastest speed (``train.slowdown=1``) -> ``baselines/centralised/``.

As many run at once as the cores allow (each job counts its ``train.threads``, 0 counting as one),
the centralised job first: it is the longest (the swarm's total steps), so it runs beside the
local-only jobs rather than alone after them, on the cores they leave free and at least the peers'
thread count (on 2 cores a small ViT trains faster on one thread per process than on two). Each has
a deadline; one that
fails or overruns is reported and left out of the comparison, never retried silently. The jobs run
in their own sessions, so Ctrl-C, SIGTERM or SIGHUP to the launcher stops them explicitly (their
process groups are killed) before it exits; finished baselines stay for the next run. The
comparison itself (:mod:`analysis.baselines`) is written to ``baselines.json``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from analysis.baselines import (
    BASELINES_DIR,
    BASELINES_FILE,
    CENTRALISED_DIR,
    LOCAL_DIR,
    format_summary,
    result_fields,
    summarize,
)
from analysis.results import sweep_holding, write_results
from peer.atomic_file import write_json
from peer.config import ConfigError, load_config
from peer.rundir import FINAL_EVAL_FILE, FINAL_FILE, PEERS_DIR

log = logging.getLogger(__name__)
TRAIN_COMMAND = (sys.executable, "-m", "launcher.cli", "train", "--quiet")
DEFAULT_TIMEOUT_S = 3600.0  # per baseline process
NO_INIT_EVAL = "eval.at_start=false"  # the swarm already evaluated the shared random init


@dataclass
class Job:
    """One ``dssl train`` baseline: its name, config, overrides and output directory."""

    name: str
    config: Path
    overrides: list[str]
    out: Path
    threads: int

    @property
    def done(self) -> bool:
        return (self.out / FINAL_EVAL_FILE).is_file()

    def argv(self) -> list[str]:
        sets = [a for o in self.overrides for a in ("--set", o)]
        return [*TRAIN_COMMAND, "--config", str(self.config), *sets, "--run-dir", str(self.out)]


def _peer_steps(peer_dir: Path, configured: int | None) -> int:
    """The steps a peer actually trained (final.json), else its configured steps."""
    try:
        return int(json.loads((peer_dir / FINAL_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return int(configured or 0)


def plan_jobs(run_dir: Path, cores: int | None = None) -> list[Job]:
    """The centralised job, then the local-only job of every peer of ``run_dir`` (longest first)."""
    peer_dirs = sorted(p for p in (run_dir / PEERS_DIR).glob("*") if (p / "config.yaml").is_file())
    if not peer_dirs:
        raise ConfigError(f"{run_dir}: no peers/<id>/config.yaml here; is this a swarm run directory?")
    base = run_dir / BASELINES_DIR
    jobs, total_steps, threads = [], 0, 1
    for peer_dir in peer_dirs:
        cfg = load_config(peer_dir / "config.yaml")
        steps = _peer_steps(peer_dir, cfg.train.steps)
        total_steps += steps
        threads = cfg.train.threads
        same_compute = [f"train.steps={steps}", "train.time_budget_s=null"] if steps > 0 else []
        out = base / LOCAL_DIR / peer_dir.name
        jobs.append(
            Job(
                peer_dir.name, peer_dir / "config.yaml", [NO_INIT_EVAL, *same_compute], out, cfg.train.threads
            )
        )
    central = [
        "data.union=true",
        f"train.steps={total_steps}",
        "train.slowdown=1.0",
        "train.time_budget_s=null",
        NO_INIT_EVAL,
    ]
    cores = cores or os.cpu_count() or 1
    central_threads = max(threads, cores - len(jobs) * threads) if threads > 0 else 0
    return [
        Job("centralised", peer_dirs[0] / "config.yaml", central, base / CENTRALISED_DIR, central_threads),
        *jobs,
    ]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _start(job: Job) -> subprocess.Popen:
    job.out.mkdir(parents=True, exist_ok=True)
    with (job.out / "train.log").open("ab") as log_fh:
        return subprocess.Popen(
            job.argv(),
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env(job.threads),
            start_new_session=True,
        )


def _stop(popen: subprocess.Popen) -> None:
    """Stop a baseline's whole process group (it runs in its own session)."""
    if popen.poll() is None:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        popen.wait()


def _fits(job: Job, running: list[Job], cores: int) -> bool:
    """Whether ``job`` may start beside ``running`` (threads 0, all cores, counts as one)."""
    used = sum(max(1, min(j.threads, cores)) for j in running)
    return not running or used + max(1, min(job.threads, cores)) <= cores


def run_jobs(jobs: list[Job], timeout_s: float, prog: str, cores: int | None = None) -> dict[str, str]:
    """Run the unfinished ``jobs``, as many at once as ``cores`` allow; returns name -> how it ended."""
    cores = cores or os.cpu_count() or 1
    pending = [j for j in jobs if not j.done]
    ended = {j.name: "kept (already finished)" for j in jobs if j.done}
    running: dict[str, tuple[Job, subprocess.Popen, float]] = {}
    previous = _interrupt_on_termination()
    try:
        while pending or running:
            while pending and _fits(pending[0], [j for j, _, _ in running.values()], cores):
                job = pending.pop(0)
                running[job.name] = (job, _start(job), time.monotonic())
            time.sleep(0.5)
            for name, (job, popen, started) in list(running.items()):
                overdue = time.monotonic() - started > timeout_s
                if popen.poll() is None and not overdue:
                    continue
                _stop(popen)
                ended[name] = (
                    "finished"
                    if job.done
                    else (
                        f"stopped after {timeout_s:.0f} s" if overdue else f"failed (exit {popen.returncode})"
                    )
                )
                print(f"{prog}: baseline {name}: {ended[name]} ({job.out / 'train.log'})", flush=True)
                del running[name]
    finally:
        for _, popen, _ in running.values():
            _stop(popen)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ended


def _interrupt_on_termination() -> dict:
    """SIGTERM / SIGHUP raise KeyboardInterrupt (as Ctrl-C does), so the pool's cleanup runs; the
    previous handlers, to restore. Outside the main thread signals stay as they are."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    return {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}


def train_baselines(run_dir: Path, prog: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> str | None:
    """Train the missing baselines of ``run_dir``, write ``baselines.json``, print the comparison;
    returns the RESULT fields, or None when nothing could be compared (said on stderr)."""
    try:
        jobs = plan_jobs(run_dir)
    except ConfigError as exc:
        print(f"{prog}: baselines not trained: {exc}", file=sys.stderr)
        return None
    print(f"{prog}: training the baselines ({len(jobs) - 1} peers alone, 1 centralised) ...", flush=True)
    ended = run_jobs(jobs, timeout_s, prog)
    summary = summarize(run_dir)
    write_json(run_dir / BASELINES_FILE, {**summary.to_dict(), "ended": ended})
    print(format_summary(summary), flush=True)
    if summary.gain["knn"].n == 0:
        print(f"{prog}: no peer has both a swarm and a local-only result to compare", file=sys.stderr)
        return None
    return result_fields(summary)


def baselines_main(argv: list[str]) -> int:
    """``dssl baselines RUN_DIR``: train (or finish) a finished swarm run's baselines and compare."""
    import argparse

    p = argparse.ArgumentParser(
        prog="dssl baselines",
        description="Train each peer of a swarm run alone (local-only) and one centralised model on "
        "the union of their shares, then compare them with the swarm (writes RUN_DIR/baselines.json).",
    )
    p.add_argument("run_dir", type=Path, help="a finished swarm run directory")
    p.add_argument("--timeout-s", type=float, default=DEFAULT_TIMEOUT_S, help="deadline per baseline")
    args = p.parse_args(argv)
    if not args.run_dir.is_dir():
        print(f"dssl baselines: error: {args.run_dir} is not a directory", file=sys.stderr)
        return 2
    fields = train_baselines(args.run_dir, "dssl baselines", args.timeout_s)
    sweep_dir = sweep_holding(args.run_dir)
    if sweep_dir is not None:  # a sweep's run: its results.csv (and so dssl report) gains the baselines
        print(f"dssl baselines: rewrote {write_results(sweep_dir)}", flush=True)
    if fields is None:
        return 1
    print(f"RESULT {fields} run_dir={args.run_dir}")
    return 0
