"""The paper's claims, checked against a sweep's ``results.csv``.

A sweep's ``grid.yaml`` may carry a ``claims:`` list. Each claim compares two quantities, ``a`` and
``b``, measured per seed on the sweep's complete runs::

    claims:
      - id: 1
        claim: "MAE's accuracy drop IID -> Dirichlet 0.1 is smaller than SimSiam's (Table 1)"
        a: {quantity: drop, where: {method: mae}, from: {split: iid}, to: {split: dir0.1}}
        b: {quantity: drop, where: {method: simsiam}, from: {split: iid}, to: {split: dir0.1}}
        expect: a < b
        monotone: {axis: graph, order: [ring, rr4, full]}      # optional
        delta: 0.01            # the smallest effect that matters, in the metric's units (> 0)
        protocol: knn_mean     # optional: the results column both sides are measured on

* ``where`` / ``from`` / ``to`` select rows by ``column == value`` (axis labels or resolved columns).
* ``quantity`` is a numeric results column (``knn_mean`` ...) or ``drop``: per seed, the metric
  (``metric:``, default ``knn_mean``) at ``where + from`` minus at ``where + to``.
* ``protocol`` (optional) names the results column the claim rests on (``knn_mean``,
  ``linear_mean``, a θ̄ column ...): a ``drop`` side measures that column's drop, any other side
  that column itself. Without it, each side's ``quantity`` / ``metric`` says.
* Statistics: mean over seeds with a 95 % Student-t CI; the comparison is the per-seed paired
  difference a − b over the seeds both sides have. A seed only one side has (its pair still running
  or failed) is left out of both and named in the reasons: one unpaired run must not flip a decision.
  Welch's unequal-variance interval only when the sides share fewer than 2 seeds (run apart).
* The decision (issue 14, items 4-5; :func:`analysis.power.decide`) rests on the *effect*: the
  paired difference signed in the paper's direction (b − a for ``a < b``, a − b for ``a > b``), its
  95 % CI and ``delta`` (δ > 0): ``confirmed`` (CI above 0), ``refuted`` (CI below 0), ``refuted
  (equivalence)`` (CI inside ±δ), else ``underpowered`` (half-width > δ/2, stated with the seeds
  the observed spread needs), ``no delta`` or ``no data``. The ``monotone`` order is reported
  beside it, checked on the means only.
* ``reproduced`` (kept for older readers) is ``yes`` only when the means satisfy ``expect``, the
  difference's 95 % CI excludes 0 on the claimed side, and the ``monotone`` order (if given) holds
  on the means of ``a``'s quantity along the axis (``where`` with the axis replaced by each level).

Only ``status == complete`` rows count; everything else is excluded before any statistic.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from analysis import power
from analysis.power import mean_ci, welch_ci  # re-exported: the sweep report and plots use them here

CLAIMS_CSV_FIELDS = (
    "claim",
    "metric",
    "protocol",
    "effect",  # mean per-seed difference, signed so that > 0 is the paper's direction
    "ci_low",
    "ci_high",
    "half_width",
    "delta",
    "n_seeds",
    "decision",
    "seeds_needed",  # seeds the observed spread needs for a half-width <= delta / 2 (n >= 5)
    "quantity_a",
    "mean_a",
    "ci_low_a",
    "ci_high_a",
    "quantity_b",
    "mean_b",
    "ci_low_b",
    "ci_high_b",
    "seeds",
    "monotone",
    "reproduced",
)
DEFAULT_METRIC = "knn_mean"
_EXPECT = re.compile(r"^\s*a\s*([<>])\s*b\s*$")
_METRIC_NAMES = {"knn_mean": "kNN"}


@dataclass(frozen=True)
class Quantity:
    """One side of a claim: a column (or ``drop`` of ``metric``) over the rows matching ``where``."""

    quantity: str
    where: dict[str, str] = field(default_factory=dict)
    from_: dict[str, str] = field(default_factory=dict)
    to: dict[str, str] = field(default_factory=dict)
    metric: str = DEFAULT_METRIC

    def describe(self) -> str:
        """Readable, e.g. ``kNN drop iid->dir0.1 (method=mae)`` or ``knn_mean (graph=full)``."""
        where = f" ({_fmt_filter(self.where)})" if self.where else ""
        if self.quantity == "drop":
            metric = _METRIC_NAMES.get(self.metric, self.metric)
            return f"{metric} drop {_values(self.from_)}->{_values(self.to)}{where}"
        return f"{self.quantity}{where}"


@dataclass(frozen=True)
class Monotone:
    """Means of ``a``'s quantity must be non-decreasing along ``order`` of column ``axis``."""

    axis: str
    order: tuple[str, ...]


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    a: Quantity
    b: Quantity
    expect: str  # "<" or ">": a < b or a > b
    monotone: Monotone | None = None
    delta: float | None = None  # smallest effect that matters (metric units, > 0); None: no equivalence test
    protocol: str | None = None  # the results column both sides rest on (None: as each side says)

    @property
    def label(self) -> str:
        return f"{self.id}: {self.text}"

    @property
    def metric(self) -> str:
        """The results column(s) the claim is measured on, e.g. ``knn_mean``."""
        columns = [q.metric if q.quantity == "drop" else q.quantity for q in (self.a, self.b)]
        return columns[0] if columns[0] == columns[1] else " / ".join(columns)


@dataclass(frozen=True)
class SideStats:
    """Per-seed values of one quantity and their mean with a 95 % CI (CI None when n < 2)."""

    description: str
    per_seed: dict[str, float]
    mean: float | None
    low: float | None
    high: float | None

    @property
    def n(self) -> int:
        return len(self.per_seed)


@dataclass(frozen=True)
class MonotoneCheck:
    axis: str
    means: dict[str, float | None]  # level -> mean over seeds (None: no complete rows)
    holds: bool


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    a: SideStats
    b: SideStats
    diff_mean: float | None  # a − b
    diff_low: float | None
    diff_high: float | None
    pairing: str  # "paired" or "welch"
    seeds: int  # seeds present in both a and b
    monotone: MonotoneCheck | None
    reproduced: bool
    reasons: tuple[str, ...]  # why not reproduced / how it was computed (missing rows, Welch, n = 1)
    assessment: power.Assessment  # the effect in the claim's direction, its CI and the decision


# ---------------------------------------------------------------- parsing


def _as_filter(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{what} must be a mapping column: value, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _parse_quantity(spec: Any, where: str) -> Quantity:
    if not isinstance(spec, dict) or "quantity" not in spec:
        raise ValueError(f"{where}: needs a mapping with a 'quantity' key, got {spec!r}")
    q = Quantity(
        quantity=str(spec["quantity"]),
        where=_as_filter(spec.get("where"), f"{where}.where"),
        from_=_as_filter(spec.get("from"), f"{where}.from"),
        to=_as_filter(spec.get("to"), f"{where}.to"),
        metric=str(spec.get("metric", DEFAULT_METRIC)),
    )
    if q.quantity == "drop" and not (q.from_ and q.to):
        raise ValueError(f"{where}: quantity 'drop' needs both 'from' and 'to'")
    return q


def _parse_delta(spec: dict, cid: Any) -> float | None:
    value = spec.get("delta")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"claim {cid}: delta must be a number > 0 (metric units), got {value!r}")
    return float(value)


def _on_protocol(q: Quantity, protocol: str | None, where: str) -> Quantity:
    """Side ``q`` measured on column ``protocol``: a drop's metric, any other side's quantity."""
    if protocol is None:
        return q
    if q.metric not in (DEFAULT_METRIC, protocol):
        raise ValueError(f"{where}: metric {q.metric!r} contradicts the claim's protocol {protocol!r}")
    if q.quantity == "drop":
        return replace(q, metric=protocol)
    return replace(q, quantity=protocol)


def parse_claim(spec: dict) -> Claim:
    """One entry of ``claims:`` (see the module docstring) as a :class:`Claim`."""
    cid = spec.get("id", "?")
    match = _EXPECT.match(str(spec.get("expect", "")))
    if not match:
        raise ValueError(f"claim {cid}: expect must be 'a < b' or 'a > b', got {spec.get('expect')!r}")
    monotone = None
    if spec.get("monotone"):
        m = spec["monotone"]
        if not isinstance(m, dict) or "axis" not in m or len(m.get("order") or []) < 2:
            raise ValueError(f"claim {cid}: monotone needs 'axis' and an 'order' of at least two levels")
        monotone = Monotone(axis=str(m["axis"]), order=tuple(str(v) for v in m["order"]))
    protocol = None if spec.get("protocol") is None else str(spec["protocol"])
    return Claim(
        id=str(cid),
        text=str(spec.get("claim", "")),
        a=_on_protocol(_parse_quantity(spec.get("a"), f"claim {cid}.a"), protocol, f"claim {cid}.a"),
        b=_on_protocol(_parse_quantity(spec.get("b"), f"claim {cid}.b"), protocol, f"claim {cid}.b"),
        expect=match.group(1),
        monotone=monotone,
        delta=_parse_delta(spec, cid),
        protocol=protocol,
    )


def load_claims(grid_path: str | Path) -> list[Claim]:
    """The ``claims:`` of a sweep's grid.yaml ([] when it has none)."""
    grid = yaml.safe_load(Path(grid_path).read_text(encoding="utf-8")) or {}
    return [parse_claim(spec) for spec in (grid.get("claims") or [])]


# ---------------------------------------------------------------- evaluation


def complete_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "complete"]


def _matches(row: dict, selector: dict[str, str]) -> bool:
    return all(str(row.get(k, "")) == v for k, v in selector.items())


def _float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def column_per_seed(rows: list[dict], column: str, selector: dict[str, str]) -> dict[str, float]:
    """Seed -> value of ``column`` over complete rows matching ``selector`` (several rows of one
    seed are averaged; empty cells are skipped)."""
    by_seed: dict[str, list[float]] = {}
    for row in complete_rows(rows):
        value = _float(row.get(column))
        if value is not None and _matches(row, selector):
            by_seed.setdefault(str(row.get("seed", "")), []).append(value)
    return {seed: float(np.mean(v)) for seed, v in sorted(by_seed.items())}


def quantity_per_seed(rows: list[dict], q: Quantity) -> dict[str, float]:
    """Seed -> the quantity (for ``drop``: paired by seed, seeds missing either end are dropped)."""
    if q.quantity != "drop":
        return column_per_seed(rows, q.quantity, q.where)
    start = column_per_seed(rows, q.metric, {**q.where, **q.from_})
    end = column_per_seed(rows, q.metric, {**q.where, **q.to})
    return {seed: start[seed] - end[seed] for seed in start if seed in end}


def _side(rows: list[dict], q: Quantity) -> SideStats:
    return _stats(q.describe(), quantity_per_seed(rows, q))


def _stats(description: str, per_seed: dict[str, float]) -> SideStats:
    mean, low, high = mean_ci(list(per_seed.values()))
    return SideStats(description=description, per_seed=per_seed, mean=mean, low=low, high=high)


def _on_shared_seeds(a: SideStats, b: SideStats, reasons: list[str]) -> tuple[SideStats, SideStats]:
    """Both sides restricted to the seeds they share, when they share at least 2; each seed left
    out is named, so a run whose pair is still missing cannot silently change the decision."""
    shared = set(a.per_seed) & set(b.per_seed)
    if len(shared) < 2:
        return a, b
    for name, side in (("a", a), ("b", b)):
        extra = sorted(set(side.per_seed) - shared, key=seed_key)
        if extra:
            reasons.append(
                f"seed{'s' if len(extra) > 1 else ''} {', '.join(extra)} only on {name}: "
                "left out until the other side has them (paired over the shared seeds)"
            )
    return _only(a, shared), _only(b, shared)


def _only(side: SideStats, seeds: set[str]) -> SideStats:
    return _stats(side.description, {s: v for s, v in side.per_seed.items() if s in seeds})


def seed_key(seed: str) -> tuple[int, str]:
    """Sort key: numeric seeds in numeric order (2 before 10), any other name after them."""
    return (int(seed), seed) if seed.isdigit() else (1 << 30, seed)


def _monotone(rows: list[dict], claim: Claim) -> MonotoneCheck | None:
    m = claim.monotone
    if m is None:
        return None
    means: dict[str, float | None] = {}
    for level in m.order:
        q = Quantity(
            quantity=claim.a.quantity,
            where={**claim.a.where, m.axis: level},
            from_=claim.a.from_,
            to=claim.a.to,
            metric=claim.a.metric,
        )
        means[level] = mean_ci(list(quantity_per_seed(rows, q).values()))[0]
    values = list(means.values())
    holds = (
        all(v is not None for v in values)
        and all(later >= earlier for earlier, later in pairwise(values))
        and all(values[-1] >= v for v in values)
    )
    return MonotoneCheck(axis=m.axis, means=means, holds=holds)


def _missing(rows: list[dict], q: Quantity, name: str) -> str:
    """Why side ``name`` has no values: which selection matched no complete row."""
    selections = [q.where] if q.quantity != "drop" else [{**q.where, **q.from_}, {**q.where, **q.to}]
    for sel in selections:
        matching = [r for r in rows if _matches(r, sel)]
        done = [
            r
            for r in complete_rows(matching)
            if _float(r.get(q.metric if q.quantity == "drop" else q.quantity)) is not None
        ]
        if not done:
            not_complete = len(matching) - len(complete_rows(matching))
            return (
                f"{name}: no complete row with a value for ({_fmt_filter(sel)}) "
                f"[{len(matching)} matching rows, {not_complete} not complete]"
            )
    return f"{name}: no seed has both ends of the drop"


def _difference(a: SideStats, b: SideStats, reasons: list[str]) -> tuple[str, tuple]:
    """The pairing and (mean, low, high) of a − b: paired over seeds when both sides have the same
    seeds (:func:`_on_shared_seeds` makes them so when they share 2 or more), else Welch's interval
    over the two samples."""
    if a.per_seed and b.per_seed and set(a.per_seed) == set(b.per_seed):
        return "paired", mean_ci([a.per_seed[s] - b.per_seed[s] for s in sorted(a.per_seed)])
    if a.per_seed and b.per_seed:
        reasons.append(
            f"the sides share fewer than 2 seeds (a: {sorted(a.per_seed, key=seed_key)}, "
            f"b: {sorted(b.per_seed, key=seed_key)}): Welch interval"
        )
    return "welch", welch_ci(list(a.per_seed.values()), list(b.per_seed.values()))


def _ci_excludes_zero(
    claim: Claim, both: bool, low: float | None, high: float | None, reasons: list[str]
) -> bool:
    """Whether the 95 % CI of a − b lies on the claimed side of 0 (a reason is added when not)."""
    if low is None:
        if both:
            reasons.append("fewer than 2 seeds: no confidence interval")
        return False
    excludes = high < 0 if claim.expect == "<" else low > 0
    if not excludes:
        reasons.append("95 % CI of a − b does not exclude 0 on the claimed side")
    return excludes


def _monotone_reason(monotone: MonotoneCheck) -> str:
    missing = [lvl for lvl, v in monotone.means.items() if v is None]
    if not missing:
        return f"monotone order along {monotone.axis} violated"
    return f"monotone check: no complete rows for {monotone.axis} = {', '.join(missing)}"


def evaluate_claim(rows: list[dict], claim: Claim) -> ClaimResult:
    """Statistics of both sides, their paired difference, the monotone check and the verdict."""
    reasons: list[str] = []
    a, b = _on_shared_seeds(_side(rows, claim.a), _side(rows, claim.b), reasons)
    pairing, (diff_mean, diff_low, diff_high) = _difference(a, b, reasons)
    for side, stat, q in (("a", a, claim.a), ("b", b, claim.b)):
        if not stat.per_seed:
            reasons.append(_missing(rows, q, side))
    monotone = _monotone(rows, claim)
    both_means = a.mean is not None and b.mean is not None
    holds_means = both_means and (a.mean < b.mean if claim.expect == "<" else a.mean > b.mean)
    if both_means and not holds_means:
        reasons.append(f"means do not satisfy a {claim.expect} b")
    both = bool(a.per_seed and b.per_seed)
    ci_excludes = _ci_excludes_zero(claim, both, diff_low, diff_high, reasons)
    if monotone is not None and not monotone.holds:
        reasons.append(_monotone_reason(monotone))
    first, second = (b, a) if claim.expect == "<" else (a, b)  # effect > 0: as claimed
    assessment = power.assess(first.per_seed, second.per_seed, pairing == "paired", claim.delta)
    reasons.extend(assessment.notes)
    return ClaimResult(
        claim=claim,
        a=a,
        b=b,
        diff_mean=diff_mean,
        diff_low=diff_low,
        diff_high=diff_high,
        pairing=pairing,
        seeds=len(set(a.per_seed) & set(b.per_seed)),
        monotone=monotone,
        reproduced=holds_means and ci_excludes and (monotone is None or monotone.holds),
        reasons=tuple(reasons),
        assessment=assessment,
    )


def evaluate_claims(rows: list[dict], claims: list[Claim]) -> list[ClaimResult]:
    """Every claim evaluated on the results rows (non-complete rows are ignored)."""
    return [evaluate_claim(rows, c) for c in claims]


# ---------------------------------------------------------------- output


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _monotone_cell(m: MonotoneCheck | None) -> str:
    if m is None:
        return ""
    steps = " -> ".join(f"{level} {_num(v) or '-'}" for level, v in m.means.items())
    return f"{'holds' if m.holds else 'violated'}: {steps}"


def _csv_row(r: ClaimResult) -> dict[str, Any]:
    return {
        "claim": r.claim.label,
        "metric": r.claim.metric,
        "protocol": power.describe_protocol(r.claim.metric),
        "effect": _num(r.assessment.effect),
        "ci_low": _num(r.assessment.low),
        "ci_high": _num(r.assessment.high),
        "half_width": _num(r.assessment.half_width),
        "delta": _num(r.claim.delta),
        "n_seeds": r.seeds,
        "decision": r.assessment.decision,
        "seeds_needed": "" if r.assessment.seeds_needed is None else r.assessment.seeds_needed,
        "quantity_a": r.a.description,
        "mean_a": _num(r.a.mean),
        "ci_low_a": _num(r.a.low),
        "ci_high_a": _num(r.a.high),
        "quantity_b": r.b.description,
        "mean_b": _num(r.b.mean),
        "ci_low_b": _num(r.b.low),
        "ci_high_b": _num(r.b.high),
        "seeds": r.seeds,
        "monotone": _monotone_cell(r.monotone),
        "reproduced": "yes" if r.reproduced else "no",
    }


def write_claims_csv(results: list[ClaimResult], path: str | Path) -> Path:
    """``claims.csv``: one row per claim with exactly :data:`CLAIMS_CSV_FIELDS` (effect, CI and
    half-width are signed in the claim's direction; ``seeds`` = ``n_seeds``, kept for older readers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CLAIMS_CSV_FIELDS)
        writer.writeheader()
        for r in results:
            writer.writerow(_csv_row(r))
    return path


def _fmt_filter(selector: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in selector.items())


def _values(selector: dict[str, str]) -> str:
    return ",".join(selector.values())
