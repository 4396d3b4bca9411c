"""Snapshot acceptance rules and trimmed mean: unit level (RoundMixer, robust) and over real gRPC."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from gossip import mixing, robust
from gossip.node import GossipNode, NodeConfig
from gossip.round_mixer import RoundMixer
from protocol.frames import MIN_CHUNK_BYTES

CHUNK = MIN_CHUNK_BYTES
N = 300_000  # > 2 mixing blocks, so rejections can happen after a mixed prefix


def _mixer(own, weights, **config):
    policy = robust.AcceptancePolicy(robust.RobustConfig(**config), robust.norm_sq(own))
    self_weight = 1.0 - sum(weights.values())
    trim = config.get("trim_fraction") if config.get("aggregation") == "trimmed_mean" else None
    return RoundMixer(own, self_weight, weights, policy=policy, trim_fraction=trim)


def _deliver(mixer, peer, params, step=1 << 16):
    """Feed ``params`` to the mixer in verified prefixes, as a stream would."""
    buffer = torch.empty_like(params)
    mixer.attach(peer, buffer)
    for lo in range(0, params.numel(), step):
        hi = min(lo + step, params.numel())
        buffer[lo:hi] = params[lo:hi]
        mixer.progress(peer, hi * params.element_size())


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", [5, N - 3])  # before anything was mixed / after most of it was
def test_non_finite_neighbour_is_rejected_and_never_reaches_the_result(bad, where):
    # prepare
    own, good, evil = torch.randn(N), torch.randn(N), torch.randn(N)
    evil[where] = bad
    mixer = _mixer(own, {"good": 0.25, "evil": 0.25})
    # execute
    _deliver(mixer, "good", good)
    _deliver(mixer, "evil", evil)
    params, self_w, kept, _ = mixer.finish()
    # assert
    assert "non-finite" in mixer.rejected["evil"]
    assert kept == {"good": 0.25} and self_w == pytest.approx(0.75)
    assert torch.isfinite(params).all()
    torch.testing.assert_close(params, 0.75 * own + 0.25 * good)


def test_norm_jump_is_rejected_from_the_prefix_and_collapse_at_the_end():
    # prepare
    own = torch.randn(N)
    big, zero = own * 50, torch.zeros(N)
    mixer = _mixer(own, {"big": 0.3, "zero": 0.3}, max_norm_ratio=10.0)
    # execute
    _deliver(mixer, "big", big)
    _deliver(mixer, "zero", zero)
    params, self_w, kept, _ = mixer.finish()
    # assert
    assert mixer.rejected["big"].startswith("norm jump")
    assert mixer.rejected["zero"].startswith("norm collapse")
    assert kept == {} and self_w == pytest.approx(1.0)
    torch.testing.assert_close(params, own)


def test_within_bounds_is_mixed_exactly_as_before():
    # prepare
    own, other = torch.randn(N), torch.randn(N) * 3
    mixer = _mixer(own, {"other": 0.5}, max_norm_ratio=10.0, max_distance_ratio=10.0)
    unscreened = _mixer(own, {"other": 0.5}, max_norm_ratio=None)
    # execute
    _deliver(mixer, "other", other)
    _deliver(unscreened, "other", other)
    params, _, kept, _ = mixer.finish()
    # assert
    assert mixer.rejected == {} and kept == {"other": 0.5}
    assert torch.equal(params, unscreened.finish()[0])  # bit for bit
    torch.testing.assert_close(params, mixing.weighted_average([own, other], [0.5, 0.5]))


def test_distance_jump_is_rejected():
    # prepare
    own = torch.randn(N)
    far = own + 5 * own.norm() / math.sqrt(N)  # ||far - own|| = 5 ||own||, norm within 10x
    mixer = _mixer(own, {"far": 0.5}, max_norm_ratio=10.0, max_distance_ratio=2.0)
    # execute
    _deliver(mixer, "far", far)
    params, _, kept, _ = mixer.finish()
    # assert
    assert mixer.rejected["far"].startswith("distance jump")
    assert torch.equal(params, own)


def test_fp16_neighbour_is_screened_in_float32():
    # prepare: values whose squares overflow fp16 (> 65504) but are fine in fp32
    own = torch.full((N,), 300.0)
    other = torch.full((N,), 310.0).half()
    mixer = _mixer(own, {"other": 0.5})
    # execute
    _deliver(mixer, "other", other)
    params, _, kept, _ = mixer.finish()
    # assert
    assert mixer.rejected == {}
    torch.testing.assert_close(params, torch.full((N,), 305.0))


def test_trimmed_mean_drops_the_extremes_per_coordinate():
    # prepare: 5 buffers, beta = 0.2 trims one value from each side
    buffers = [
        torch.tensor([1.0, -9.0, 3.0]),
        torch.tensor([2.0, 0.0, 3.0]),
        torch.tensor([3.0, 1.0, 3.0]),
        torch.tensor([100.0, 2.0, 3.0]),
        torch.tensor([-100.0, 3.0, 3.0]),
    ]
    out = torch.empty(3)
    # execute
    robust.trimmed_mean(buffers, 0.2, out, block=2)
    # assert
    torch.testing.assert_close(out, torch.tensor([2.0, 1.0, 3.0]))


def test_trimmed_mean_without_trimming_is_the_mean():
    buffers = [torch.randn(1000) for _ in range(3)]
    out = torch.empty(1000)
    robust.trimmed_mean(buffers, 0.2, out)  # floor(0.2 * 3) = 0: nothing trimmed
    torch.testing.assert_close(out, torch.stack(buffers).mean(0))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(aggregation="median!"),
        dict(trim_fraction=0.5),
        dict(max_norm_ratio=1.0),
        dict(max_norm_ratio=math.inf),
        dict(max_distance_ratio=0.0),
    ],
)
def test_bad_robust_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        NodeConfig(swarm_id="s", peer_id="a", layout_fingerprint="l", **kwargs)


@contextlib.asynccontextmanager
async def _nodes(*configs):
    nodes = [await GossipNode.create(c) for c in configs]
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.close()


def _config(peer_id, **kw):
    return NodeConfig(swarm_id="s", peer_id=peer_id, layout_fingerprint="l", chunk_bytes=CHUNK, **kw)


async def test_node_rejects_a_nan_neighbour_over_grpc_and_logs_it(caplog):
    async with _nodes(_config("a"), _config("good"), _config("evil")) as (a, good, evil):
        # prepare
        xa, xg, xe = torch.randn(50_000), torch.randn(50_000), torch.randn(50_000)
        xe[40_000] = math.nan
        for node, x in ((a, xa), (good, xg), (evil, xe)):
            node.publish(x, 0)
        # execute
        result = await a.mix(0, {"good": good.address, "evil": evil.address}, 0.4, {"good": 0.3, "evil": 0.3})
        # assert
        reports = {n.peer_id: n for n in result.neighbours}
        assert not reports["evil"].answered and reports["evil"].error.startswith("rejected: non-finite")
        assert reports["evil"].weight == 0.0 and reports["good"].weight == pytest.approx(0.3)
        assert result.self_weight == pytest.approx(0.7)
        torch.testing.assert_close(result.params, 0.7 * xa + 0.3 * xg)
        assert any("rejected evil's snapshot" in r.getMessage() for r in caplog.records)


async def test_node_trimmed_mean_ignores_one_outlier():
    configs = [
        _config(p, aggregation="trimmed_mean", trim_fraction=0.25, max_norm_ratio=None)
        for p in ("a", "b", "c", "d")
    ]
    async with _nodes(*configs) as nodes:
        # prepare: d is an outlier in every coordinate (but finite)
        xs = [torch.randn(20_000) for _ in range(3)] + [torch.full((20_000,), 1e6)]
        for node, x in zip(nodes, xs):
            node.publish(x, 0)
        a = nodes[0]
        # execute
        result = await a.mix(
            0, {n.config.peer_id: n.address for n in nodes[1:]}, 0.25, {"b": 0.25, "c": 0.25, "d": 0.25}
        )
        # assert: per coordinate, drop min and max of 4 values, average the middle two
        stacked = torch.stack(xs).sort(dim=0).values[1:3].mean(0)
        torch.testing.assert_close(result.params, stacked)
        assert result.params.abs().max() < 100
