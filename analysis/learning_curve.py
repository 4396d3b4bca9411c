"""Learning curves: the peers' kNN at their periodic evaluations, and whether a run plateaued.

With ``train.eval_every`` set, every peer evaluates its encoder on a schedule; by default those
points are kNN on a fixed subset of the test set (``eval.curve_test_images``), all on the same
images, so they form a curve (the final evaluation, on the full test set, is not one of its points).
The curve of a run is the mean over the peers evaluated at each step; ``last_quarter_gain`` is how
many kNN points it still rose over the last quarter of training — near 0 means the run plateaued.
"""

from __future__ import annotations

import statistics

PERIODIC_TAG = "periodic"


def knn_curve(per_peer: dict[str, list[dict]]) -> list[dict]:
    """``[{step, knn_mean, peers}]`` over the peers' periodic evaluations (metrics records), by step."""
    by_step: dict[int, list[float]] = {}
    for records in per_peer.values():
        for r in records:
            if r.get("kind") == "eval" and r.get("tag") == PERIODIC_TAG and r.get("knn") is not None:
                by_step.setdefault(int(r["step"]), []).append(float(r["knn"]))
    return [
        {"step": step, "knn_mean": statistics.fmean(values), "peers": len(values)}
        for step, values in sorted(by_step.items())
    ]


def last_quarter_gain(curve: list[dict]) -> float | None:
    """kNN at the curve's last point minus at its latest point at or before 3/4 of that step (in
    accuracy, not points); None with fewer than two points or none that early."""
    if len(curve) < 2:
        return None
    last = curve[-1]
    earlier = [p for p in curve[:-1] if p["step"] <= 0.75 * last["step"]]
    return last["knn_mean"] - earlier[-1]["knn_mean"] if earlier else None
