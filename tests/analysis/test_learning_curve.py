"""analysis.learning_curve: the peers' periodic kNN as a curve, and the gain over its last quarter."""

from __future__ import annotations

import pytest

from analysis.learning_curve import knn_curve, last_quarter_gain


def _eval(step: int, knn: float, tag: str = "periodic") -> dict:
    return {"kind": "eval", "step": step, "tag": tag, "knn": knn}


def test_the_curve_is_the_mean_over_peers_of_periodic_points_only():
    # prepare: init and final evaluations (other test sets) are not curve points; p1 missed step 40
    per_peer = {
        "p0": [_eval(0, 0.1, "init"), _eval(20, 0.5), _eval(40, 0.6), _eval(40, 0.9, "final")],
        "p1": [_eval(20, 0.7), {"kind": "round", "step": 20}],
    }
    # execute
    curve = knn_curve(per_peer)
    # assert
    assert curve == [
        {"step": 20, "knn_mean": pytest.approx(0.6), "peers": 2},
        {"step": 40, "knn_mean": pytest.approx(0.6), "peers": 1},
    ]


@pytest.mark.parametrize(
    "points,expected",
    [
        ([(10, 0.5), (20, 0.6), (31, 0.65), (40, 0.66)], 0.06),  # 31 is past 3/4 of 40: from step 20
        ([(25, 0.6), (100, 0.62)], 0.02),
        ([(90, 0.6), (100, 0.7)], None),  # no point at or before step 75
        ([(100, 0.7)], None),
        ([], None),
    ],
)
def test_last_quarter_gain(points, expected):
    # prepare
    curve = [{"step": s, "knn_mean": k, "peers": 1} for s, k in points]
    # execute
    gain = last_quarter_gain(curve)
    # assert
    assert gain == (None if expected is None else pytest.approx(expected))
