"""Adaptive pull deadlines (``gossip.deadline_s: auto``): the rule, its config, and real nodes using it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest
import torch

from gossip.adaptive_deadline import AdaptiveDeadline, PullDeadlines, percentile
from gossip.node import GossipNode, NodeConfig
from peer.config import ConfigError, load_config
from peer.metrics import round_fields

RULE = AdaptiveDeadline(floor_s=0.5, percentile=95.0, margin=2.0, window=32, min_samples=3)


def _tracker(samples: list[float], ceiling: float = 10.0, rule: AdaptiveDeadline = RULE) -> PullDeadlines:
    deadlines = PullDeadlines(ceiling, rule)
    for seconds in samples:
        deadlines.observe("b", seconds, None, deadlines.deadline("b"))
    return deadlines


# ---- the rule -------------------------------------------------------------------------------------


def test_percentile_interpolates_like_numpy():
    # prepare
    values = [4.0, 1.0, 3.0, 2.0, 5.0]
    # execute / assert: numpy.percentile(values, q) for these q
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(4.8)
    assert percentile(values, 100) == 5.0
    assert percentile([7.0], 95) == 7.0


def test_deadline_is_the_percentile_times_the_margin():
    # prepare: 20 pulls of 1.0 s .. 2.9 s
    samples = [1.0 + 0.1 * i for i in range(20)]
    # execute
    deadlines = _tracker(samples)
    # assert
    assert deadlines.deadline("b") == pytest.approx(percentile(samples, 95) * 2.0)


def test_fixed_deadlines_ignore_pull_times():
    # prepare
    deadlines = PullDeadlines(3.0)
    # execute
    for _ in range(10):
        deadlines.observe("b", 0.01, None, 3.0)
    # assert
    assert not deadlines.adaptive and deadlines.deadline("b") == 3.0 and deadlines.recent("b") == ()


def test_warm_up_gives_the_ceiling_until_enough_samples():
    # prepare
    deadlines = _tracker([0.1, 0.1], ceiling=8.0)
    # execute / assert
    assert deadlines.deadline("b") == 8.0
    assert deadlines.deadline("never-pulled") == 8.0
    deadlines.observe("b", 0.1, None, 8.0)
    assert deadlines.deadline("b") == 0.5  # third sample: 0.1 x 2 is below the floor


def test_floor_and_ceiling_clamp():
    # execute
    fast = _tracker([0.01] * 5)
    slow = _tracker([30.0] * 5, ceiling=10.0)
    # assert
    assert fast.deadline("b") == 0.5
    assert slow.deadline("b") == 10.0


def test_window_forgets_old_pulls():
    # prepare: slow once, then 32 fast pulls push those out of the window
    deadlines = _tracker([4.0] * 5 + [1.0] * 32)
    # execute / assert
    assert deadlines.recent("b") == (1.0,) * 32
    assert deadlines.deadline("b") == 2.0


def test_a_miss_widens_and_repeated_misses_reach_the_ceiling():
    # prepare: a neighbour that answered in 0.5 s (deadline 1 s) now takes 5 s
    deadlines = _tracker([0.5] * 10, ceiling=6.0)
    seen = [deadlines.deadline("b")]
    # execute: every pull misses its deadline until one is long enough
    while seen[-1] <= 5.0:
        deadlines.observe("b", seen[-1] * 0.95, "refused (not_yet)", seen[-1])
        seen.append(deadlines.deadline("b"))
    deadlines.observe("b", 5.0, None, seen[-1])
    # assert: doubled after each miss, capped at the ceiling; the slow pull then keeps it long
    assert seen == [1.0, 2.0, 4.0, 6.0]
    assert deadlines.deadline("b") > 5.0


def test_a_miss_never_shrinks_the_deadline():
    # prepare
    deadlines = _tracker([2.0] * 10)
    before = deadlines.deadline("b")
    # execute: a gRPC deadline hit whose measured time is (oddly) short
    deadlines.observe("b", 0.1, "deadline", before)
    # assert
    assert deadlines.deadline("b") >= before
    assert deadlines.recent("b")[-1] == before


def test_other_failures_change_nothing():
    # prepare
    deadlines = _tracker([1.0] * 5)
    before = (deadlines.deadline("b"), deadlines.recent("b"))
    # execute
    for kind in ("unavailable", "refused (round_gone)", "corrupt", "unauthenticated"):
        deadlines.observe("b", 0.001, kind, before[0])
    # assert
    assert (deadlines.deadline("b"), deadlines.recent("b")) == before


def test_neighbours_are_tracked_apart():
    # prepare
    deadlines = _tracker([2.0] * 5)
    # execute
    for _ in range(5):
        deadlines.observe("c", 0.05, None, deadlines.deadline("c"))
    # assert
    assert deadlines.deadline("b") == 4.0 and deadlines.deadline("c") == 0.5


@pytest.mark.parametrize(
    "bad",
    [
        dict(floor_s=0.0),
        dict(percentile=0.0),
        dict(percentile=101.0),
        dict(margin=0.9),
        dict(window=0),
        dict(min_samples=40),
    ],
)
def test_bad_rules_are_refused(bad):
    with pytest.raises(ValueError):
        AdaptiveDeadline(**bad)


def test_a_floor_above_the_ceiling_is_refused():
    with pytest.raises(ValueError, match="ceiling"):
        NodeConfig(
            swarm_id="s",
            peer_id="a",
            layout_fingerprint="l",
            pull_deadline_s=1.0,
            adaptive_deadline=AdaptiveDeadline(floor_s=2.0),
        )


# ---- config ---------------------------------------------------------------------------------------


def test_config_accepts_auto_and_keeps_numbers():
    # execute
    auto = load_config(
        overrides=["gossip.deadline_s=auto", "gossip.deadline_max_s=6", "gossip.deadline_min_s=0.2"]
    )
    fixed = load_config(overrides=["gossip.deadline_s=3"])
    default = load_config()
    # assert
    assert auto.gossip.deadline_s == "auto" and auto.gossip.pull_deadline_s == 6.0
    assert auto.gossip.deadline_min_s == 0.2 and auto.gossip.deadline_margin == 2.0
    assert fixed.gossip.deadline_s == 3.0 and fixed.gossip.pull_deadline_s == 3.0
    assert default.gossip.deadline_s == 10.0 and default.gossip.deadline_percentile == 95.0


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("gossip.deadline_s=fast", "gossip.deadline_s"),
        ("gossip.deadline_s=0", "gossip.deadline_s"),
        ("gossip.deadline_max_s=0", "gossip.deadline_max_s"),
        ("gossip.deadline_min_s=-1", "gossip.deadline_min_s"),
        ("gossip.deadline_min_s=20", "gossip.deadline_min_s"),
        ("gossip.deadline_percentile=0", "gossip.deadline_percentile"),
        ("gossip.deadline_percentile=150", "gossip.deadline_percentile"),
        ("gossip.deadline_margin=0.5", "gossip.deadline_margin"),
        ("gossip.deadline_margin=auto", "gossip.deadline_margin"),
    ],
)
def test_bad_deadline_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(overrides=["gossip.deadline_s=auto", override])


# ---- real nodes on 127.0.0.1 ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _nodes(*configs: NodeConfig):
    nodes = []
    try:
        for config in configs:
            nodes.append(await GossipNode.create(config))
        yield nodes
    finally:
        for node in nodes:
            await node.close()


def _config(peer_id: str, **overrides) -> NodeConfig:
    return NodeConfig(swarm_id="swarm", peer_id=peer_id, layout_fingerprint="layout", **overrides)


async def test_a_slow_neighbour_gets_a_longer_deadline_and_each_round_logs_it(caplog):
    # prepare: sync mode; "slow" publishes each round 0.5 s after "fast" (its pulls wait for it)
    adaptive = dict(pull_deadline_s=5.0, adaptive_deadline=RULE)
    caplog.set_level(logging.INFO, logger="gossip.node")
    async with _nodes(_config("a", **adaptive), _config("fast"), _config("slow")) as (a, fast, slow):
        loop = asyncio.get_running_loop()
        peers = {"fast": fast.address, "slow": slow.address}
        results = []
        # execute: 5 rounds (3 to warm up)
        for r in range(5):
            params = torch.full((1000,), float(r))
            a.publish(params, r)
            fast.publish(params, r)
            loop.call_later(0.5, slow.publish, params, r)
            results.append(await a.mix(r, peers, 1 / 3, {"fast": 1 / 3, "slow": 1 / 3}))
    # assert: warm-up rounds pull with the ceiling, later ones with each neighbour's own deadline
    deadlines = [{n.peer_id: n.deadline_s for n in res.neighbours} for res in results]
    assert deadlines[:3] == [{"fast": 5.0, "slow": 5.0}] * 3
    for later in deadlines[3:]:
        assert 0.5 <= later["fast"] < later["slow"] < 5.0
        assert later["slow"] >= 0.8  # about 2 x the 0.5 s wait
    assert all(res.answered == 2 for res in results)
    # ... and are logged: in the node's round line and in the trainer's round record
    lines = [rec.getMessage() for rec in caplog.records if "round 4:" in rec.getMessage()]
    assert lines and f"slow={deadlines[4]['slow']:.2f}s" in lines[0]
    record = round_fields(results[4], compute_seconds=0.0, blocked_seconds=0.0)
    assert [n["deadline_s"] for n in record["neighbours"]] == [deadlines[4]["fast"], deadlines[4]["slow"]]


async def test_fixed_deadline_nodes_report_the_fixed_deadline():
    async with _nodes(_config("a", pull_deadline_s=3.0), _config("b")) as (a, b):
        # prepare
        a.publish(torch.zeros(100), 0)
        b.publish(torch.ones(100), 0)
        # execute
        result = await a.mix(0, {"b": b.address}, 0.5, {"b": 0.5})
        # assert
        assert result.neighbours[0].answered and result.neighbours[0].deadline_s == 3.0
