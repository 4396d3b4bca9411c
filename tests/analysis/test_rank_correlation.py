"""analysis.rank_correlation: Spearman's ρ and its CI against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.rank_correlation import ranks, spearman


def test_ties_share_their_mean_rank():
    assert ranks(np.array([10.0, 20.0, 10.0, 30.0])).tolist() == [1.5, 3.0, 1.5, 4.0]


def test_a_monotone_relation_has_rho_one_whatever_its_shape():
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert spearman(x, [math.exp(v) for v in x]).rho == pytest.approx(1.0)
    assert spearman(x, [-(v**3) for v in x]).rho == pytest.approx(-1.0)


def test_a_known_textbook_value_and_its_fisher_interval():
    # prepare: d² = [0, 1, 1, 4, 0, 4, 0, 0] -> ρ = 1 − 6·10 / (8·63) = 0.88095
    x = [1, 2, 3, 4, 5, 6, 7, 8]
    y = [1, 3, 2, 6, 5, 4, 7, 8]
    # execute
    c = spearman(x, y)
    # assert: ρ by the d² formula (no ties), CI by Fisher z with SE sqrt((1 + ρ²/2) / (n − 3))
    assert c.rho == pytest.approx(1 - 6 * 10 / (8 * 63))
    se = math.sqrt((1 + c.rho**2 / 2) / 5)
    assert c.ci_low == pytest.approx(math.tanh(math.atanh(c.rho) - 1.959964 * se), abs=1e-6)
    assert c.ci_high == pytest.approx(math.tanh(math.atanh(c.rho) + 1.959964 * se), abs=1e-6)
    assert c.ci_low < c.rho < c.ci_high < 1


def test_independent_noise_has_a_ci_that_contains_zero():
    rng = np.random.default_rng(0)
    c = spearman(rng.normal(size=40).tolist(), rng.normal(size=40).tolist())
    assert c.ci_low < 0 < c.ci_high


def test_too_few_or_constant_points_give_no_rho_or_no_ci():
    assert spearman([1.0, 2.0], [2.0, 1.0]).rho is None
    assert spearman([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]).rho is None
    three = spearman([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert three.rho == pytest.approx(0.5) and three.ci_low is None
    assert "no CI" in three.describe()


def test_non_finite_pairs_are_dropped():
    c = spearman([1.0, 2.0, float("nan"), 3.0, 4.0], [1.0, 2.0, 5.0, 3.0, 4.0])
    assert c.n == 4 and c.rho == pytest.approx(1.0)
