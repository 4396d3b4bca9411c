"""Soak: a real local swarm under a seeded random churn schedule for M minutes.

Starts ``--peers`` real ``dssl peer`` processes (timm ``test_resnet`` SimSiam on a Fashion-MNIST
subset, sync gossip on a ring), applies :func:`launcher.fault_schedule.generate_schedule` (kill + restart,
SIGSTOP/SIGCONT, ×k slow-down, pull drops, partitions — one fault at a time) through the
launcher's :class:`~launcher.fault_runner.FaultRunner`, samples every peer's RSS (its process group) every
``--sample-s`` seconds, then reads the peers' ``metrics.jsonl``. It reports rounds completed, pulls
failed / refused, the longest round vs the deadline and the RSS slope per peer, and ends with::

    RESULT hangs=<n> partial_states=<n> ... max_round_over_deadline=<x> rss_slope_mb_per_h=<x> ...

* hangs: rounds whose pull phase exceeded deadline + ``--grace-s``, rounds that failed or timed
  out ("mix timeout"), plus stalls — two consecutive rounds of one process incarnation more than
  ``--stall-s`` seconds apart with no fault on that peer in between (read from the metrics and the
  timeline after the run, so a restart from an older checkpoint is no stall).
* restart_to_round_s_max: the longest time from a restart to the new process's first round.
* partial_states: rounds whose logged realised mixing row is not a complete mix over exactly the
  neighbours that answered (W_ii + Σ W_ij ≠ 1, an answering neighbour with weight 0, or a
  non-answering one with weight ≠ 0). The gossip core writes a mix into a fresh buffer only after
  every pull ended, so the row is what was applied; the exact buffer-level check (known constant
  parameters) is tests/launcher/test_survival.py.
* max_round_over_deadline: the longest round (pulls + mix) divided by its pull deadline (under
  ``--adaptive``, the largest of its neighbours' adaptive deadlines).
* rounds_past_deadline: rounds whose pulls took longer than their pull deadline (no grace).
* rejoin_rounds_max: after each restart, the rounds the restarted incarnation logged up to and
  including its first round in which a neighbour answered (1 = it mixed in its first round back);
  rejoin_failed: restarts whose incarnation never had such a round (e.g. it could not join).
* throughput_ratio (with ``--baseline``): images trained per second over the run (each peer's last
  step x its batch), divided by the same for a fault-free run of the same swarm and length that
  runs first in the same invocation. Peers checkpoint every gossip round (``checkpoint_every`` =
  ``period``), so a kill loses at most one round of steps.
* restart_cpu_share: the share of the peers' CPU over the churn window that restarted processes spent
  before their first round (imports, data, DHT join, checkpoint): on one shared host it is taken from
  the others' training (``throughput_ratio / (1 - restart_cpu_share)`` leaves it out).
* rss_slope_mb_per_h: the largest least-squares RSS slope of any process incarnation (a peer and
  its children), fitted over the last ``--fit-last-min`` minutes, leaving out each incarnation's
  first ``--warmup-s`` seconds, and only incarnations with ``--min-fit-s`` seconds of samples left
  (each incarnation of a restarted peer is fitted on its own); rss_slope_median and rss_fits: the
  median and the number of those fits; baseline_rss_slope_mb_per_h: the same maximum in the
  fault-free run, where every process lives the whole run.
* rss_swarm_slope, rss_swarm_passes: the slope of the swarm's mean per-peer RSS (every peer's
  process group, summed, over the peers) over the last ``--fit-last-min`` minutes, from the sampling
  passes that found every peer alive. Under churn this is what churn does to memory: buffers,
  channels or records that survivors keep for peers that died would raise it. A leak inside every
  process cannot show there (kills reset it); it shows in the fault-free run, whose processes live
  the whole run (baseline_rss_slope_mb_per_h, baseline_rss_swarm_slope).
* rss_slope_pooled, rss_slope_pooled_ci, rss_pooled_windows: one RSS slope shared by every
  incarnation with ``--pool-min-s`` seconds of samples in the same window (each with its own level;
  ``benchmarks._soak_watch.pooled_slope``), its 95 % CI and how many incarnations it pools. Under
  churn few processes live 20 minutes, and a slope fitted on a few minutes of one process is mostly
  noise (a 3 MB jitter over 3 minutes reads as ±35 MB/h); the pooled slope uses all of them.
  baseline_rss_slope_pooled: the same in the fault-free run. The samples are kept in the run
  directory (``rss.jsonl``), so ``--report-only`` re-fits them.

Peers run with the allocator setting ``--malloc`` of ``peer/allocator.py`` (``tuned``: fixed
thresholds; ``trim``: glibc's defaults + ``malloc_trim`` once a round; ``default``: glibc's own).
The churn and the measured window start once every peer has logged its first round
(``--train-timeout-s``). Churn: by default a mixed seeded schedule (kill/restart, stop, slow,
drop, partition); with ``--kill-every-s N`` one random peer is killed (SIGKILL) every N seconds
and restarted from its checkpoint ``--restart-after-s`` later. ``--slow-peer K`` makes peer p1 K
times slower.

Usage::

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--peers 4] [--seed 0] [--run-root runs]
    .venv/bin/python benchmarks/soak.py --peers 16 --minutes 30 --kill-every-s 30 --slow-peer 3 --baseline
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.timeline import read_timeline  # noqa: E402
from benchmarks._soak_watch import SAMPLES_FILE, Watch, rss_fields, rss_totals  # noqa: E402
from launcher.fault_control import with_fault_injection  # noqa: E402
from launcher.fault_runner import FaultRunner  # noqa: E402
from launcher.fault_schedule import FaultSchedule, generate_schedule, kill_schedule  # noqa: E402
from launcher.processes import SwarmProcesses  # noqa: E402
from launcher.run_setup import create_run_dir, write_manifest, write_peer_configs  # noqa: E402
from launcher.spec import plan_from_dict  # noqa: E402
from launcher.zygote_client import Zygote  # noqa: E402
from peer.allocator import ENABLE_ENV, TRIM_MODE  # noqa: E402
from peer.metrics import read_metrics  # noqa: E402
from peer.rundir import METRICS_FILE, TIMELINE_FILE, peer_dir  # noqa: E402

MALLOC_MODES = {"default": "0", "tuned": "1", "trim": TRIM_MODE}  # --malloc -> DSSL_MALLOC_TUNING

BASE = {
    "name": "soak",
    "data": {"dataset": "fashion-mnist", "partition": "dirichlet:0.5", "train_limit": 512, "test_limit": 100},
    "objective": {
        "name": "simsiam",
        "backbone": "test_resnet",
        "proj_hidden_dim": 32,
        "proj_dim": 32,
        "pred_dim": 8,
    },
    "train": {"batch_size": 16, "period": 4, "log_every": 20, "time_budget_s": 1.0e6, "checkpoint_every": 4},
    "eval": {"bank_limit": 200, "linear_epochs": 1, "own_distribution": False, "at_start": False},
    "gossip": {"mode": "sync", "topology": "ring", "deadline_s": 3.0},
}


def complete_mix(record: dict) -> bool:
    """The realised row is a full mix over exactly the neighbours that answered."""
    nbrs = record.get("neighbours") or []
    total = record["self_weight"] + sum(n["weight"] for n in nbrs)
    return (
        abs(total - 1.0) < 1e-6
        and all(n["weight"] > 0 for n in nbrs if n["answered"])
        and all(n["weight"] == 0 for n in nbrs if not n["answered"])
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long the churn runs")
    p.add_argument("--peers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0, help="seeds the churn schedule and the drop decisions")
    p.add_argument("--run-root", default="runs", help="parent of the run directory")
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS / progress sampling period")
    p.add_argument("--grace-s", type=float, default=2.0, help="pulls may overrun the deadline this much")
    p.add_argument(
        "--stall-s", type=float, default=60.0, help="no round for this long while unfaulted = a hang"
    )
    p.add_argument(
        "--min-fit-s", type=float, default=600.0, help="fit RSS only over processes sampled this long"
    )
    p.add_argument(
        "--warmup-s", type=float, default=300.0, help="leave each process's first N s out of its RSS fit"
    )
    p.add_argument("--fit-last-min", type=float, default=20.0, help="fit RSS over the last N minutes")
    p.add_argument(
        "--pool-min-s",
        type=float,
        default=120.0,
        help="the pooled RSS slope takes every incarnation with this long of samples after its warm-up",
    )
    _swarm_options(p)
    p.add_argument(
        "--train-timeout-s", type=float, default=900.0, help="wait this long for every peer's first round"
    )
    p.add_argument(
        "--report-only", type=Path, default=None, metavar="RUN_DIR", help="re-read a finished soak run"
    )
    return p


def _swarm_options(p: argparse.ArgumentParser) -> None:
    """The options that shape the swarm and its churn."""
    p.add_argument(
        "--kill-every-s", type=float, default=0.0, help="kill a random peer this often (0: mixed churn)"
    )
    p.add_argument("--restart-after-s", type=float, default=2.0, help="a killed peer restarts after this")
    p.add_argument("--slow-peer", type=float, default=1.0, help="peer p1 is this many times slower")
    p.add_argument("--deadline-s", type=float, default=3.0, help="the pull deadline of every round")
    p.add_argument(
        "--adaptive",
        action="store_true",
        help="gossip.deadline_s: auto (a deadline per neighbour from its pull times; --deadline-s: the cap)",
    )
    p.add_argument("--baseline", action="store_true", help="first run the same swarm without faults")
    p.add_argument(
        "--zygote",
        action="store_true",
        help="fork the peers from one process that imported their stack once (launcher.zygote)",
    )
    p.add_argument(
        "--malloc",
        choices=sorted(MALLOC_MODES),
        default="tuned",
        help="the peers' allocator setting (peer/allocator.py): glibc's defaults, fixed thresholds, "
        "or defaults + malloc_trim once a round",
    )


def _swarm(args: argparse.Namespace, argv: list[str], name: str, zygote: Zygote | None) -> SwarmProcesses:
    """The soak swarm's processes in a fresh run directory (nothing started yet)."""
    swarm = {"id": f"{name}-{args.seed}", "ready_timeout_s": 300, "stop_deadline_s": 30, "seed": args.seed}
    base = json.loads(json.dumps(BASE))
    base["gossip"]["deadline_s"] = "auto" if args.adaptive else args.deadline_s
    base["gossip"]["deadline_max_s"] = args.deadline_s  # the ceiling of adaptive deadlines
    slow = {1: {"slowdown": args.slow_peer}} if args.slow_peer > 1 and args.peers > 1 else {}
    spec = {"swarm": swarm, "base": base, "defaults": {"threads": 1}, "peers": slow}
    plan = with_fault_injection(plan_from_dict(spec, size=args.peers))  # churn includes transport faults
    run = create_run_dir(args.run_root, name)
    write_manifest(run, plan, ["soak", *argv])
    return SwarmProcesses(
        plan,
        run,
        config_paths=write_peer_configs(run, plan),
        peer_args=["--dht-ttl-s", "5", "--stop-deadline-s", "20"],
        zygote=zygote,
    )


def _events(run_dir: Path, event: str, peer_id: str | None = None) -> list[dict]:
    timeline = read_timeline(run_dir / TIMELINE_FILE)
    return [e for e in timeline if e["event"] == event and (peer_id is None or e["peer"] == peer_id)]


def _incarnations(run_dir: Path, peer_id: str) -> list[list[dict]]:
    """A peer's round records split at each time it was (re)started."""
    starts = [e["t"] for e in _events(run_dir, "spawned", peer_id)] + [float("inf")]
    records = read_metrics(peer_dir(run_dir, peer_id) / METRICS_FILE, kind="round")
    return [[r for r in records if a <= r["time"] < b] for a, b in zip(starts, starts[1:])]


def stalls(run_dir: Path, ids: list[str], stall_s: float) -> list[tuple[str, float]]:
    """Gaps of more than ``stall_s`` between two consecutive rounds of one process incarnation that
    no fault on that peer explains (a fault event inside the gap), as (peer, seconds)."""
    found = []
    for peer_id in ids:
        faults = [e["t"] for e in _events(run_dir, "fault", peer_id)]
        for records in _incarnations(run_dir, peer_id):
            times = [r["time"] for r in records]
            for a, b in zip(times, times[1:]):
                if b - a > stall_s and not any(a <= t <= b for t in faults):
                    found.append((peer_id, b - a))
    return found


def restart_latencies(run_dir: Path, ids: list[str]) -> list[float]:
    """Seconds from each restart (spawn) to the restarted incarnation's first logged round."""
    out = []
    for peer_id in ids:
        spawns = [e["t"] for e in _events(run_dir, "spawned", peer_id)]
        for spawned, records in zip(spawns[1:], _incarnations(run_dir, peer_id)[1:]):
            if records:
                out.append(records[0]["time"] - spawned)
    return out


def first_rounds(run_dir: Path, ids: list[str]) -> dict[tuple[str, int], float]:
    """Unix time of each process incarnation's first logged round, keyed by (peer, pid)."""
    out = {}
    for peer_id in ids:
        pids = [e["pid"] for e in _events(run_dir, "spawned", peer_id)]
        for pid, records in zip(pids, _incarnations(run_dir, peer_id)):
            if records:
                out[(peer_id, pid)] = records[0]["time"]
    return out


def rejoin_rounds(run_dir: Path) -> list[int | None]:
    """Per restart: the restarted incarnation's rounds up to its first round with a neighbour
    answering; None when it crashed before one (a failed rejoin, e.g. it could not join). Restarts
    killed again by the schedule, or stopped by the run's end, before such a round are left out."""
    out: list[int | None] = []
    for event in _events(run_dir, "fault"):
        if event["action"] != "restart" or not event.get("applied"):
            continue
        peer, t = event["peer"], event["t"]
        kills = [e["t"] for e in _events(run_dir, "fault", peer) if e["action"] == "kill" and e["t"] > t]
        until = min(kills, default=float("inf"))  # the schedule's next kill of this peer
        path = peer_dir(run_dir, peer) / METRICS_FILE
        after = [r for r in read_metrics(path, kind="round") if t < r["time"] < until and "error" not in r]
        first = next((i for i, r in enumerate(after) if r["answered"] > 0), None)
        if first is not None:
            out.append(first + 1)
        elif any(t < e["t"] < until for e in _events(run_dir, "crashed", peer)):
            out.append(None)
    return out


def rejoin_fields(rejoins: list[int | None]) -> str:
    """``rejoin_rounds_max=`` over the restarts that rejoined, ``rejoin_failed=`` those that did not."""
    rejoined = [r for r in rejoins if r is not None]
    return (
        f"rejoin_rounds_max={max(rejoined, default=0)} rejoin_failed={len(rejoins) - len(rejoined)} "
        f"restarts={len(rejoins)}"
    )


def round_deadline(record: dict, default: float) -> float:
    """The pull deadline a round ran under: the largest of its neighbours' (``deadline_s: auto`` gives
    each its own), else ``default`` (the fixed deadline)."""
    limits = [n["deadline_s"] for n in record.get("neighbours") or [] if n.get("deadline_s")]
    return max(limits, default=default)


def _peer_tally(records: list[dict], deadline: float, grace_s: float) -> dict[str, float]:
    """One peer's rounds: completed, over the deadline (or timed out), partial, pulls failed / refused,
    the longest round (seconds, and as a share of its own deadline)."""
    timeouts = [r for r in records if "error" in r]
    mixed = [r for r in records if "error" not in r]
    nbr = [n for r in mixed for n in r["neighbours"] if not n["answered"]]
    refused = sum(1 for n in nbr if (n.get("error") or "").startswith("refused"))
    limit = {id(r): round_deadline(r, deadline) for r in mixed}
    spans = [(r["pull_seconds"] + r["mix_seconds"], limit[id(r)]) for r in mixed]
    return {
        "completed": len(mixed),
        "timeouts": len(timeouts),
        "over": len(timeouts) + sum(1 for r in mixed if r["pull_seconds"] > limit[id(r)] + grace_s),
        "partial": sum(1 for r in mixed if not complete_mix(r)),
        "failed": len(nbr) - refused,
        "refused": refused,
        "longest": max((span for span, _ in spans), default=0.0),
        "longest_ratio": max((span / cap for span, cap in spans), default=0.0),
        "past": sum(1 for r in mixed if r["pull_seconds"] > limit[id(r)]),
    }


@dataclass
class SoakRun:
    """One measured run: its processes, samples, exit codes and measured window (unix times)."""

    swarm: SwarmProcesses
    watch: Watch
    codes: dict
    started: float
    ended: float


def _schedule(args: argparse.Namespace, ids: list[str], duration: float) -> FaultSchedule:
    if args.kill_every_s > 0:
        return kill_schedule(args.seed, ids, duration, args.kill_every_s, args.restart_after_s)
    return generate_schedule(args.seed, ids, duration)


def _wait_training(swarm: SwarmProcesses, ids: list[str], timeout_s: float) -> None:
    """Wait until every peer logged its first round: 16 peers on 2 cores need minutes between
    "ready" and training (the start barrier waits for all of them), and churn that starts earlier
    measures the start-up, not the recovery."""
    until = time.monotonic() + timeout_s
    waiting = set(ids)
    while waiting and time.monotonic() < until:
        swarm.poll()
        waiting = {p for p in waiting if not read_metrics(swarm.run.peer_dir(p) / METRICS_FILE, kind="round")}
        time.sleep(2.0)
    if waiting:
        print(f"soak: no round after {timeout_s:g} s from {sorted(waiting)}; starting anyway", flush=True)


def _run(args: argparse.Namespace, argv: list[str], name: str, faulted: bool) -> SoakRun:
    """Start the swarm (its peers forked from a zygote with ``--zygote``), apply the churn (or none),
    sample until the time is up, stop."""
    zygote = Zygote().start() if args.zygote else None
    try:
        return _run_swarm(_swarm(args, argv, name, zygote), args, name, faulted)
    finally:
        if zygote is not None:
            zygote.close()


def _run_swarm(swarm: SwarmProcesses, args: argparse.Namespace, name: str, faulted: bool) -> SoakRun:
    ids = [peer.peer_id for peer in swarm.plan.peers]
    duration = args.minutes * 60.0
    schedule = _schedule(args, ids, duration) if faulted else FaultSchedule(seed=args.seed, events=())
    (swarm.run.path / "faults.yaml").write_text(json.dumps(schedule.to_dict(), indent=1))
    print(
        f"soak: {name}: {args.peers} peers, {args.minutes:g} min, seed {args.seed}, "
        f"{len(schedule.events)} fault events, deadline {args.deadline_s:g} s; run dir {swarm.run.path}",
        flush=True,
    )
    swarm.start()
    _wait_training(swarm, ids, args.train_timeout_s)
    watch = Watch(ids, samples_path=swarm.run.path / SAMPLES_FILE)
    runner = FaultRunner(swarm, schedule).start()
    started = time.time()
    try:
        until = time.monotonic() + duration
        while time.monotonic() < until:
            time.sleep(args.sample_s)
            swarm.poll()
            watch.sample(swarm)
    finally:
        runner.close()
        ended = time.time()
        codes = swarm.stop()
    return SoakRun(swarm=swarm, watch=watch, codes=codes, started=started, ended=ended)


def images_per_s(run: SoakRun) -> float:
    """Training progress kept over the measured window: each peer's last step minus its step when
    the window opened (a restart from a checkpoint loses the steps since it), times its batch."""
    images = 0
    for peer in run.swarm.plan.peers:
        records = read_metrics(run.swarm.run.peer_dir(peer.peer_id) / METRICS_FILE, kind="train")
        before = [r["step"] for r in records if r["time"] <= run.started]
        if records:
            images += (records[-1]["step"] - (before[-1] if before else 0)) * peer.config.train.batch_size
    return images / max(run.ended - run.started, 1e-9)


def _report(run: SoakRun, args: argparse.Namespace) -> dict[str, float]:
    """Per-peer lines, then the run's totals."""
    totals: dict[str, float] = defaultdict(float)
    deadline = args.deadline_s
    since = run.ended - args.fit_last_min * 60.0
    for peer_id in run.watch.ids:
        records = read_metrics(run.swarm.run.peer_dir(peer_id) / METRICS_FILE, kind="round")
        t = _peer_tally(records, deadline, args.grace_s)
        for key in ("completed", "over", "partial", "failed", "refused", "past"):
            totals[key] += t[key]
        totals["longest"] = max(totals["longest"], t["longest"])
        totals["longest_ratio"] = max(totals["longest_ratio"], t["longest_ratio"])
        fits = run.watch.slopes(args.min_fit_s, since, peer_id, args.warmup_s)
        print(
            f"soak: {peer_id}: {t['completed']} rounds, {t['timeouts']} failed, {t['past']} past deadline, "
            f"pulls failed {t['failed']} refused {t['refused']}, longest round {t['longest']:.2f} s, "
            f"RSS slope {', '.join(f'{f:+.1f}' for f in fits) or 'n/a'} MB/h, exit {run.codes.get(peer_id)}",
            flush=True,
        )
    fired = [e["action"] for e in run.swarm.timeline.events("fault")]
    kinds = ", ".join(f"{a}={fired.count(a)}" for a in sorted(set(fired)))
    stalled = stalls(run.swarm.run.path, run.watch.ids, args.stall_s)
    for peer_id, gap in stalled:
        print(f"soak: {peer_id} logged no round for {gap:.0f} s while not faulted", flush=True)
    totals["hangs"] = totals["over"] + len(stalled)
    totals.update(
        rss_totals(
            run.watch, run.ended, args.fit_last_min * 60.0, args.min_fit_s, args.warmup_s, args.pool_min_s
        )
    )
    totals["images_per_s"] = images_per_s(run)
    print(
        f"soak: {len(fired)} faults injected ({kinds}); {totals['completed']:.0f} rounds; pulls failed "
        f"{totals['failed']:.0f}, refused {totals['refused']:.0f}; longest round {totals['longest']:.2f} s "
        f"vs deadline {deadline:g} s; {totals['images_per_s']:.1f} images/s",
        flush=True,
    )
    return totals


def report_only(run_dir: Path, args: argparse.Namespace) -> None:
    """What can be re-read from a finished run's files (RSS when its samples were saved; no baseline)."""
    ids = sorted(d.name for d in (run_dir / "peers").iterdir())
    tallies = [
        _peer_tally(
            read_metrics(peer_dir(run_dir, i) / METRICS_FILE, kind="round"), args.deadline_s, args.grace_s
        )
        for i in ids
    ]
    stalled, rejoins = stalls(run_dir, ids, args.stall_s), rejoin_rounds(run_dir)
    latencies = restart_latencies(run_dir, ids)
    print(
        f"REREAD hangs={sum(t['over'] for t in tallies) + len(stalled)} stalls={len(stalled)} "
        f"partial_states={sum(t['partial'] for t in tallies)} "
        f"rounds_past_deadline={sum(t['past'] for t in tallies)} "
        f"{rejoin_fields(rejoins)} restart_to_round_s_max={max(latencies, default=0.0):.1f}"
        f"{_reread_rss(run_dir, ids, args)}",
        flush=True,
    )


def _reread_rss(run_dir: Path, ids: list[str], args: argparse.Namespace) -> str:
    """The RSS fields from the run's saved samples (runs from before they were saved: none)."""
    path = run_dir / SAMPLES_FILE
    if not path.exists():
        return ""
    watch = Watch.load(ids, path)
    ended = max(s[-1][0] for s in watch.rss.values())
    return " " + rss_fields(
        rss_totals(watch, ended, args.fit_last_min * 60.0, args.min_fit_s, args.warmup_s, args.pool_min_s)
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    os.environ[ENABLE_ENV] = MALLOC_MODES[args.malloc]  # the peers inherit it
    if args.report_only is not None:
        report_only(args.report_only, args)
        return 0
    baseline = _report(_run(args, argv, "soak-baseline", faulted=False), args) if args.baseline else None
    churn = _run(args, argv, "soak", faulted=True)
    totals = _report(churn, args)
    rejoins = rejoin_rounds(churn.swarm.run.path)
    latencies = restart_latencies(churn.swarm.run.path, churn.watch.ids)
    ratio = totals["images_per_s"] / baseline["images_per_s"] if baseline else float("nan")
    startup_share = churn.watch.startup_cpu_share(first_rounds(churn.swarm.run.path, churn.watch.ids))
    print(
        f"RESULT hangs={totals['hangs']:.0f} partial_states={totals['partial']:.0f} "
        f"rounds_past_deadline={totals['past']:.0f} {rejoin_fields(rejoins)} "
        f"restart_to_round_s_max={max(latencies, default=0.0):.1f} "
        f"throughput_ratio={ratio:.3f} restart_cpu_share={startup_share:.3f} "
        f"max_round_over_deadline={totals['longest_ratio']:.3f} "
        f"{rss_fields(totals)} "
        f"baseline_rss_swarm_slope={baseline['swarm'] if baseline else float('nan'):.1f} "
        f"baseline_rss_slope_pooled={baseline['pooled'] if baseline else float('nan'):.1f} "
        f"baseline_rss_slope_mb_per_h={baseline['slope'] if baseline else float('nan'):.1f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
