"""Each claim seed by seed: both sides and the effect of every paired seed.

A claim's decision rests on the mean of its per-seed effects and their 95 % CI; this shows the
numbers under it — how many seeds point the paper's way, and which seed pulls the mean — so a reader
can judge a heavy tail or one outlying seed without re-deriving them from ``results.csv``. Written
as ``claims_per_seed.csv`` (one row per claim and seed) and a section of the sweep's ``report.md``.
Only paired claims have per-seed effects: a claim whose sides share fewer than 2 seeds (Welch's
interval, :mod:`analysis.claims`) has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from analysis.claims import ClaimResult, seed_key
from analysis.earlier_results import write_rows

CLAIM_SEEDS_CSV = "claims_per_seed.csv"
CLAIM_SEEDS_FIELDS = ("claim", "metric", "seed", "a", "b", "effect")


@dataclass(frozen=True)
class SeedEffect:
    """One paired seed of a claim: both sides' quantities and the effect, > 0 = the paper's way."""

    seed: str
    a: float
    b: float
    effect: float


def seed_effects(result: ClaimResult) -> list[SeedEffect]:
    """The claim's paired seeds in seed order; empty when the claim is not paired."""
    if result.pairing != "paired":
        return []
    sign = -1.0 if result.claim.expect == "<" else 1.0  # "a < b" is confirmed by b − a > 0
    return [
        SeedEffect(seed, a, result.b.per_seed[seed], sign * (a - result.b.per_seed[seed]))
        for seed, a in sorted(result.a.per_seed.items(), key=lambda item: seed_key(item[0]))
    ]


def write_claim_seeds_csv(results: list[ClaimResult], path: str | Path) -> Path:
    """``claims_per_seed.csv``: claim, metric, seed, a, b, effect for every paired seed of every claim."""
    rows = [
        {"claim": r.claim.id, "metric": r.claim.metric, "seed": e.seed}
        | {"a": f"{e.a:.6g}", "b": f"{e.b:.6g}", "effect": f"{e.effect:.6g}"}
        for r in results
        for e in seed_effects(r)
    ]
    write_rows(Path(path), rows, list(CLAIM_SEEDS_FIELDS))
    return Path(path)


def sign_test_p(effects: list[SeedEffect]) -> float | None:
    """Exact two-sided sign test of "as many seeds each way" (seeds with effect 0 left out; None if
    none is left). It does not assume normal effects, so it stays honest under a heavy tail; the
    decision still rests on the t-CI of the mean (:mod:`analysis.power`), this is shown beside it."""
    ahead = sum(e.effect > 0 for e in effects)
    signed = sum(e.effect != 0 for e in effects)
    return stats.binomtest(ahead, signed, 0.5).pvalue if signed else None


def direction_count(effects: list[SeedEffect]) -> str:
    """'the paper's direction at k of n seeds (sign test p = ...); largest |effect| at seed s (x)'."""
    ahead = sum(e.effect > 0 for e in effects)
    largest = max(effects, key=lambda e: abs(e.effect))
    p = sign_test_p(effects)
    test = "" if p is None else f" (exact sign test, two-sided p = {p:.3g})"
    return (
        f"the paper's direction at {ahead} of {len(effects)} seeds{test}; "
        f"largest |effect| at seed {largest.seed} ({largest.effect:+.4g})"
    )


def claim_seeds_markdown(results: list[ClaimResult]) -> list[str]:
    """One table per paired claim: seed | a | b | effect, then the direction count."""
    lines: list[str] = []
    for r in results:
        effects = seed_effects(r)
        if not effects:
            continue
        lines += [
            f"### Claim {r.claim.id} per seed",
            "",
            f"a = {r.a.description}; b = {r.b.description}; effect > 0 = the paper's direction.",
            "",
            "| seed | a | b | effect |",
            "|---|---|---|---|",
        ]
        lines += [f"| {e.seed} | {e.a:.4g} | {e.b:.4g} | {e.effect:+.4g} |" for e in effects]
        lines += ["", f"{direction_count(effects).capitalize()}.", ""]
    if not lines:
        return []
    raw = f"Raw numbers: [{CLAIM_SEEDS_CSV}]({CLAIM_SEEDS_CSV})."
    return ["## Claims seed by seed", "", raw, "", *lines]
