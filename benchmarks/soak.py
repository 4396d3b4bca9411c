"""Soak: a real local swarm under a seeded random churn schedule for M minutes (issue 6 §5).

Starts ``--peers`` real ``dssl peer`` processes (timm ``test_resnet`` SimSiam on a Fashion-MNIST
subset, sync gossip on a ring), applies :func:`launcher.faults.generate_schedule` (kill + restart,
SIGSTOP/SIGCONT, ×k slow-down, pull drops, partitions — one fault at a time) through the
launcher's :class:`~launcher.faults.FaultRunner`, samples every peer's RSS (its process group) every
``--sample-s`` seconds, then reads the peers' ``metrics.jsonl``. It reports rounds completed, pulls
failed / refused, the longest round vs the deadline and the RSS slope per peer, and ends with::

    RESULT hangs=<n> partial_states=<n> max_round_over_deadline=<x> rss_slope_mb_per_h=<x>

* hangs: rounds whose pull phase exceeded deadline + ``--grace-s``, rounds the trainer gave up on
  ("mix timeout"), plus stalls — a running peer that is not under a process fault and logged no
  round for ``--stall-s`` seconds (counted once per stall).
* partial_states: rounds whose logged realised mixing row is not a complete mix over exactly the
  neighbours that answered (W_ii + Σ W_ij ≠ 1, an answering neighbour with weight 0, or a
  non-answering one with weight ≠ 0). The gossip core writes a mix into a fresh buffer only after
  every pull ended, so the row is what was applied; the exact buffer-level check (known constant
  parameters) is tests/launcher/test_survival.py.
* max_round_over_deadline: the longest pull phase of any round divided by the pull deadline.
* rss_slope_mb_per_h: the largest least-squares RSS slope of any peer process that lived at least
  ``--min-fit-s`` seconds (each incarnation of a restarted peer is fitted on its own).

Usage::

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--peers 4] [--seed 0] [--run-root runs]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from launcher.faults import FaultRunner, generate_schedule  # noqa: E402
from launcher.local import LocalSwarm  # noqa: E402
from launcher.rundir import create_run_dir, write_manifest, write_peer_configs  # noqa: E402
from launcher.spec import plan_from_dict  # noqa: E402
from peer.metrics import read_metrics  # noqa: E402

BASE = {
    "name": "soak",
    "data": {"dataset": "fashion-mnist", "partition": "dirichlet:0.5", "train_limit": 512, "test_limit": 100},
    "objective": {"name": "simsiam", "backbone": "test_resnet", "proj_hidden_dim": 32, "proj_dim": 32,
                  "pred_dim": 8},
    "train": {"batch_size": 16, "period": 4, "log_every": 20, "time_budget_s": 1.0e6, "checkpoint_every": 20},
    "eval": {"bank_limit": 200, "linear_epochs": 1, "own_distribution": False, "at_start": False},
    "gossip": {"mode": "sync", "topology": "ring", "deadline_s": 3.0},
}


def group_rss(pid: int) -> int:
    """RSS of a peer process and its children (hivemind's p2pd), in bytes."""
    try:
        proc = psutil.Process(pid)
        return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
    except psutil.Error:
        return 0


def complete_mix(record: dict) -> bool:
    """The realised row is a full mix over exactly the neighbours that answered."""
    nbrs = record.get("neighbours") or []
    total = record["self_weight"] + sum(n["weight"] for n in nbrs)
    return (abs(total - 1.0) < 1e-6 and all(n["weight"] > 0 for n in nbrs if n["answered"])
            and all(n["weight"] == 0 for n in nbrs if not n["answered"]))


def slope_mb_per_h(samples: list[tuple[float, int]]) -> float:
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples]) / 2**20
    return float(np.polyfit(t - t[0], rss, 1)[0] * 3600.0)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="how long the churn runs")
    p.add_argument("--peers", type=int, default=4)
    p.add_argument("--seed", type=int, default=0, help="seeds the churn schedule and the drop decisions")
    p.add_argument("--run-root", default="runs", help="parent of the run directory")
    p.add_argument("--sample-s", type=float, default=5.0, help="RSS / progress sampling period")
    p.add_argument("--grace-s", type=float, default=2.0, help="a round's pulls may overrun the deadline this much")
    p.add_argument("--stall-s", type=float, default=60.0, help="no round for this long while unfaulted = a hang")
    p.add_argument("--min-fit-s", type=float, default=60.0, help="fit RSS only over processes living this long")
    args = p.parse_args(argv)

    plan = plan_from_dict({"swarm": {"id": f"soak-{args.seed}", "ready_timeout_s": 180, "stop_deadline_s": 30,
                                     "seed": args.seed}, "base": BASE, "defaults": {"threads": 1}},
                          size=args.peers)
    run = create_run_dir(args.run_root, "soak")
    write_manifest(run, plan, ["soak", *argv])
    swarm = LocalSwarm(plan, run, config_paths=write_peer_configs(run, plan),
                       peer_args=["--dht-ttl-s", "5", "--stop-deadline-s", "20"])
    ids = [peer.peer_id for peer in plan.peers]
    duration = args.minutes * 60.0
    schedule = generate_schedule(args.seed, ids, duration)
    (run.path / "faults.yaml").write_text(json.dumps(schedule.to_dict(), indent=1))
    deadline = plan.peers[0].config.gossip.deadline_s
    print(f"soak: {args.peers} peers, {args.minutes:g} min, seed {args.seed}, {len(schedule.events)} scheduled "
          f"fault events, deadline {deadline:g} s; run dir {run.path}", flush=True)

    rss: dict[tuple[str, int], list[tuple[float, int]]] = defaultdict(list)
    stalls = 0
    swarm.start()
    runner = FaultRunner(swarm, schedule).start()
    try:
        last_round = {i: -1 for i in ids}
        progress_at = {i: time.monotonic() for i in ids}
        stalled: set[str] = set()
        until = time.monotonic() + duration
        while time.monotonic() < until:
            time.sleep(args.sample_s)
            swarm.poll()
            now = time.monotonic()
            rounds_now = runner.rounds.poll()
            for peer_id in ids:
                proc = swarm.processes.get(peer_id)
                if proc is not None and proc.alive():
                    rss[(peer_id, proc.pid)].append((time.time(), group_rss(proc.pid)))
                if rounds_now.get(peer_id, -1) > last_round[peer_id] or runner.faulted(peer_id):
                    last_round[peer_id] = rounds_now.get(peer_id, -1)
                    progress_at[peer_id] = now
                    stalled.discard(peer_id)
                elif now - progress_at[peer_id] > args.stall_s and peer_id not in stalled:
                    stalled.add(peer_id)
                    stalls += 1
                    print(f"soak: {peer_id} logged no round for {now - progress_at[peer_id]:.0f} s while not "
                          f"faulted", flush=True)
    finally:
        runner.close()
        codes = swarm.stop()

    over, partial, failed, refused, completed = 0, 0, 0, 0, 0
    longest = 0.0
    for peer_id in ids:
        records = read_metrics(run.peer_dir(peer_id) / "metrics.jsonl", kind="round")
        timeouts = [r for r in records if "error" in r]
        mixed = [r for r in records if "error" not in r]
        completed += len(mixed)
        over += len(timeouts) + sum(1 for r in mixed if r["pull_seconds"] > deadline + args.grace_s)
        partial += sum(1 for r in mixed if not complete_mix(r))
        nbr = [n for r in mixed for n in r["neighbours"] if not n["answered"]]
        peer_refused = sum(1 for n in nbr if (n.get("error") or "").startswith("refused"))
        refused += peer_refused
        failed += len(nbr) - peer_refused
        peer_longest = max((r["pull_seconds"] + r["mix_seconds"] for r in mixed), default=0.0)
        longest = max(longest, peer_longest)
        fits = [slope_mb_per_h(s) for (p_id, _), s in rss.items()
                if p_id == peer_id and len(s) >= 3 and s[-1][0] - s[0][0] >= args.min_fit_s]
        print(f"soak: {peer_id}: {len(mixed)} rounds, {len(timeouts)} mix timeouts, pulls failed {len(nbr) - peer_refused}"
              f" refused {peer_refused}, longest round {peer_longest:.2f} s, RSS slope "
              f"{', '.join(f'{f:+.1f}' for f in fits) or 'n/a'} MB/h, exit {codes.get(peer_id)}", flush=True)
    fired = [e["action"] for e in swarm.timeline.events("fault")]
    print(f"soak: {len(fired)} faults injected ({', '.join(f'{a}={fired.count(a)}' for a in sorted(set(fired)))}); "
          f"{completed} rounds completed; pulls failed {failed}, refused {refused}; longest round {longest:.2f} s "
          f"vs deadline {deadline:g} s", flush=True)
    slopes = [slope_mb_per_h(s) for s in rss.values() if len(s) >= 3 and s[-1][0] - s[0][0] >= args.min_fit_s]
    slope = max(slopes) if slopes else float("nan")
    print(f"RESULT hangs={over + stalls} partial_states={partial} max_round_over_deadline={longest / deadline:.3f} "
          f"rss_slope_mb_per_h={slope:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
