"""The round budget: the pulls' share of a round's deadline, which grows when rounds end late."""

from __future__ import annotations

import pytest
import torch

from gossip.round_budget import RoundBudget
from tests.gossip.test_node import _config, _nodes


def test_the_base_margin_is_five_percent_at_most_half_a_second():
    # prepare
    budget = RoundBudget()
    # execute / assert: nothing observed yet
    assert budget.timeout(0.5) == pytest.approx(0.475)
    assert budget.timeout(10.0) == pytest.approx(9.5)


def test_a_late_round_widens_the_margin_to_grow_times_its_lateness():
    # prepare: a 10 s round whose pulls (timeout 9.5 s) and mix took 10.1 s: 0.6 s late
    budget = RoundBudget(window=4, grow=1.5)
    # execute
    lateness = budget.observe(10.1, 10.0)
    # assert: the next pulls get 10 - 1.5 x 0.6 = 9.1 s
    assert lateness == pytest.approx(0.6)
    assert budget.timeout(10.0) == pytest.approx(9.1)


def test_the_margin_is_capped_and_forgets_after_the_window():
    # prepare: one very late round (5 s past), then rounds in time
    budget = RoundBudget(window=3, grow=1.5, max_fraction=0.25)
    budget.observe(14.75, 10.0)
    # execute / assert: at most a quarter of the deadline is kept back
    assert budget.timeout(10.0) == pytest.approx(7.5)
    for _ in range(3):
        assert budget.observe(5.0, 10.0) == 0.0
    assert budget.timeout(10.0) == pytest.approx(9.5)


def test_bad_settings_are_refused():
    # execute / assert
    for kwargs in ({"window": 0}, {"grow": 0.5}, {"max_fraction": 1.0}):
        with pytest.raises(ValueError):
            RoundBudget(**kwargs)


async def test_a_node_gives_its_pulls_the_learned_timeout_and_its_round_ends_in_time():
    async with _nodes(_config("a", pull_deadline_s=1.0), _config("b")) as (a, b):
        # prepare: the node has seen a round 0.35 s late; b never publishes the round a waits for
        a.budget.observe(1.3, 1.0)
        a.publish(torch.zeros(100), 1)
        b.publish(torch.zeros(100), 0)
        # execute
        result = await a.mix(1, {"b": b.address}, 0.5, {"b": 0.5})
        # assert: the pull gave up at 1.0 - min(0.25, 1.5 x 0.35) = 0.75 s, well within the round
        assert not result.neighbours[0].answered
        assert 0.7 <= result.pull_seconds < 0.95
        assert result.pull_seconds + result.mix_seconds < 1.0
