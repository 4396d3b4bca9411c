"""Peer RSS growth and training speed under the allocator settings of ``peer/allocator.py``, in one swarm.

Starts the soak's swarm (``benchmarks/soak.py``: SimSiam ``test_resnet``, sync ring, no faults)
with ``--peers`` peers, in turn with ``DSSL_MALLOC_TUNING=0`` (glibc's defaults), ``=1`` (fixed
thresholds) and ``=trim`` (defaults + ``malloc_trim`` once a round), so every arm shares one run
and one machine load. Samples each peer process's RSS every 10 s and fits a least-squares slope
over its samples after ``--skip-s`` seconds; reads each peer's training speed (steps per second of
its training-step time, from its round records, same window). Ends with the medians per arm::

    RESULT default_mb_per_h=<x> tuned_mb_per_h=<x> trim_mb_per_h=<x> default_rss_mb=<x> ...
           tuned_speed_ratio=<x> trim_speed_ratio=<x>

(``*_speed_ratio``: the arm's median steps/s over the default arm's.)

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

ARMS = {
    "default": {"DSSL_MALLOC_TUNING": "0"},
    "tuned": {"DSSL_MALLOC_TUNING": "1"},
    "trim": {"DSSL_MALLOC_TUNING": "trim"},
}


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


def _speed(run: Path, peer_id: str, skip_s: float) -> float | None:
    """Training steps per second of training-step time, over the peer's rounds after ``skip_s``."""
    rounds = soak.read_metrics(soak.peer_dir(run, peer_id) / soak.METRICS_FILE, kind="round")
    kept = [r for r in rounds if rounds and r["time"] - rounds[0]["time"] >= skip_s]
    seconds = sum(r["compute_seconds"] for r in kept[1:])
    return (kept[-1]["step"] - kept[0]["step"]) / seconds if len(kept) >= 3 and seconds > 0 else None


def _run(args: argparse.Namespace, argv: list[str]) -> tuple[dict, dict, Path]:
    """Run the split swarm; (RSS samples per peer, arm per peer, run directory)."""
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
    return samples, arm_of, swarm.run.path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peers", type=int, default=4)
    p.add_argument("--minutes", type=float, default=8.0)
    p.add_argument("--skip-s", type=float, default=120.0, help="leave each peer's first N s out of the fit")
    p.add_argument("--run-root", default="runs")
    args = p.parse_args(argv)
    samples, arm_of, run = _run(args, argv)
    fits: dict[str, list] = {arm: [] for arm in ARMS}
    for peer_id, series in sorted(samples.items()):
        fit, speed = _fit(series, args.skip_s), _speed(run, peer_id, args.skip_s)
        if fit is not None and speed is not None:
            arm = arm_of[peer_id]
            fits[arm].append((*fit, speed))
            print(f"malloc: {peer_id} ({arm}): {fit[0]:+.1f} MB/h, RSS {fit[1]:.0f} MB, {speed:.2f} steps/s")
    med = {arm: np.median(np.array(v), axis=0) if v else (float("nan"),) * 3 for arm, v in fits.items()}
    slopes = " ".join(f"{arm}_mb_per_h={m[0]:.1f}" for arm, m in med.items())
    sizes = " ".join(f"{arm}_rss_mb={m[1]:.0f}" for arm, m in med.items())
    base = med["default"][2]
    speeds = " ".join(f"{arm}_speed_ratio={m[2] / base:.3f}" for arm, m in med.items() if arm != "default")
    print(f"RESULT {slopes} {sizes} {speeds}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
