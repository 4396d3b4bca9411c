"""Peer RSS growth with and without the malloc tuning of ``peer/allocator.py``, in one swarm.

Starts the soak's swarm (``benchmarks/soak.py``: SimSiam ``test_resnet``, sync ring, no faults)
with ``--peers`` peers, alternately with ``DSSL_MALLOC_TUNING=0`` (glibc's defaults) and ``=1``
(the tuning), so both arms share one run and one machine load. Samples each peer process's RSS every
10 s and fits a least-squares slope over its samples after ``--skip-s`` seconds; ends with::

    RESULT default_mb_per_h=<median> tuned_mb_per_h=<median> default_rss_mb=<median> tuned_rss_mb=<median>

Usage: ``.venv/bin/python benchmarks/malloc_bench.py [--peers 4] [--minutes 8] [--skip-s 120]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import soak  # noqa: E402

ARMS = {"default": {"DSSL_MALLOC_TUNING": "0"}, "tuned": {"DSSL_MALLOC_TUNING": "1"}}


def _sample(swarm, samples: dict[str, list[tuple[float, float]]]) -> None:
    for peer_id, proc in swarm.processes.items():
        if proc.alive():
            try:
                rss = psutil.Process(proc.pid).memory_info().rss
                samples.setdefault(peer_id, []).append((time.time(), rss))
            except psutil.Error:
                pass


def _fit(series: list[tuple[float, float]], skip_s: float) -> tuple[float, float] | None:
    """(slope MB/h, last RSS MB) over the samples after ``skip_s``; None when too few."""
    kept = [s for s in series if s[0] - series[0][0] >= skip_s]
    if len(kept) < 3:
        return None
    return soak.slope_mb_per_h(kept), kept[-1][1] / 2**20


def _run(args: argparse.Namespace, argv: list[str]) -> tuple[dict, dict]:
    """Run the split swarm; (RSS samples per peer, arm per peer)."""
    soak_args = soak._parser().parse_args(["--peers", str(args.peers), "--run-root", args.run_root])
    swarm = soak._swarm(soak_args, argv, "malloc-bench")
    arm_of = {peer.peer_id: list(ARMS)[i % len(ARMS)] for i, peer in enumerate(swarm.plan.peers)}
    base_env = swarm._env
    swarm._env = lambda plan: {**base_env(plan), **ARMS[arm_of[plan.peer_id]]}
    samples: dict[str, list[tuple[float, float]]] = {}
    swarm.start()
    try:
        until = time.monotonic() + args.minutes * 60.0
        while time.monotonic() < until:
            time.sleep(10.0)
            swarm.poll()
            _sample(swarm, samples)
    finally:
        swarm.stop()
    return samples, arm_of


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peers", type=int, default=4)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--skip-s", type=float, default=120.0, help="leave each peer's first N s out of the fit")
    p.add_argument("--run-root", default="runs")
    args = p.parse_args(argv)
    samples, arm_of = _run(args, argv)
    fits: dict[str, list] = {arm: [] for arm in ARMS}
    for peer_id, series in sorted(samples.items()):
        fit = _fit(series, args.skip_s)
        if fit is not None:
            fits[arm_of[peer_id]].append(fit)
            arm = arm_of[peer_id]
            print(f"malloc: {peer_id} ({arm}): {fit[0]:+.1f} MB/h, RSS {fit[1]:.0f} MB", flush=True)
    med = {arm: np.median(np.array(v), axis=0) if v else (float("nan"),) * 2 for arm, v in fits.items()}
    print(
        f"RESULT default_mb_per_h={med['default'][0]:.1f} tuned_mb_per_h={med['tuned'][0]:.1f} "
        f"default_rss_mb={med['default'][1]:.0f} tuned_rss_mb={med['tuned'][1]:.0f}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
