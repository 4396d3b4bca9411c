"""The soak's RSS slopes: the pooled within-incarnation slope and the saved samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks._soak_watch import Watch, pooled_slope, slope_mb_per_h

MB = 2**20


def _series(start_s: float, minutes: float, level_mb: float, slope_mb_h: float, noise_mb: float, rng):
    t = start_s + np.arange(0.0, minutes * 60.0, 5.0)
    rss = level_mb + slope_mb_h * (t - t[0]) / 3600.0 + rng.normal(0.0, noise_mb, t.size)
    return [(float(a), int(b * MB)) for a, b in zip(t, rss)]


def test_pooled_slope_recovers_a_shared_slope_across_levels_and_lengths():
    # prepare: 30 incarnations at unrelated levels, 2–8 min each, all growing 12 MB/h, 3 MB jitter
    rng = np.random.default_rng(0)
    windows = [
        _series(100.0 * i, rng.uniform(2, 8), rng.uniform(200, 600), 12.0, 3.0, rng) for i in range(30)
    ]
    # execute
    slope, low, high = pooled_slope(windows)
    singles = [slope_mb_per_h(w) for w in windows]
    # assert: the pooled CI covers the truth and is far narrower than the single fits' spread
    assert low < 12.0 < high
    assert high - low < 20.0
    assert max(singles) - min(singles) > 3 * (high - low)


def test_pooled_slope_sees_no_growth_when_each_level_steps_down_at_restarts():
    # prepare: flat processes whose levels differ: a naive fit across them would see a trend
    rng = np.random.default_rng(1)
    windows = [_series(300.0 * i, 4.0, 900.0 - 40.0 * i, 0.0, 1.0, rng) for i in range(10)]
    # execute
    slope, low, high = pooled_slope(windows)
    # assert
    assert low < 0.0 < high and abs(slope) < 10.0


def test_pooled_slope_of_one_window_has_no_interval_and_of_none_is_nan():
    rng = np.random.default_rng(2)
    slope, low, high = pooled_slope([_series(0.0, 10.0, 300.0, 30.0, 0.5, rng)])
    assert slope == pytest.approx(30.0, abs=3.0) and np.isnan(low) and np.isnan(high)
    assert all(np.isnan(v) for v in pooled_slope([]))


def test_watch_reloads_the_samples_it_wrote(tmp_path):
    # prepare: samples as Watch.sample writes them, for two incarnations of one peer
    path = tmp_path / "rss.jsonl"
    lines = [
        {
            "peer": "p0",
            "pid": pid,
            "time": t,
            "rss": 100 * MB + int(t),
            "rss_children": 20 * MB,
            "cpu": t / 10,
            "first": t == 0.0,
            "pass": index,
        }
        for pid, times in ((11, (0.0, 5.0, 10.0)), (12, (20.0, 23.0, 26.0)))
        for index, t in enumerate(times)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    # execute
    watch = Watch.load(["p0"], path)
    # assert: one series per incarnation, peer + children summed, the first pass marks "started"
    assert sorted(watch.rss) == [("p0", 11), ("p0", 12)]
    assert watch.rss[("p0", 11)][1] == (5.0, 120 * MB + 5)
    assert watch.started == {("p0", 11)}
    assert len(watch.windows(min_fit_s=5.0)) == 2 and len(watch.windows(min_fit_s=8.0)) == 1


def test_the_swarm_slope_uses_passes_that_found_every_peer():
    # prepare: two peers; p1 restarts (a new pid, 100 MB lower) half way; p0 grows 36 MB/h
    watch = Watch(["p0", "p1"])
    lines = []
    for index in range(60):
        t = 60.0 * index
        lines.append(
            {
                "peer": "p0",
                "pid": 1,
                "time": t,
                "rss": 500 * MB + int(t / 100 * MB),
                "rss_children": 0,
                "cpu": 0.0,
                "pass": index,
            }
        )
        if index != 30:  # p1 missing from one pass (dead)
            pid, level = (2, 600) if index < 30 else (3, 500)
            lines.append(
                {
                    "peer": "p1",
                    "pid": pid,
                    "time": t,
                    "rss": level * MB,
                    "rss_children": 0,
                    "cpu": 0.0,
                    "pass": index,
                }
            )
    watch._ingest(lines)
    # execute
    slope, passes = watch.swarm_slope(since=0.0)
    late, late_passes = watch.swarm_slope(since=31 * 60.0)
    # assert: the restart's step down pulls the whole-run mean slope below p0's growth / 2; after it,
    # the mean grows at half p0's rate; the incomplete pass is left out
    assert passes == 59 and late_passes == 29
    assert late == pytest.approx(18.0, rel=1e-3)
    assert slope < 18.0
