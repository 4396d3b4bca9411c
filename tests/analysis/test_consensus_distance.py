"""The encoder's own consensus distance, from real final checkpoints of tiny objectives."""

from __future__ import annotations

import torch

from analysis.consensus_distance import consensus_distance, encoder_consensus_distance
from peer import objectives
from peer.consensus import live_peer_dirs, load_peer
from tests.peer._tiny import tiny_config
from tests.peer.test_consensus import _write_peer


def test_encoder_names_are_what_encode_runs_and_nothing_else():
    # prepare
    simsiam = objectives.build(tiny_config("simsiam").objective)
    mae = objectives.build(tiny_config("mae").objective)
    # execute
    simsiam_names, mae_names = simsiam.encoder_parameter_names(), mae.encoder_parameter_names()
    # assert: every encoder parameter, no head / decoder one
    assert simsiam_names == [f"backbone.{n}" for n, _ in simsiam.backbone.named_parameters()]
    assert mae_names == [f"encoder.{n}" for n, _ in mae.encoder.named_parameters()]
    assert "encoder.cls_token" in mae_names and not any("decoder" in n for n in mae_names)


def test_encoder_distance_counts_the_encoder_only(tmp_path):
    # prepare: p1's weights are 3x p0's, so each encoder is ||e0|| away from their mean 2 e0
    _write_peer(tmp_path, "p0", 0, 100, 1.0, None)
    _write_peer(tmp_path, "p1", 1, 100, 3.0, None)
    p0 = load_peer(live_peer_dirs(tmp_path)[0])
    names = [
        n for n in p0.state if n.startswith("backbone.") and "running" not in n and "num_batches" not in n
    ]
    # execute
    got = encoder_consensus_distance(tmp_path)
    # assert
    expected = sum(float(p0.state[n].double().pow(2).sum()) for n in names)
    assert got is not None and abs(got - expected) <= 1e-9 * expected
    everything = [
        torch.cat([t.double().flatten() for t in s.values() if t.is_floating_point()])
        for s in (p0.state, load_peer(live_peer_dirs(tmp_path)[1]).state)
    ]
    assert got < consensus_distance(everything)


def test_encoder_distance_needs_two_finished_peers(tmp_path):
    # prepare: one finished peer, one without final.json, and a run dir with no peers at all
    _write_peer(tmp_path / "one", "p0", 0, 100, 1.0, None)
    (tmp_path / "one" / "peers" / "p1").mkdir(parents=True)
    # execute / assert
    assert encoder_consensus_distance(tmp_path / "one") is None
    assert encoder_consensus_distance(tmp_path / "missing") is None
