"""The soak's per-round deadline: fixed, or the largest of the neighbours' adaptive deadlines."""

from __future__ import annotations

import pytest

from benchmarks.soak import _peer_tally, round_deadline


def _round(pull_s: float, mix_s: float, deadlines: list[float | None]) -> dict:
    neighbours = [
        {"peer": f"p{i}", "answered": True, "weight": 0.25, "deadline_s": d} for i, d in enumerate(deadlines)
    ]
    return {
        "pull_seconds": pull_s,
        "mix_seconds": mix_s,
        "self_weight": 1.0 - 0.25 * len(deadlines),
        "neighbours": neighbours,
    }


def test_a_round_runs_under_its_neighbours_largest_deadline_or_the_fixed_one():
    assert round_deadline(_round(1.0, 0.1, [2.0, 3.5]), default=10.0) == 3.5
    assert round_deadline(_round(1.0, 0.1, [None, None]), default=10.0) == 10.0
    assert round_deadline({"neighbours": []}, default=10.0) == 10.0


def test_past_deadline_and_the_longest_ratio_use_each_rounds_own_deadline():
    # prepare: adaptive deadlines 2 s and 4 s; one round overruns its own 2 s, none the 10 s cap
    records = [_round(1.5, 0.1, [2.0, 1.0]), _round(2.5, 0.5, [2.0, 2.0]), _round(3.0, 0.2, [4.0, 3.0])]
    # execute
    tally = _peer_tally(records, deadline=10.0, grace_s=2.0)
    # assert
    assert tally["past"] == 1 and tally["over"] == 0 and tally["completed"] == 3
    assert tally["longest"] == pytest.approx(3.2) and tally["longest_ratio"] == pytest.approx(1.5)
