"""RoundMixer on its own: weights handed back for lost neighbours, nobody answering, shape checks."""

from __future__ import annotations

import pytest
import torch

from gossip.round_mixer import RoundMixer
from protocol.frames import CorruptStream


def test_round_mixer_hands_back_the_weight_of_a_neighbour_lost_mid_stream():
    # prepare: b and c deliver progressively; c dies after half of its params were mixed
    torch.manual_seed(3)
    own, xb, xc = torch.randn(300_000), torch.randn(300_000), torch.randn(300_000).half()
    mixer = RoundMixer(own, 0.4, {"b": 0.3, "c": 0.3})
    mixer.attach("b", xb)
    mixer.attach("c", xc)
    # execute
    mixer.progress("b", 4 * 200_000)
    mixer.progress("c", 2 * 150_000)
    mixed_before_drop = mixer.mixed
    mixer.drop("c")
    mixer.progress("b", 4 * 300_000)
    params, self_w, kept, distance = mixer.finish()
    # assert
    assert mixed_before_drop == 150_000
    assert self_w == pytest.approx(0.7) and kept == {"b": 0.3}
    torch.testing.assert_close(params, 0.7 * own + 0.3 * xb)
    assert distance == pytest.approx(float(((own - xb) ** 2).sum()), rel=1e-4)


def test_round_mixer_with_nobody_answering_returns_our_params():
    # prepare
    own = torch.randn(1000)
    mixer = RoundMixer(own, 0.5, {"b": 0.5})
    # execute
    mixer.drop("b")
    params, self_w, kept, distance = mixer.finish()
    # assert
    assert torch.equal(params, own) and params.data_ptr() != own.data_ptr()
    assert self_w == 1.0 and kept == {} and distance == 0.0


def test_round_mixer_refuses_a_neighbour_with_another_shape():
    # prepare
    mixer = RoundMixer(torch.zeros(10), 0.5, {"b": 0.5})
    # execute / assert
    with pytest.raises(CorruptStream, match="shape"):
        mixer.attach("b", torch.zeros(11))


@pytest.mark.parametrize("weights", [{"b": 0.25, "c": 0.25}, {"b": 0.5}, {"b": 0.2, "c": 0.3}])
def test_round_mixer_mix_and_distance_match_the_weighted_average(weights):
    # prepare: equal neighbour weights take the fused path (mix from the difference), others do not
    torch.manual_seed(5)
    n = 200_003  # several mixing blocks and a ragged last one
    own = torch.randn(n)
    theirs = {peer: torch.randn(n) for peer in weights}
    self_weight = 1.0 - sum(weights.values())
    mixer = RoundMixer(own, self_weight, weights)
    for peer, params in theirs.items():
        mixer.attach(peer, params)
    # execute: deliver in uneven steps
    for received in (70_001, 150_000, n):
        for peer in weights:
            mixer.progress(peer, 4 * received)
    params, _, _, distance = mixer.finish()
    # assert
    expected = self_weight * own + sum(w * theirs[p] for p, w in weights.items())
    mean = sum(theirs.values()) / len(theirs)
    torch.testing.assert_close(params, expected, rtol=1e-5, atol=1e-6)
    assert distance == pytest.approx(float(((own - mean) ** 2).sum()), rel=1e-4)


def test_round_mixer_rejects_a_non_finite_neighbour_on_the_fused_path():
    # prepare: two equally weighted neighbours, c's second half is NaN
    torch.manual_seed(6)
    n = 150_000
    own, xb, xc = torch.randn(n), torch.randn(n), torch.randn(n)
    xc[100_000:] = float("nan")
    mixer = RoundMixer(own, 0.5, {"b": 0.25, "c": 0.25})
    mixer.attach("b", xb)
    mixer.attach("c", xc)
    # execute: the first 90,000 elements are mixed with c before its NaN arrives
    mixer.progress("b", 4 * 90_000)
    mixer.progress("c", 4 * 90_000)
    mixer.progress("b", 4 * n)
    mixer.progress("c", 4 * n)
    params, self_w, kept, _ = mixer.finish()
    # assert: c is gone everywhere, as if it had never been mixed
    assert "non-finite" in mixer.rejected["c"]
    assert self_w == pytest.approx(0.75) and kept == {"b": 0.25}
    assert torch.isfinite(params).all()
    torch.testing.assert_close(params, 0.75 * own + 0.25 * xb, rtol=1e-5, atol=1e-6)
