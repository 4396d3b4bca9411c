"""The encoder's own consensus distance from real final checkpoints and round snapshots (tiny objectives)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from analysis.consensus_distance import consensus_distance, encoder_consensus_distance
from analysis.diagnostics import snapshot_consensus
from peer import objectives
from peer.checkpoint import save_round_snapshot
from peer.config import dump_config
from peer.consensus import live_peer_dirs, load_peer
from peer.flat import FlatLayout
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


def test_snapshot_rounds_carry_the_encoders_distance(tmp_path):
    # prepare: two peers' resolved configs and round-1 snapshots built on the real flat layout; p1's
    # encoder entries are 1 (p0's 0) and one head entry differs by 5
    cfg = tiny_config("simsiam")
    objective = objectives.build(cfg.objective)
    layout = FlatLayout.from_module(objective, cfg.train.bn_policy)
    encoder = set(objective.encoder_parameter_names())
    flats = [torch.zeros(layout.numel), torch.zeros(layout.numel)]
    n_encoder = 0
    for entry in layout.entries:
        if entry.name in encoder:
            flats[1][entry.offset : entry.offset + entry.numel] = 1.0
            n_encoder += entry.numel
    head = next(e for e in layout.entries if e.name not in encoder)
    flats[1][head.offset] = 5.0
    for peer, flat in zip(("p0", "p1"), flats):
        peer_dir = tmp_path / "peers" / peer
        peer_dir.mkdir(parents=True)
        dump_config(cfg, peer_dir / "config.yaml")
        save_round_snapshot(peer_dir, 1, layout, 1, 8, flat)
    # execute
    exact = snapshot_consensus(tmp_path)
    # assert: each encoder is 0.5 per element from the mean; the total adds the head's 2.5² per peer
    assert [e["round"] for e in exact] == [1]
    assert exact[0]["encoder_consensus_distance"] == pytest.approx(0.25 * n_encoder)
    assert exact[0]["consensus_distance"] == pytest.approx(0.25 * n_encoder + 6.25)


def test_snapshots_of_another_layout_get_no_encoder_distance(tmp_path):
    # prepare: configs say bn_policy local, the snapshots were published under "average"
    cfg = tiny_config("simsiam")
    layout = FlatLayout.from_module(objectives.build(cfg.objective), "average")
    local = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, bn_policy="local"))
    for peer, value in (("p0", 0.0), ("p1", 1.0)):
        peer_dir = tmp_path / "peers" / peer
        peer_dir.mkdir(parents=True)
        dump_config(local, peer_dir / "config.yaml")
        save_round_snapshot(peer_dir, 1, layout, 1, 8, torch.full((layout.numel,), value))
    # execute
    exact = snapshot_consensus(tmp_path)
    # assert
    assert exact[0]["encoder_consensus_distance"] is None
    assert exact[0]["consensus_distance"] == pytest.approx(0.25 * layout.numel)
