"""The bytes-to-accuracy benchmark's arithmetic on known numbers: bytes ratio, kNN delta, share of
the gain over local-only kept, and which arm is reported as best."""

from __future__ import annotations

import pytest

from benchmarks.bytes_bench import best_arm, compare


def _row(knn: float, nbytes: int) -> dict:
    return {"knn_mean": str(knn), "bytes_out_total": str(nbytes), "consensus_knn": ""}


def test_arms_are_compared_with_fp32_and_the_local_only_gap():
    # prepare: fp32 at 0.70 with 1e9 bytes; local-only at 0.60 (a 10-point gain)
    rows = {
        "fp32_p10": _row(0.70, 1_000_000_000),
        "int8_p10": _row(0.699, 250_000_000),
        "topk1_p20": _row(0.695, 7_000_000),
        "topk_bad": _row(0.64, 1_000_000),
    }
    # execute
    arms = {a["arm"]: a for a in compare(rows, local=0.60)}
    best, met = best_arm(list(arms.values()))
    # assert: topk1_p20 keeps 95 % of the gain, 0.5 points below, 143x fewer bytes: the best, target met
    assert arms["topk1_p20"]["ratio"] == pytest.approx(1e9 / 7e6)
    assert arms["topk1_p20"]["gain_kept"] == pytest.approx(0.95)
    assert arms["topk1_p20"]["knn_delta"] == pytest.approx(-0.005)
    assert best["arm"] == "topk1_p20" and met


def test_without_an_arm_that_keeps_the_gain_the_target_is_missed():
    rows = {"fp32_p10": _row(0.70, 1_000_000_000), "int8_p10": _row(0.68, 250_000_000)}
    best, met = best_arm(compare(rows, local=0.60))
    assert best["arm"] == "int8_p10" and not met
