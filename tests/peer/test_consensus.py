"""The consensus model θ̄ (peer.consensus) and the fine-tuning protocol (peer.fine_tune)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from peer import checkpoint as ckpt
from peer.build import build_objective
from peer.config import ConfigError, config_from_dict, config_to_dict
from peer.consensus import (
    ConsensusError,
    PeerModel,
    build_consensus,
    check_same_architecture,
    consensus_config,
    live_peer_dirs,
    load_peer,
    weighted_average,
    write_consensus,
)
from peer.data import synthetic_dataset
from peer.fine_tune import fine_tune
from peer.local_data import LocalData
from peer.rundir import CONSENSUS_FILE, FINAL_FILE, PARTITION_FILES, checkpoint_path, peer_dir
from tests.peer._tiny import tiny_config, tiny_data


def _peer(peer_id: str, state: dict, fingerprint: str = "f", images: int = 1) -> PeerModel:
    return PeerModel(
        peer_id=peer_id, images=images, state=state, fingerprint=fingerprint, config={}, final={}
    )


def test_weighted_average_of_known_tensors():
    # prepare: two states, weights 1 : 3 (not normalised), a float16 tensor and an integer counter
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([2.0], dtype=torch.float16), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([6.0], dtype=torch.float16), "n": torch.tensor(5)}
    # execute
    mean = weighted_average([a, b], [1, 3])
    # assert: 0.25 a + 0.75 b per float tensor in its own dtype; the counter takes the larger value
    assert torch.equal(mean["w"], torch.tensor([2.5, 5.0]))
    assert mean["h"].dtype == torch.float16 and mean["h"].item() == 5.0
    assert mean["n"].item() == 5
    with pytest.raises(ConsensusError, match="non-negative weight"):
        weighted_average([a, b], [0, 0])


def test_architecture_mismatch_is_refused_with_the_tensor_named():
    # prepare
    base = {"enc.w": torch.zeros(4, 3), "enc.b": torch.zeros(4)}
    wider = {"enc.w": torch.zeros(5, 3), "enc.b": torch.zeros(4)}
    extra = {**base, "head.w": torch.zeros(2)}
    # execute / assert
    check_same_architecture([_peer("p0", base), _peer("p1", dict(base))])  # same: no error
    with pytest.raises(ConsensusError, match=r"p1.*enc\.w has shape \(5, 3\), not \(4, 3\)"):
        check_same_architecture([_peer("p0", base), _peer("p1", wider)])
    with pytest.raises(ConsensusError, match="head.w"):
        check_same_architecture([_peer("p0", base), _peer("p1", extra)])
    with pytest.raises(ConsensusError, match="fingerprint"):
        check_same_architecture([_peer("p0", base), _peer("p1", base, fingerprint="g")])
    with pytest.raises(ConsensusError, match="no live peer"):
        check_same_architecture([])


def test_finetune_config_keys_are_validated_by_name():
    # execute / assert
    cfg = config_from_dict({"eval": {"finetune_images": 0}})
    assert cfg.eval.finetune_images == 0 and cfg.eval.finetune_epochs >= 1
    for key, value in [("finetune_images", -1), ("finetune_epochs", 0), ("finetune_lr", 0.0)]:
        with pytest.raises(ConfigError, match=f"eval.{key}"):
            config_from_dict({"eval": {key: value}})


class _Encoder(nn.Module):
    """A small conv encoder with the objective interface fine_tune needs (``encode``)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(4)
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten(1)


def test_fine_tune_beats_chance_and_states_its_protocol():
    # prepare: one synthetic set (4 class templates) split into train and test; chance = 0.25
    data = synthetic_dataset(320, 4, shape=(1, 16, 16), seed=0)
    train, test = data.subset(np.arange(256)), data.subset(np.arange(256, 320))
    torch.manual_seed(0)
    model, before = _Encoder(), torch.get_rng_state()
    # execute
    out = fine_tune(model, train, test, 4, epochs=3, lr=3e-3, batch_size=32, seed=0)
    # assert: well above chance, the protocol is in the result, the caller's RNG is untouched
    assert out["accuracy"] > 0.6, out
    assert out["images"] == 256 and out["epochs"] == 3 and out["test_size"] == 64
    assert out["optimizer"] == "AdamW" and out["augmentation"] == "none" and out["lr"] == 3e-3
    assert torch.equal(torch.get_rng_state(), before) and model.training


def _write_peer(run: Path, name: str, index: int, size: int, scale: float, train_limit: int | None) -> None:
    """A finished peer's directory: final checkpoint (tiny SimSiam, weights scaled), partition report,
    final.json."""
    cfg = tiny_config()
    values = config_to_dict(cfg)
    values["data"].update(peer_index=index, num_peers=2, train_limit=train_limit)
    cfg, objective, layout = build_objective(config_from_dict(values), tiny_data(), torch.device("cpu"))
    with torch.no_grad():
        for p in objective.parameters():
            p.mul_(scale)
    directory = peer_dir(run, name)
    ckpt.save_checkpoint(
        checkpoint_path(directory),
        model=objective,
        optimizer=None,
        scaler=None,
        step=4,
        round=2,
        config=config_to_dict(cfg),
        extra={"fingerprint": layout.fingerprint},
    )
    sizes = [size, 0] if index == 0 else [0, size]
    report = {"peers": [{"peer": i, "size": s} for i, s in enumerate(sizes)]}
    (directory / PARTITION_FILES[0]).write_text(json.dumps(report))
    (directory / FINAL_FILE).write_text(
        json.dumps({"step": 4, "round": 2, "eval": {"knn": 0.5, "linear": 0.4}})
    )


def _synthetic_eval_data() -> LocalData:
    data = synthetic_dataset(160, 4, shape=(1, 16, 16), seed=0)
    bank, test = data.subset(np.arange(96)), data.subset(np.arange(96, 160))
    return LocalData(train=bank, bank=bank, test=test, own_test_idx=None, num_classes=4)


def test_consensus_of_a_run_weights_by_data_size_and_writes_consensus_json(tmp_path):
    # prepare: p0 trained on 100 images, p1 on min(500, 300) = 300; p2 died (no final.json)
    _write_peer(tmp_path, "p0", 0, 100, 1.0, None)
    _write_peer(tmp_path, "p1", 1, 500, 3.0, 300)
    peer_dir(tmp_path, "p2").mkdir(parents=True)
    # execute
    peers = [load_peer(d) for d in live_peer_dirs(tmp_path)]
    cfg = consensus_config(peers[0], ["eval.finetune_images=32", "eval.finetune_epochs=1"])
    theta = build_consensus(peers, cfg)
    path = write_consensus(
        tmp_path, ["eval.finetune_images=32", "eval.finetune_epochs=1"], _synthetic_eval_data()
    )
    # assert: weights 1/4, 3/4 -> every parameter is (0.25 * 1 + 0.75 * 3) = 2.5 x p0's
    assert [p.peer_id for p in peers] == ["p0", "p1"] and [p.images for p in peers] == [100, 300]
    for name, value in theta.state_dict().items():
        if value.is_floating_point() and name in dict(theta.named_parameters()):
            torch.testing.assert_close(value, 2.5 * peers[0].state[name])
    result = json.loads(path.read_text())
    assert path == tmp_path / CONSENSUS_FILE
    assert [p["weight"] for p in result["peers"]] == [0.25, 0.75]
    assert 0.0 <= result["knn"] <= 1.0 and 0.0 <= result["linear"] <= 1.0
    assert result["test_size"] == 64 and result["fine_tune"]["images"] == 32
    assert result["fine_tune"]["epochs"] == 1 and 0.0 <= result["fine_tune"]["accuracy"] <= 1.0
