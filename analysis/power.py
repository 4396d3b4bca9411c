"""Power first: how many seeds a claim needs so that its 95 % CI decides it (issue 14, item 4).

A claim is decided on the per-seed paired difference d_s (its effect, in the paper's direction) and
its Student-t interval mean(d) ± t_{0.975, n−1} · sd(d) / √n. With the smallest effect the study
must be able to see, δ (at most the paper's effect for that claim), a half-width ≤ δ/2 makes every
outcome a decision: a CI that contains 0 then lies inside (−δ, δ), i.e. "no effect as large as δ"
(the equivalence side of :func:`decide`; two one-sided tests in the sense of
Schuirmann 1987, at the CI's level).

Here too: the Student-t mean CI and Welch's interval every analysis module uses (re-exported by
:mod:`analysis.claims`), and the decision rule with its protocol labels (:func:`decide`,
:func:`assess`, :func:`describe_protocol`).

A pilot run gives per-seed differences; :func:`seeds_needed` turns their sample standard deviation
into the smallest n (≥ :data:`MIN_SEEDS`) with t_{0.975, n−1} · sd / √n ≤ δ/2, assuming the
full run's spread equals the pilot's. The report states the same for a finished sweep
(:func:`power_note`): the half-width reached against δ/2, and the seeds its spread asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_SEEDS = 5  # issue 14: never fewer seeds than this, whatever the pilot's spread
MAX_SEEDS = 10_000  # search bound; a spread needing more is reported as "more than" this
CONFIDENCE = 0.95


# ---------------------------------------------------------------- statistics


def mean_ci(values: list[float], confidence: float = 0.95) -> tuple[float | None, float | None, float | None]:
    """Mean and Student-t confidence interval; CI (None, None) for n = 1, all None for n = 0."""
    x = np.asarray(list(values), dtype=float)
    if x.size == 0:
        return None, None, None
    mean = float(x.mean())
    if x.size == 1:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def welch_ci(
    a: list[float], b: list[float], confidence: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """Mean of a − mean of b with Welch's unequal-variance t interval (CI None when n < 2 on a side)."""
    if not a or not b:
        return None, None, None
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(xa.mean() - xb.mean())
    if xa.size < 2 or xb.size < 2:
        return diff, None, None
    va, vb = xa.var(ddof=1) / xa.size, xb.var(ddof=1) / xb.size
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (xa.size - 1) + vb**2 / (xb.size - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=df) * se)
    return diff, diff - half, diff + half


# ---------------------------------------------------------------- power


def t_half_width(sd: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Half-width t_{(1+c)/2, n−1} · sd / √n of the Student-t CI of a mean of ``n`` values."""
    if n < 2:
        raise ValueError(f"a t interval needs n >= 2 values, got n = {n}")
    if sd < 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    return float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * sd / math.sqrt(n))


def sample_sd(values: list[float]) -> float:
    """Sample standard deviation (ddof = 1) of at least two values."""
    x = np.asarray(list(values), dtype=float)
    if x.size < 2:
        raise ValueError(f"a spread needs at least 2 per-seed values, got {x.size}")
    return float(x.std(ddof=1))


def seeds_for_sd(sd: float, delta: float, confidence: float = CONFIDENCE, min_seeds: int = MIN_SEEDS) -> int:
    """Smallest n ≥ ``min_seeds`` whose t half-width with spread ``sd`` is ≤ δ/2 (raises past
    :data:`MAX_SEEDS`). The search starts at the normal-quantile answer (z · sd / √n ≤ δ/2), a lower
    bound since t > z, and steps up from there."""
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    n = max(2, min_seeds, math.ceil((2 * z * sd / delta) ** 2))
    while n <= MAX_SEEDS and t_half_width(sd, n, confidence) > delta / 2:
        n += 1
    if n > MAX_SEEDS:
        raise ValueError(f"sd {sd:.4g} needs more than {MAX_SEEDS} seeds for a half-width <= δ/2")
    return n


@dataclass(frozen=True)
class PowerPlan:
    """What a pilot says about one claim: its spread and the seeds a decisive run needs."""

    delta: float
    pilot_n: int
    pilot_sd: float
    seeds: int  # smallest n >= MIN_SEEDS with t half-width <= delta / 2
    half_width: float  # the half-width expected at ``seeds``

    def describe(self) -> str:
        return (
            f"pilot sd {self.pilot_sd:.3g} over {self.pilot_n} seeds, δ = {self.delta:.3g}: "
            f"{self.seeds} seeds give a 95 % half-width of {self.half_width:.3g} "
            f"<= δ/2 = {self.delta / 2:.3g}"
        )


def seeds_needed(pilot_differences: list[float], delta: float, confidence: float = CONFIDENCE) -> PowerPlan:
    """From a pilot's per-seed paired differences: the seeds for a half-width ≤ δ/2 (n ≥ 5)."""
    sd = sample_sd(pilot_differences)
    n = seeds_for_sd(sd, delta, confidence)
    return PowerPlan(
        delta=float(delta),
        pilot_n=len(pilot_differences),
        pilot_sd=sd,
        seeds=n,
        half_width=t_half_width(sd, n, confidence),
    )


def power_note(half_width: float | None, delta: float | None, differences: list[float]) -> str:
    """One line for the report: the half-width reached against δ/2, and what the observed spread
    asks for (``differences`` are the per-seed paired differences the CI came from)."""
    if delta is None:
        return "no δ stated: equivalence cannot be tested"
    if half_width is None:
        return f"fewer than 2 seeds: no CI, so no decision at δ = {delta:.3g}"
    relation = "≤" if half_width <= delta / 2 else ">"  # not "underpowered": the decision may be made
    line = f"half-width {half_width:.3g} {relation} δ/2 = {delta / 2:.3g} ({len(differences)} seeds)"
    if len(differences) >= 2:
        try:
            plan = seeds_needed(differences, delta)
        except ValueError as exc:
            return f"{line}; {exc}"
        line += f"; this spread (sd {plan.pilot_sd:.3g}) needs {plan.seeds} seeds"
    return line


# ---------------------------------------------------------------- decisions

CONFIRMED = "confirmed"
REFUTED = "refuted"
EQUIVALENT = "refuted (equivalence)"
UNDERPOWERED = "underpowered"
NO_DELTA = "no delta"  # the CI contains 0 and no δ was stated: equivalence cannot be tested
NO_DATA = "no data"  # a side has no complete run: nothing to decide on
DECISIONS = (CONFIRMED, REFUTED, EQUIVALENT, UNDERPOWERED, NO_DELTA, NO_DATA)


def decide(low: float | None, high: float | None, delta: float | None) -> str:
    """The verdict on a 95 % CI [low, high] of an effect signed in the claim's direction.

    ``confirmed``: the CI excludes 0 on the claimed side (low > 0). ``refuted``: it excludes 0 on
    the other side (high < 0). ``refuted (equivalence)``: it contains 0 but lies inside [−δ, δ], so
    no effect as large as δ. ``underpowered``: none of these (the CI is wider than δ, i.e. its
    half-width exceeds δ/2), or there is no CI (fewer than 2 seeds). ``no delta``: the CI contains
    0 and the claim states no δ. A CI that excludes 0 wins over equivalence: an effect that is
    real but smaller than δ is still ``confirmed`` (the caller notes it).
    """
    if delta is not None and not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    if low is None or high is None:
        return UNDERPOWERED
    if low > 0:
        return CONFIRMED
    if high < 0:
        return REFUTED
    if delta is None:
        return NO_DELTA
    if -delta <= low and high <= delta:
        return EQUIVALENT
    return UNDERPOWERED


def describe_protocol(column: str) -> str:
    """Which evaluation protocol a results column measures: kNN / linear probe / fine-tune, on each
    peer's own encoder (mean over peers) or on the consensus model θ̄ (issue 14, item 5)."""
    lowered = column.lower()
    kinds = (("finetune", "fine-tune"), ("fine_tune", "fine-tune"), ("knn", "kNN"), ("linear", "linear"))
    kind = next((name for key, name in kinds if key in lowered), None)
    if kind is None:
        return column
    on_consensus = any(key in lowered for key in ("theta", "consensus", "bar"))
    model = "θ̄ (consensus model)" if on_consensus else "per-peer (mean over peers)"
    return f"{kind}, {model} [{column}]"


@dataclass(frozen=True)
class Assessment:
    """One claim's effect (signed so that > 0 is the claimed direction), its 95 % CI, the decision
    and the power line; ``notes`` say what the decision leaves out (an effect smaller than δ)."""

    effect: float | None
    low: float | None
    high: float | None
    decision: str
    power: str  # :func:`power_note`
    seeds_needed: int | None  # seeds the per-seed spread needs for a half-width <= δ/2 (paired only)
    notes: tuple[str, ...] = ()

    @property
    def half_width(self) -> float | None:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2


def assess(
    first: dict[str, float], second: dict[str, float], paired: bool, delta: float | None
) -> Assessment:
    """The effect ``first − second`` (seed -> value; paired by seed, else Welch's interval), its
    95 % CI, :func:`decide` and the power line."""
    diffs = [first[s] - second[s] for s in sorted(first) if s in second] if paired else []
    if paired:
        effect, low, high = mean_ci(diffs)
    else:
        effect, low, high = welch_ci(list(first.values()), list(second.values()))
    half = None if low is None or high is None else (high - low) / 2
    note = power_note(half, delta, diffs)
    decision = decide(low, high, delta) if first and second else NO_DATA
    notes = []
    if decision == CONFIRMED and delta is not None and high < delta:
        notes.append(f"the effect is real but its CI lies inside (0, δ = {delta:.3g})")
    seeds = None
    if delta is not None and len(diffs) >= 2:
        try:
            seeds = seeds_needed(diffs, delta).seeds
        except ValueError:
            seeds = None
    return Assessment(effect, low, high, decision, note, seeds, tuple(notes))
