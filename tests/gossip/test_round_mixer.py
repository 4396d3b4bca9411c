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
