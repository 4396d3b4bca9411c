"""Claim evaluation on hand-made results rows: statistics, pairing by seed and the yes/no verdict."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from analysis.claims import (
    CLAIMS_CSV_FIELDS,
    evaluate_claims,
    load_claims,
    mean_ci,
    parse_claim,
    quantity_per_seed,
    welch_ci,
    write_claims_csv,
)

T_975_DF2 = 4.302652729  # Student t, 97.5 % quantile, 2 degrees of freedom (statistics tables)


def row(seed: int, knn: float, status: str = "complete", **axes: str) -> dict:
    return {"run": f"r{seed}", "status": status, "seed": str(seed), "knn_mean": str(knn), **axes}


def test_mean_ci_matches_the_hand_computed_t_interval():
    # [1, 2, 3]: mean 2, sample std 1 -> 2 ± t(0.975, 2) / sqrt(3)
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    half = T_975_DF2 / math.sqrt(3)
    assert mean == 2.0
    assert low == pytest.approx(2 - half, abs=1e-6) and high == pytest.approx(2 + half, abs=1e-6)


def test_mean_ci_of_one_value_has_no_interval_and_of_none_no_mean():
    assert mean_ci([0.7]) == (0.7, None, None)
    assert mean_ci([]) == (None, None, None)


def test_welch_interval_matches_hand_computation():
    # a = [1, 2, 3] (var 1), b = [5, 7] (var 2): se^2 = 1/3 + 1, df = (4/3)^2 / ((1/3)^2/2 + 1^2/1) = 32/19
    diff, low, high = welch_ci([1.0, 2.0, 3.0], [5.0, 7.0])
    from scipy import stats

    half = stats.t.ppf(0.975, 32 / 19) * math.sqrt(4 / 3)
    assert diff == -4.0
    assert low == pytest.approx(-4 - half) and high == pytest.approx(-4 + half)


def test_drop_is_paired_by_seed_and_drops_unpaired_seeds():
    # prepare: seed 2 has no dir0.1 run; seed order differs between the two ends
    rows = [
        row(0, 0.80, split="iid"),
        row(1, 0.70, split="iid"),
        row(2, 0.90, split="iid"),
        row(1, 0.65, split="dir0.1"),
        row(0, 0.60, split="dir0.1"),
        row(2, 0.10, status="failed", split="dir0.1"),
    ]
    claim = parse_claim(
        {
            "id": 1,
            "claim": "x",
            "expect": "a > b",
            "a": {"quantity": "drop", "from": {"split": "iid"}, "to": {"split": "dir0.1"}},
            "b": {"quantity": "knn_mean", "where": {"split": "iid"}},
        }
    )
    # execute
    drops = quantity_per_seed(rows, claim.a)
    # assert: 0.80-0.60 and 0.70-0.65; the failed seed-2 row is ignored
    assert drops.keys() == {"0", "1"}
    assert drops["0"] == pytest.approx(0.20) and drops["1"] == pytest.approx(0.05)


def _mim_vs_cl(rows):
    claim = parse_claim(
        {
            "id": 1,
            "claim": "MAE drops less than SimSiam",
            "expect": "a < b",
            "a": {
                "quantity": "drop",
                "where": {"method": "mae"},
                "from": {"split": "iid"},
                "to": {"split": "dir0.1"},
            },
            "b": {
                "quantity": "drop",
                "where": {"method": "simsiam"},
                "from": {"split": "iid"},
                "to": {"split": "dir0.1"},
            },
        }
    )
    return evaluate_claims(rows, [claim])[0]


def _drop_rows(mae_drops, simsiam_drops):
    rows = []
    for method, drops in (("mae", mae_drops), ("simsiam", simsiam_drops)):
        for seed, d in enumerate(drops):
            rows += [
                row(seed, 0.8, method=method, split="iid"),
                row(seed, 0.8 - d, method=method, split="dir0.1"),
            ]
    return rows


def test_clear_separation_is_reproduced_with_a_paired_difference():
    # prepare: MAE drops 0.01-0.02, SimSiam 0.10-0.12
    result = _mim_vs_cl(_drop_rows([0.01, 0.02, 0.015], [0.10, 0.12, 0.11]))
    # assert
    assert result.reproduced and result.pairing == "paired" and result.seeds == 3
    assert result.a.mean == pytest.approx(0.015) and result.b.mean == pytest.approx(0.11)
    assert result.diff_mean == pytest.approx(-0.095) and result.diff_high < 0
    assert result.a.description == "kNN drop iid->dir0.1 (method=mae)"


def test_means_in_the_right_order_but_ci_crossing_zero_is_not_reproduced():
    # prepare: mean drop MAE 0.04 < SimSiam 0.05, but the per-seed differences change sign
    result = _mim_vs_cl(_drop_rows([0.01, 0.09, 0.02], [0.06, 0.03, 0.06]))
    # assert
    assert result.a.mean < result.b.mean
    assert result.diff_low < 0 < result.diff_high
    assert not result.reproduced
    assert any("does not exclude 0" in r for r in result.reasons)


def test_one_seed_gives_no_interval_and_no_verdict_yes():
    result = _mim_vs_cl(_drop_rows([0.01], [0.20]))
    assert result.a.low is None and result.diff_low is None and result.seeds == 1
    assert not result.reproduced
    assert any("fewer than 2 seeds" in r for r in result.reasons)


def test_missing_rows_are_not_reproduced_and_say_which_selection_is_empty():
    # prepare: SimSiam's dir0.1 runs all failed
    rows = [r for r in _drop_rows([0.01, 0.02, 0.015], [0.10, 0.12, 0.11])]
    for r in rows:
        if r["method"] == "simsiam" and r["split"] == "dir0.1":
            r["status"] = "failed"
    # execute
    result = _mim_vs_cl(rows)
    # assert
    assert not result.reproduced and result.b.mean is None
    assert any(
        "b: no complete row" in r and "method=simsiam, split=dir0.1" in r and "3 not complete" in r
        for r in result.reasons
    )


def _connectivity_claim():
    return parse_claim(
        {
            "id": 2,
            "claim": "accuracy rises with connectivity",
            "expect": "a > b",
            "a": {"quantity": "knn_mean", "where": {"graph": "full"}},
            "b": {"quantity": "knn_mean", "where": {"graph": "ring"}},
            "monotone": {"axis": "graph", "order": ["ring", "rr4", "full"]},
        }
    )


def _graph_rows(means):
    return [row(seed, m + 0.001 * seed, graph=g) for g, m in means.items() for seed in range(3)]


def test_monotone_order_holding_is_reproduced():
    result = evaluate_claims(_graph_rows({"ring": 0.6, "rr4": 0.65, "full": 0.7}), [_connectivity_claim()])[0]
    assert result.reproduced
    assert result.monotone.holds and list(result.monotone.means) == ["ring", "rr4", "full"]


def test_monotone_violated_is_not_reproduced_even_when_a_beats_b():
    # prepare: full > ring clearly, but random-regular beats full
    result = evaluate_claims(_graph_rows({"ring": 0.6, "rr4": 0.75, "full": 0.7}), [_connectivity_claim()])[0]
    # assert
    assert result.diff_low > 0 and not result.monotone.holds
    assert not result.reproduced
    assert any("monotone order along graph violated" in r for r in result.reasons)


def test_monotone_level_without_runs_is_not_reproduced():
    result = evaluate_claims(_graph_rows({"ring": 0.6, "full": 0.7}), [_connectivity_claim()])[0]
    assert not result.reproduced and result.monotone.means["rr4"] is None
    assert any("no complete rows for graph = rr4" in r for r in result.reasons)


def _full_vs_ring():
    return parse_claim(
        {
            "id": 2,
            "claim": "c",
            "expect": "a > b",
            "delta": 0.01,
            "a": {"quantity": "knn_mean", "where": {"graph": "full"}},
            "b": {"quantity": "knn_mean", "where": {"graph": "ring"}},
        }
    )


def test_a_seed_without_its_pair_is_left_out_and_named():
    # prepare: paired seeds 0-3 whose differences are noisy; seed 4 of ring is still running, and
    # its full run alone is far above every ring run (an unpaired Welch interval would shrink)
    diffs = [0.03, -0.01, 0.04, -0.02]
    paired = [row(s, 0.6 + 0.05 * s, graph="ring") for s in range(4)]
    paired += [row(s, 0.6 + 0.05 * s + d, graph="full") for s, d in enumerate(diffs)]
    lone = row(4, 0.95, graph="full")
    # execute
    without = evaluate_claims(paired, [_full_vs_ring()])[0]
    result = evaluate_claims([*paired, lone], [_full_vs_ring()])[0]
    # assert: the lone run changes nothing but a named reason
    assert result.pairing == "paired" and result.seeds == 4
    assert sorted(result.a.per_seed) == ["0", "1", "2", "3"]
    assert result.assessment == without.assessment
    difference = (result.diff_mean, result.diff_low, result.diff_high)
    assert difference == (without.diff_mean, without.diff_low, without.diff_high)
    assert result.a.mean == without.a.mean
    assert any("seed 4 only on a" in r for r in result.reasons)
    assert not any("seed 4" in r for r in without.reasons)


def test_sides_sharing_fewer_than_two_seeds_fall_back_to_welch():
    # prepare: full ran seeds 0-2, ring seeds 2-3: one seed in common
    rows = [row(s, 0.7 + 0.001 * s, graph="full") for s in (0, 1, 2)]
    rows += [row(s, 0.6 + 0.001 * s, graph="ring") for s in (2, 3)]
    # execute
    result = evaluate_claims(rows, [_full_vs_ring()])[0]
    # assert
    assert result.pairing == "welch" and result.seeds == 1
    assert result.diff_mean == pytest.approx(0.701 - 0.6025)
    assert any("share fewer than 2 seeds" in r and "Welch" in r for r in result.reasons)


def test_claims_csv_has_the_issue_columns_and_the_older_ones(tmp_path):
    # prepare
    claim = _drop_claim(delta=0.02)
    result = evaluate_claims(_drop_rows([0.01, 0.02, 0.015], [0.10, 0.12, 0.11]), [claim])[0]
    # execute
    path = write_claims_csv([result], tmp_path / "claims.csv")
    # assert
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CLAIMS_CSV_FIELDS
    issue = ("claim", "metric", "effect", "ci_low", "ci_high", "delta", "n_seeds", "decision")
    older = ("quantity_a", "mean_a", "ci_low_a", "ci_high_a", "quantity_b", "mean_b", "seeds", "reproduced")
    assert set(issue + ("half_width", "protocol") + older) <= set(CLAIMS_CSV_FIELDS)
    out = rows[0]
    assert out["claim"] == "1: MAE drops less than SimSiam" and out["metric"] == "knn_mean"
    assert out["protocol"] == "kNN, per-peer (mean over peers) [knn_mean]"
    assert out["decision"] == "confirmed" and out["reproduced"] == "yes"
    assert out["n_seeds"] == out["seeds"] == "3" and float(out["delta"]) == 0.02
    # effect in the paper's direction: SimSiam's drop minus MAE's, per seed 0.09, 0.10, 0.095
    half = T_975_DF2 * 0.005 / math.sqrt(3)
    assert float(out["effect"]) == pytest.approx(0.095)
    assert float(out["ci_low"]) == pytest.approx(0.095 - half, abs=1e-5)
    assert float(out["half_width"]) == pytest.approx(half, abs=1e-5)
    assert float(out["mean_a"]) == pytest.approx(0.015)


# ---------------------------------------------------------------- decisions (issue 14, items 4-5)


def _drop_claim(delta=None, protocol=None):
    spec = {
        "id": 1,
        "claim": "MAE drops less than SimSiam",
        "expect": "a < b",
        "a": {
            "quantity": "drop",
            "where": {"method": "mae"},
            "from": {"split": "iid"},
            "to": {"split": "dir0.1"},
        },
        "b": {
            "quantity": "drop",
            "where": {"method": "simsiam"},
            "from": {"split": "iid"},
            "to": {"split": "dir0.1"},
        },
    }
    if delta is not None:
        spec["delta"] = delta
    if protocol is not None:
        spec["protocol"] = protocol
    return parse_claim(spec)


def _decide_on(effects, delta=0.02):
    """Per-seed effects (SimSiam's drop − MAE's drop) with MAE's drop fixed at 0.05."""
    rows = _drop_rows([0.05] * len(effects), [0.05 + e for e in effects])
    return evaluate_claims(rows, [_drop_claim(delta=delta)])[0]


def test_effect_clearly_in_the_paper_direction_is_confirmed():
    # effects 0.03, 0.04, 0.05, 0.04, 0.04: mean 0.04, sd 0.00707, half-width 0.00878 -> CI above 0
    result = _decide_on([0.03, 0.04, 0.05, 0.04, 0.04])
    v = result.assessment
    assert v.decision == "confirmed" and result.seeds == 5
    assert v.effect == pytest.approx(0.04)
    assert v.half_width == pytest.approx(2.776445105 * math.sqrt(0.00005) / math.sqrt(5), rel=1e-6)


def test_effect_clearly_against_the_paper_is_refuted():
    result = _decide_on([-0.03, -0.04, -0.05, -0.04, -0.04])
    assert result.assessment.decision == "refuted" and result.assessment.high < 0
    assert not result.reproduced


def test_ci_around_zero_inside_delta_is_refuted_by_equivalence():
    # effects ±0.002 around 0: mean 0, half-width ~0.0025, well inside ±δ = ±0.02
    result = _decide_on([0.002, -0.002, 0.001, -0.001, 0.0])
    v = result.assessment
    assert v.low < 0 < v.high and -0.02 <= v.low and v.high <= 0.02
    assert v.decision == "refuted (equivalence)"
    assert v.half_width <= 0.02 / 2 and v.seeds_needed == 5


def test_wide_ci_around_zero_is_underpowered_and_says_how_far_from_delta_half():
    # effects with sd 0.05 around 0 over 3 seeds: half-width ~0.124 > δ/2 = 0.01
    result = _decide_on([0.05, -0.05, 0.0])
    v = result.assessment
    assert v.decision == "underpowered"
    assert "half-width 0.124 > δ/2 = 0.01 (3 seeds)" in v.power
    # t(0.975, n-1) * 0.05 / sqrt(n) <= 0.01 first holds at n = 99 (scipy: n = 98 gives 0.010024)
    assert v.seeds_needed == 99 and "needs 99 seeds" in v.power
    assert "95 % CI of a − b does not exclude 0 on the claimed side" in result.reasons


def test_without_delta_a_ci_around_zero_is_no_delta_and_one_seed_is_underpowered():
    assert _decide_on([0.002, -0.002, 0.001], delta=None).assessment.decision == "no delta"
    assert _decide_on([0.002, -0.002, 0.001], delta=None).assessment.seeds_needed is None
    assert _decide_on([0.03]).assessment.decision == "underpowered"


def test_missing_side_is_no_data():
    rows = [r for r in _drop_rows([0.01, 0.02], [0.1, 0.1]) if r["method"] == "mae"]
    assert evaluate_claims(rows, [_drop_claim(delta=0.02)])[0].assessment.decision == "no data"


def test_protocol_moves_both_sides_to_its_column_and_bad_delta_is_rejected():
    # prepare: kNN says MAE drops less; the linear probe says the opposite
    rows = _drop_rows([0.01, 0.02, 0.015], [0.10, 0.12, 0.11])
    for r in rows:  # linear probe: MAE's dir0.1 runs lose 0.3, SimSiam's the same as under kNN
        bad = r["method"] == "mae" and r["split"] == "dir0.1"
        r["linear_mean"] = str(0.5 + 0.001 * int(r["seed"]) if bad else float(r["knn_mean"]))
    # execute
    claim = _drop_claim(delta=0.02, protocol="linear_mean")
    result = evaluate_claims(rows, [claim])[0]
    # assert
    assert claim.metric == "linear_mean" and claim.a.metric == "linear_mean"
    assert result.assessment.decision == "refuted"
    knn = parse_claim(
        {
            "id": 2,
            "a": {"quantity": "knn_mean"},
            "b": {"quantity": "knn_mean"},
            "expect": "a > b",
            "protocol": "linear_mean",
        }
    )
    assert knn.a.quantity == knn.b.quantity == "linear_mean"
    for bad in (0, -0.01, "x", True):
        with pytest.raises(ValueError, match="delta"):
            _drop_claim(delta=bad)
    with pytest.raises(ValueError, match="contradicts"):
        parse_claim(
            {
                "id": 3,
                "a": {"quantity": "drop", "metric": "linear_mean", "from": {"s": "x"}, "to": {"s": "y"}},
                "b": {"quantity": "knn_mean"},
                "expect": "a > b",
                "protocol": "knn_mean",
            }
        )


def test_the_study_grid_states_a_positive_delta_for_every_claim():
    # the grid the real study runs: every claim must be decidable (issue 14, item 4)
    grid = Path(__file__).resolve().parents[2] / "examples" / "study" / "claims.yaml"
    claims = load_claims(grid)
    assert [c.id for c in claims] == ["1", "1b", "2", "3", "3b"]
    assert all(c.delta is not None and c.delta > 0 for c in claims)
    assert all(c.metric == "knn_mean" for c in claims)


def test_load_claims_reads_the_grid_and_rejects_a_bad_expect(tmp_path):
    # prepare
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "axes: {graph: [ring, full]}\n"
        "claims:\n"
        "  - id: 2\n"
        "    claim: rises\n"
        "    a: {quantity: knn_mean, where: {graph: full}}\n"
        "    b: {quantity: knn_mean, where: {graph: ring}}\n"
        "    expect: a > b\n"
        "    monotone: {axis: graph, order: [ring, full]}\n"
    )
    # execute
    claims = load_claims(grid)
    # assert
    assert len(claims) == 1 and claims[0].expect == ">" and claims[0].monotone.order == ("ring", "full")
    assert claims[0].label == "2: rises"
    with pytest.raises(ValueError, match="expect"):
        parse_claim(
            {"id": 3, "a": {"quantity": "knn_mean"}, "b": {"quantity": "knn_mean"}, "expect": "a ~ b"}
        )
    with pytest.raises(ValueError, match="drop"):
        parse_claim(
            {
                "id": 4,
                "a": {"quantity": "drop", "from": {"split": "iid"}},
                "b": {"quantity": "knn_mean"},
                "expect": "a < b",
            }
        )
