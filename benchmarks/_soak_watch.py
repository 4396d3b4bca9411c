"""The soak's watch on its peers: RSS and CPU samples per process incarnation, RSS slopes, and
the CPU restarted incarnations spent before their first round (``benchmarks/soak.py``)."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import psutil

from launcher.processes import SwarmProcesses


def group_usage(pid: int) -> tuple[int, float]:
    """(RSS in bytes, CPU seconds used so far) of a peer process and its children (hivemind's p2pd)."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        return sum(p.memory_info().rss for p in procs), sum(sum(p.cpu_times()[:2]) for p in procs)
    except psutil.Error:
        return 0, 0.0


def slope_mb_per_h(samples: list[tuple[float, int]]) -> float:
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples]) / 2**20
    return float(np.polyfit(t - t[0], rss, 1)[0] * 3600.0)


class Watch:
    """Per-peer RSS and CPU samples, one series per process incarnation."""

    def __init__(self, ids: list[str]):
        self.ids = ids
        self.rss: dict[tuple[str, int], list[tuple[float, int]]] = defaultdict(list)
        self.cpu: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
        self.started: set[tuple[str, int]] = set()  # incarnations alive at the first sample

    def sample(self, swarm: SwarmProcesses) -> None:
        first = not self.cpu
        for peer_id in self.ids:
            proc = swarm.processes.get(peer_id)
            if proc is not None and proc.alive():
                now, key, (rss, cpu) = time.time(), (peer_id, proc.pid), group_usage(proc.pid)
                self.rss[key].append((now, rss))
                self.cpu[key].append((now, cpu))
                if first:
                    self.started.add(key)

    def startup_cpu_share(self, first_round: dict[tuple[str, int], float]) -> float:
        """The share of the peers' CPU over the window spent by restarted incarnations before their
        first round (``first_round``: unix time per incarnation): interpreter start, imports, data,
        DHT join, checkpoint load. On a shared host that CPU is taken from the other peers'
        training, which a restart on its own host would not do. A lower bound (5 s sampling)."""
        total = startup = 0.0
        for key, samples in self.cpu.items():
            total += samples[-1][1] - (samples[0][1] if key in self.started else 0.0)
            if key not in self.started and key in first_round:
                startup += max((c for t, c in samples if t <= first_round[key]), default=0.0)
        return startup / total if total > 0 else float("nan")

    def slopes(
        self, min_fit_s: float, since: float = 0.0, peer_id: str | None = None, warmup_s: float = 0.0
    ) -> list[float]:
        """RSS slopes (MB/h) of the incarnations (of ``peer_id``, or of every peer), fitted on their
        samples taken after ``since`` (unix time) and after their first ``warmup_s`` seconds (a new
        process allocates its model, optimizer and DHT state for minutes), when those span at least
        ``min_fit_s``."""
        fits = []
        for (p_id, _), samples in self.rss.items():
            window = [s for s in samples if s[0] >= max(since, samples[0][0] + warmup_s)]
            if (
                (peer_id is None or p_id == peer_id)
                and len(window) >= 3
                and window[-1][0] - window[0][0] >= min_fit_s
            ):
                fits.append(slope_mb_per_h(window))
        return fits
