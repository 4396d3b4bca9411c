"""Power and decisions on synthetic numbers with known answers: seeds for a half-width <= δ/2,
and confirmed / refuted / equivalence / underpowered from a CI and δ."""

from __future__ import annotations

import math

import pytest

from analysis.power import (
    MIN_SEEDS,
    assess,
    decide,
    describe_protocol,
    power_note,
    seeds_for_sd,
    seeds_needed,
    t_half_width,
)

# Student t 97.5 % quantiles (statistics tables): df 4, 5, 6
T_975 = {4: 2.776445105, 5: 2.570581836, 6: 2.446911851}


def test_half_width_matches_the_table():
    assert t_half_width(1.0, 5) == pytest.approx(T_975[4] / math.sqrt(5), rel=1e-8)
    with pytest.raises(ValueError, match="n >= 2"):
        t_half_width(1.0, 1)


def test_seeds_needed_matches_a_hand_computed_case():
    # prepare: pilot differences -1, 0, 1 have sample sd 1; δ = 2, so the half-width must be <= 1.
    # By hand: n = 5: 2.776 / √5 = 1.242; n = 6: 2.571 / √6 = 1.049; n = 7: 2.447 / √7 = 0.925 -> 7
    # execute
    plan = seeds_needed([-1.0, 0.0, 1.0], delta=2.0)
    # assert
    assert plan.pilot_sd == pytest.approx(1.0) and plan.pilot_n == 3
    assert plan.seeds == 7
    assert plan.half_width == pytest.approx(T_975[6] / math.sqrt(7), rel=1e-8)
    assert T_975[5] / math.sqrt(6) > 1.0  # 6 seeds would not do
    assert "7 seeds give a 95 % half-width of 0.925 <= δ/2 = 1" in plan.describe()


def test_seeds_needed_never_goes_below_five():
    # a pilot with almost no spread still asks for the minimum
    assert seeds_needed([0.010, 0.011, 0.0105], delta=0.02).seeds == MIN_SEEDS == 5
    assert seeds_for_sd(0.0, 0.01) == 5


def test_seeds_needed_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        seeds_needed([0.1], delta=0.02)
    with pytest.raises(ValueError, match="delta must be > 0"):
        seeds_needed([0.1, 0.2], delta=0.0)
    with pytest.raises(ValueError, match="more than"):
        seeds_for_sd(1.0, 1e-4)


@pytest.mark.parametrize(
    ("low", "high", "delta", "expected"),
    [
        (0.01, 0.05, 0.02, "confirmed"),  # CI above 0
        (0.001, 0.005, 0.02, "confirmed"),  # above 0 and inside ±δ: a real effect wins
        (-0.05, -0.01, 0.02, "refuted"),  # CI below 0
        (-0.01, 0.015, 0.02, "refuted (equivalence)"),  # contains 0, inside ±δ
        (-0.02, 0.02, 0.02, "refuted (equivalence)"),  # on the boundary: half-width exactly δ/2 decides
        (-0.01, 0.03, 0.02, "underpowered"),  # contains 0, reaches past δ
        (-0.01, 0.03, None, "no delta"),
        (None, None, 0.02, "underpowered"),  # one seed: no CI
    ],
)
def test_decide_on_known_intervals(low, high, delta, expected):
    assert decide(low, high, delta) == expected


def test_decide_rejects_a_non_positive_delta():
    with pytest.raises(ValueError, match="delta must be > 0"):
        decide(-0.1, 0.1, 0.0)


def test_assess_pairs_by_seed_and_notes_a_small_real_effect():
    # prepare: per-seed effects 0.004, 0.005, 0.006 (seed "9" of first has no partner and is dropped)
    first = {"0": 0.504, "1": 0.505, "2": 0.506, "9": 0.9}
    second = {"0": 0.5, "1": 0.5, "2": 0.5}
    # execute
    v = assess(first, second, paired=True, delta=0.02)
    # assert: mean 0.005, sd 0.001, half-width t(2) 4.303 * 0.001 / √3 = 0.002484
    assert v.effect == pytest.approx(0.005)
    assert v.half_width == pytest.approx(4.302652729 * 0.001 / math.sqrt(3), rel=1e-6)
    assert v.decision == "confirmed" and v.seeds_needed == 5
    assert v.notes == ("the effect is real but its CI lies inside (0, δ = 0.02)",)


def test_assess_without_both_sides_is_no_data_and_welch_has_no_seed_estimate():
    assert assess({}, {"0": 0.5}, paired=True, delta=0.02).decision == "no data"
    v = assess({"0": 0.6, "1": 0.62}, {"0": 0.5, "1": 0.51, "2": 0.49}, paired=False, delta=0.02)
    assert v.decision == "confirmed" and v.seeds_needed is None


def test_power_note_states_half_width_against_delta_half():
    assert power_note(None, 0.02, [0.1]) == "fewer than 2 seeds: no CI, so no decision at δ = 0.02"
    assert power_note(0.1, None, []) == "no δ stated: equivalence cannot be tested"
    line = power_note(0.005, 0.02, [-1e-3, 0.0, 1e-3])
    assert line.startswith("half-width 0.005 ≤ δ/2 = 0.01 (3 seeds)") and "needs 5 seeds" in line


def test_protocol_names():
    assert describe_protocol("knn_mean") == "kNN, per-peer (mean over peers) [knn_mean]"
    assert describe_protocol("linear_mean") == "linear, per-peer (mean over peers) [linear_mean]"
    assert describe_protocol("consensus_knn") == "kNN, θ̄ (consensus model) [consensus_knn]"
    assert describe_protocol("theta_finetune") == "fine-tune, θ̄ (consensus model) [theta_finetune]"
    assert describe_protocol("wall_s") == "wall_s"
