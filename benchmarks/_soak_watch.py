"""The soak's watch on its peers: RSS and CPU samples per process incarnation, RSS slopes, and
the CPU restarted incarnations spent before their first round (``benchmarks/soak.py``).

Every sample is also appended to ``rss.jsonl`` in the run directory (one line per process and
sample: peer, pid, unix time, RSS of the peer process and of its children, CPU seconds, the
sampling pass and whether it is the first), so a finished soak's memory can be re-fitted without
running it again (``soak.py --report-only``)."""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil
from scipy import stats

from launcher.processes import SwarmProcesses

SAMPLES_FILE = "rss.jsonl"


def group_usage(pid: int) -> tuple[int, int, float] | None:
    """(RSS of the peer process, RSS of its children — hivemind's DHT process and p2pd —, CPU
    seconds of all of them), or None for a process that is gone or being torn down (a zombie, or
    an RSS of 0: a sample taken while a killed process releases its memory is no measurement)."""
    try:
        own = psutil.Process(pid)
        if own.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        children = own.children(recursive=True)
        cpu = sum(sum(p.cpu_times()[:2]) for p in [own, *children])
        rss = own.memory_info().rss
        return (rss, sum(p.memory_info().rss for p in children), cpu) if rss > 0 else None
    except psutil.Error:
        return None


def slope_mb_per_h(samples: list[tuple[float, int]]) -> float:
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples]) / 2**20
    return float(np.polyfit(t - t[0], rss, 1)[0] * 3600.0)


def pooled_slope(windows: list[list[tuple[float, int]]]) -> tuple[float, float, float]:
    """One RSS slope (MB/h) shared by several process incarnations, each with its own level, and its
    95 % CI: (slope, low, high).

    Least squares with a separate intercept per incarnation (the "within" estimator): the slope is
    the mean of the incarnations' own slopes weighted by how much time each spans, so a short
    incarnation with a noisy slope counts for little. Samples of one process are autocorrelated, so
    the interval treats each incarnation as one cluster (cluster-robust variance, Student t with
    clusters − 1 degrees of freedom); with fewer than two windows it is (slope, nan, nan).
    """
    if not windows:
        return math.nan, math.nan, math.nan
    centred = []
    for window in windows:
        t = np.array([s[0] for s in window], dtype=float) / 3600.0
        rss = np.array([s[1] for s in window], dtype=float) / 2**20
        centred.append((t - t.mean(), rss - rss.mean()))
    sxx = sum(float(t @ t) for t, _ in centred)
    if sxx <= 0:
        return math.nan, math.nan, math.nan
    slope = sum(float(t @ r) for t, r in centred) / sxx
    if len(centred) < 2:
        return slope, math.nan, math.nan
    scores = np.array([float(t @ (r - slope * t)) for t, r in centred])
    k = len(centred)
    se = math.sqrt(k / (k - 1) * float(scores @ scores)) / sxx
    half = float(stats.t.ppf(0.975, df=k - 1)) * se
    return slope, slope - half, slope + half


class Watch:
    """Per-peer RSS and CPU samples, one series per process incarnation."""

    def __init__(self, ids: list[str], samples_path: Path | None = None):
        self.ids = ids
        self.samples_path = samples_path
        self.rss: dict[tuple[str, int], list[tuple[float, int]]] = defaultdict(list)
        self.cpu: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
        self.started: set[tuple[str, int]] = set()  # incarnations alive at the first sample
        self.passes: dict[int, list[tuple[float, int]]] = defaultdict(list)  # pass -> (time, RSS) each

    def sample(self, swarm: SwarmProcesses) -> None:
        """One sampling pass over every live peer (appended to ``rss.jsonl`` when set)."""
        first, index, lines = not self.cpu, len(self.passes), []
        for peer_id in self.ids:
            proc = swarm.processes.get(peer_id)
            usage = group_usage(proc.pid) if proc is not None and proc.alive() else None
            if usage is not None:
                own, children, cpu = usage
                lines.append(
                    {
                        "peer": peer_id,
                        "pid": proc.pid,
                        "time": time.time(),
                        "rss": own,
                        "rss_children": children,
                        "cpu": cpu,
                        "first": first,
                        "pass": index,
                    }
                )
        self._ingest(lines)
        if self.samples_path is not None and lines:
            with self.samples_path.open("a") as f:
                f.writelines(json.dumps(line) + "\n" for line in lines)

    def _ingest(self, lines: list[dict]) -> None:
        for line in lines:
            key, now, rss = (line["peer"], line["pid"]), line["time"], line["rss"] + line["rss_children"]
            self.rss[key].append((now, rss))
            self.cpu[key].append((now, line["cpu"]))
            if line.get("first", False):
                self.started.add(key)
            if "pass" in line:
                self.passes[line["pass"]].append((now, rss))

    @classmethod
    def load(cls, ids: list[str], path: Path) -> Watch:
        """The samples a finished soak wrote (``rss.jsonl``)."""
        watch = cls(ids)
        watch._ingest([json.loads(line) for line in path.read_text().splitlines() if line.strip()])
        return watch

    def swarm_slope(self, since: float) -> tuple[float, int]:
        """The RSS slope (MB/h) of the swarm's mean per-peer RSS over the sampling passes after
        ``since`` in which every peer was sampled, and how many passes that is. Under churn it shows
        what churn does to the swarm's memory (stale channels, buffers or records a survivor keeps
        for peers that died); a leak inside every process shows in the fault-free run, where each
        process lives the whole run."""
        means = [
            (samples[0][0], sum(rss for _, rss in samples) / len(samples))
            for samples in self.passes.values()
            if len(samples) == len(self.ids) and samples[0][0] >= since
        ]
        return (slope_mb_per_h(means) if len(means) >= 3 else math.nan), len(means)

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

    def windows(
        self, min_fit_s: float, since: float = 0.0, peer_id: str | None = None, warmup_s: float = 0.0
    ) -> list[list[tuple[float, int]]]:
        """The RSS samples of each incarnation (of ``peer_id``, or of every peer) taken after
        ``since`` (unix time) and after its first ``warmup_s`` seconds (a new process allocates its
        model, optimizer and DHT state for minutes), when they span at least ``min_fit_s``."""
        out = []
        for (p_id, _), samples in self.rss.items():
            window = [s for s in samples if s[0] >= max(since, samples[0][0] + warmup_s)]
            if (
                (peer_id is None or p_id == peer_id)
                and len(window) >= 3
                and window[-1][0] - window[0][0] >= min_fit_s
            ):
                out.append(window)
        return out

    def slopes(
        self, min_fit_s: float, since: float = 0.0, peer_id: str | None = None, warmup_s: float = 0.0
    ) -> list[float]:
        """RSS slopes (MB/h) of the incarnations :meth:`windows` selects, each fitted on its own."""
        return [slope_mb_per_h(w) for w in self.windows(min_fit_s, since, peer_id, warmup_s)]


def rss_totals(
    watch: Watch, ended: float, fit_s: float, min_fit_s: float, warmup_s: float, pool_min_s: float
) -> dict[str, float]:
    """The RSS slopes over the last ``fit_s`` seconds before ``ended``: per incarnation
    (those with ``min_fit_s`` of samples after their warm-up: max, median, count) and pooled over
    every incarnation with ``pool_min_s`` of them (one shared slope, its 95 % CI, the count), and
    of the swarm's mean per-peer RSS (``Watch.swarm_slope``)."""
    since = ended - fit_s
    slopes = watch.slopes(min_fit_s, since, warmup_s=warmup_s)
    windows = watch.windows(pool_min_s, since, warmup_s=warmup_s)
    pooled, low, high = pooled_slope(windows)
    swarm, passes = watch.swarm_slope(since)
    return {
        "swarm": swarm,
        "swarm_passes": passes,
        "slope": max(slopes) if slopes else float("nan"),
        "slope_median": float(np.median(slopes)) if slopes else float("nan"),
        "slope_fits": len(slopes),
        "pooled": pooled,
        "pooled_low": low,
        "pooled_high": high,
        "pooled_windows": len(windows),
    }


def rss_fields(totals: dict[str, float]) -> str:
    """The RSS part of the RESULT line."""
    return (
        f"rss_swarm_slope={totals['swarm']:.1f} rss_swarm_passes={totals['swarm_passes']:.0f} "
        f"rss_slope_pooled={totals['pooled']:.1f} rss_slope_pooled_ci=[{totals['pooled_low']:.1f},"
        f"{totals['pooled_high']:.1f}] rss_pooled_windows={totals['pooled_windows']:.0f} "
        f"rss_slope_mb_per_h={totals['slope']:.1f} rss_slope_median={totals['slope_median']:.1f} "
        f"rss_fits={totals['slope_fits']:.0f}"
    )
