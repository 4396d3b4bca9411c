"""The overlap benchmark's arms and throughput arithmetic on known numbers."""

from __future__ import annotations

import pytest

from benchmarks.overlap_bench import arm_overrides, throughput


def test_each_arm_sets_the_period_and_the_overlap_switch():
    # execute
    off, sync, overlap = (arm_overrides(arm, steps=400, period=20) for arm in ("off", "sync", "overlap"))
    # assert: off never reaches a round; sync and overlap differ only in the switch
    assert "train.period=401" in off and "train.steps=400" in off
    assert "train.period=20" in sync and "gossip.overlap=false" in sync
    assert "train.period=20" in overlap and "gossip.overlap=true" in overlap
    assert arm_overrides("overlap_slow", steps=400, period=20) == overlap
    with pytest.raises(ValueError, match="unknown arm"):
        arm_overrides("async", steps=400, period=20)


def test_throughput_sums_the_peers_images_per_second():
    finals = [
        {"step": 400, "batch_size": 128, "train_seconds": 51.2},  # 1000 img/s
        {"step": 400, "batch_size": 64, "train_seconds": 51.2},  # 500 img/s
    ]
    assert throughput(finals) == pytest.approx(1500.0)
    with pytest.raises(ValueError, match="no peer finished"):
        throughput([])


def test_the_slow_link_schedule_loads_and_throttles_both_peers():
    from benchmarks.overlap_bench import SLOW_LINK
    from launcher.fault_schedule import load_schedule

    schedule = load_schedule(SLOW_LINK, ["p0", "p1"])
    assert sorted(e.peer for e in schedule.events) == ["p0", "p1"]
    assert all(e.action == "bandwidth" and e.params["bytes_per_s"] == 2_000_000 for e in schedule.events)
