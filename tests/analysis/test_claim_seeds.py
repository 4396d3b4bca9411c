"""Each claim seed by seed: signs in the paper's direction, seed order, the CSV and the report section."""

from __future__ import annotations

import csv

import pytest

from analysis.claim_seeds import (
    CLAIM_SEEDS_FIELDS,
    SeedEffect,
    claim_seeds_markdown,
    seed_effects,
    sign_test_p,
    write_claim_seeds_csv,
)
from analysis.claims import Claim, evaluate_claims, parse_claim


def _rows(values: dict[str, dict[int, float]]) -> list[dict]:
    """graph -> seed -> knn_mean, as complete results rows."""
    return [
        {"run": f"{g}{s}", "status": "complete", "seed": str(s), "graph": g, "knn_mean": str(v)}
        for g, by_seed in values.items()
        for s, v in by_seed.items()
    ]


def _claim(expect: str) -> Claim:
    return parse_claim(
        {
            "id": 7,
            "claim": "c",
            "expect": expect,
            "a": {"quantity": "knn_mean", "where": {"graph": "full"}},
            "b": {"quantity": "knn_mean", "where": {"graph": "ring"}},
        }
    )


FULL = {2: 0.70, 10: 0.66, 1: 0.72}
RING = {2: 0.65, 10: 0.68, 1: 0.70}


@pytest.mark.parametrize("expect, sign", [("a > b", 1.0), ("a < b", -1.0)])
def test_effects_are_signed_in_the_claims_direction_in_numeric_seed_order(expect, sign):
    # prepare
    result = evaluate_claims(_rows({"full": FULL, "ring": RING}), [_claim(expect)])[0]
    # execute
    effects = seed_effects(result)
    # assert: seed 10 after 2; their mean is the claim's effect
    assert [e.seed for e in effects] == ["1", "2", "10"]
    assert [e.effect for e in effects] == pytest.approx([sign * 0.02, sign * 0.05, sign * -0.02])
    assert sum(e.effect for e in effects) / 3 == pytest.approx(result.assessment.effect)


def test_a_welch_claim_has_no_per_seed_effects_and_no_section():
    # prepare: the sides share no seed
    rows = _rows({"full": {0: 0.7, 1: 0.71}, "ring": {2: 0.6, 3: 0.61}})
    result = evaluate_claims(rows, [_claim("a > b")])[0]
    # execute / assert
    assert result.pairing == "welch"
    assert seed_effects(result) == [] and claim_seeds_markdown([result]) == []


def test_csv_and_markdown_show_every_paired_seed_and_the_direction_count(tmp_path):
    # prepare
    result = evaluate_claims(_rows({"full": FULL, "ring": RING}), [_claim("a > b")])[0]
    # execute
    path = write_claim_seeds_csv([result], tmp_path / "claims_per_seed.csv")
    text = "\n".join(claim_seeds_markdown([result]))
    # assert
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CLAIM_SEEDS_FIELDS
    assert [(r["claim"], r["seed"], r["metric"]) for r in rows] == [
        ("7", s, "knn_mean") for s in "1 2 10".split()
    ]
    assert float(rows[1]["a"]) == 0.70 and float(rows[1]["b"]) == 0.65
    assert "| 10 | 0.66 | 0.68 | -0.02 |" in text
    assert "The paper's direction at 2 of 3 seeds (exact sign test, two-sided p = 1);" in text
    assert "largest |effect| at seed 2 (+0.05)" in text


def test_sign_test_matches_the_binomial_by_hand():
    # prepare: 7 of 8 seeds one way, and a tie that does not count
    effects = [SeedEffect(str(s), 0.0, 0.0, e) for s, e in enumerate([1, 1, 1, 1, 1, 1, 1, -1, 0])]
    # execute / assert: P(X <= 1 or X >= 7), X ~ Bin(8, 1/2) = 2 * 9 / 256
    assert sign_test_p(effects) == pytest.approx(18 / 256)
    assert sign_test_p([SeedEffect("0", 0.0, 0.0, 0.0)]) is None
