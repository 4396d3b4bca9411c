"""DiLoCo's outer optimizer: the math against torch.optim.SGD, config, checkpoint state, a real swarm."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import threading

import pytest
import torch
from torch import nn

from gossip import topology
from gossip.hook import MixResult
from gossip.membership import StaticMembership
from gossip.node import NodeConfig
from gossip.runner import GossipRunner
from peer import checkpoint as ckpt
from peer.config import ConfigError, OuterConfig, load_config
from peer.data import synthetic_dataset
from peer.flat import FlatLayout
from peer.local_data import LocalData
from peer.metrics import read_metrics
from peer.outer_optimizer import OuterOptimizer, parameter_span
from peer.trainer import Trainer
from tests.peer._tiny import tiny_config, tiny_data


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))


def _outer(model: nn.Module, **cfg) -> OuterOptimizer:
    outer = OuterOptimizer(OuterConfig(enabled=True, **cfg), FlatLayout.from_module(model), model)
    outer.begin(model)
    return outer


def _mixes(start: torch.Tensor, rounds: int) -> list[torch.Tensor]:
    """What a few rounds could land: random steps away from the start (seeded)."""
    gen = torch.Generator().manual_seed(1)
    return [start + 0.1 * torch.randn(start.shape, generator=gen) for _ in range(rounds)]


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.9, True), (0.5, True), (0.9, False)])
def test_steps_equal_torch_sgd_on_the_same_pseudo_gradients(momentum, nesterov):
    # prepare: ours on the flat buffer, torch's SGD on a parameter holding the same parameter span
    model = _bn_model()
    outer = _outer(model, lr=0.7, momentum=momentum, nesterov=nesterov)
    reference = nn.Parameter(outer.start.clone())
    sgd = torch.optim.SGD([reference], lr=0.7, momentum=momentum, nesterov=nesterov)
    landed = outer.layout.flatten(model)
    for mixed in _mixes(landed, 4):
        # execute
        new, fields = outer.step(mixed)
        reference.grad = reference.detach() - mixed[: outer.span]  # Δ = θ_start − θ_mixed
        sgd.step()
        # assert: same parameters; the BN statistics past the span take the mix as is
        assert torch.allclose(new[: outer.span], reference.detach(), rtol=1e-5, atol=1e-6)
        assert torch.equal(new[outer.span :], mixed[outer.span :])
        assert fields["outer_delta_norm"] > 0
        assert torch.equal(outer.start, new[: outer.span])


@pytest.mark.parametrize("nesterov", [True, False])
def test_lr_one_and_no_momentum_is_plain_gossip_bit_for_bit(nesterov):
    # prepare
    model = _bn_model()
    outer = _outer(model, lr=1.0, momentum=0.0, nesterov=nesterov)
    for mixed in _mixes(outer.layout.flatten(model), 3):
        # execute
        new, fields = outer.step(mixed)
        # assert: θ_new is the mix itself, and θ_start − θ_new = Δ
        assert torch.equal(new, mixed)
        assert math.isclose(fields["outer_update_norm"], fields["outer_delta_norm"], rel_tol=1e-5)


def test_off_hands_the_mix_back_untouched_and_checkpoints_nothing():
    # prepare
    model = _bn_model()
    outer = OuterOptimizer(OuterConfig(), FlatLayout.from_module(model), model)
    mixed = torch.randn(FlatLayout.from_module(model).numel)
    # execute
    outer.begin(model)
    new, fields = outer.step(mixed)
    # assert
    assert new is mixed and fields == {} and outer.start is None
    assert outer.checkpoint_entries() == {}


def test_the_span_covers_parameters_only_and_the_whole_buffer_under_local_bn():
    # prepare
    model = _bn_model()
    params = sum(p.numel() for p in model.parameters())
    # execute / assert: BN running mean + var (2 x 4) follow the parameters under "average"
    assert parameter_span(FlatLayout.from_module(model, "average"), model) == params
    assert FlatLayout.from_module(model, "average").numel == params + 8
    assert parameter_span(FlatLayout.from_module(model, "local"), model) == params


def test_step_before_begin_is_an_error():
    model = _bn_model()
    outer = OuterOptimizer(OuterConfig(enabled=True), FlatLayout.from_module(model), model)
    with pytest.raises(RuntimeError, match="begin"):
        outer.step(FlatLayout.from_module(model).flatten(model))


# ---------------------------------------------------------------------------------------- config


def test_config_defaults_off_with_dilocos_values():
    cfg = load_config()
    assert dataclasses.asdict(cfg.outer) == {"enabled": False, "lr": 0.7, "momentum": 0.9, "nesterov": True}


def test_config_overrides_set_the_section():
    cfg = load_config(
        overrides=["outer.enabled=true", "outer.lr=1", "outer.momentum=0", "outer.nesterov=false"]
    )
    assert cfg.outer == OuterConfig(enabled=True, lr=1.0, momentum=0.0, nesterov=False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("outer.lr=0", "outer.lr: expected > 0"),
        ("outer.lr=-0.5", "outer.lr: expected > 0"),
        ("outer.momentum=1.0", "outer.momentum: expected 0 <= momentum < 1"),
        ("outer.momentum=-0.1", "outer.momentum: expected 0 <= momentum < 1"),
        ("outer.enabled=maybe", "outer.enabled: expected bool"),
        ("outer.beta=0.5", "outer.beta: unknown key"),
    ],
)
def test_bad_outer_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=[override])


# ---------------------------------------------------------------------------------------- trainer


class ShrinkHook:
    """A deterministic stand-in for a neighbourhood: the mix is 0.98 x the published params + 0.001."""

    def __init__(self, failure: str | None = None) -> None:
        self.published: list[torch.Tensor] = []
        self.failure = failure

    def publish(self, params, round, embedding=None):
        self.published.append(params.clone())

    def mix(self):
        params = self.published[-1] if self.failure else self.published[-1] * 0.98 + 0.001
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(
            MixResult(
                round=len(self.published),
                params=params,
                embedding=None,
                self_weight=1.0,
                failure=self.failure,
            )
        )
        return future


def _trainer(steps: int, hook=None, run_dir=None, **outer) -> Trainer:
    cfg = tiny_config("simsiam", steps=steps, period=2)
    cfg = dataclasses.replace(cfg, outer=OuterConfig(enabled=True, **outer))
    return Trainer.create(cfg, hook=hook or ShrinkHook(), run_dir=run_dir, data=tiny_data(with_eval=False))


def test_momentum_and_start_survive_a_checkpoint_and_resume_continues_identically(tmp_path):
    # prepare: uninterrupted 6 steps vs 3 steps (mid-interval) + checkpoint + resume to 6
    full = _trainer(6)
    full.run(final_eval=False)
    first = _trainer(3)
    first.run(final_eval=False)
    path = first.save_checkpoint(tmp_path / "mid.pt")
    # execute
    second = _trainer(6)
    second.resume(path)
    restored = (second.outer.start.clone(), second.outer.momentum.clone())
    second.run(final_eval=False)
    # assert: the state came back, and the resumed run ends where the uninterrupted one does
    assert torch.equal(restored[0], first.outer.start) and torch.equal(restored[1], first.outer.momentum)
    assert torch.equal(second.flat_params(), full.flat_params())
    assert torch.equal(second.outer.momentum, full.outer.momentum)


def test_a_checkpoint_without_outer_state_restarts_the_momentum(tmp_path):
    # prepare: the same mid-run checkpoint with its outer entry removed
    first = _trainer(3)
    first.run(final_eval=False)
    state = ckpt.load_checkpoint(first.save_checkpoint(tmp_path / "mid.pt"))
    assert state["extra"]["outer"]["momentum"] is not None
    del state["extra"]["outer"]
    ckpt.atomic_torch_save(state, tmp_path / "bare.pt")
    # execute
    second = _trainer(6)
    second.resume(tmp_path / "bare.pt")
    # assert: nothing is known; begin() re-takes θ_start from the model
    assert second.outer.start is None and second.outer.momentum is None
    second.outer.begin(second.objective)
    assert torch.equal(second.outer.start, second.flat_params()[: second.outer.span])


def test_a_state_transfer_restarts_the_interval():
    # prepare
    trainer = _trainer(4)
    trainer.run(final_eval=False)
    momentum = trainer.outer.momentum.clone()
    pulled = trainer.flat_params() + 0.5
    # execute: a late joiner's pull overwrites the model
    trainer.load_flat_params(pulled)
    trainer.outer.begin(trainer.objective)
    # assert: θ_start is the pulled model; the momentum is kept
    assert torch.equal(trainer.outer.start, pulled[: trainer.outer.span])
    assert torch.equal(trainer.outer.momentum, momentum)


def test_a_round_that_did_not_mix_steps_from_the_local_params(tmp_path):
    # prepare
    trainer = _trainer(2, hook=ShrinkHook(failure="mix timeout"), run_dir=tmp_path)
    start = trainer.flat_params()[: trainer.outer.span]
    # execute
    trainer.run(final_eval=False)
    # assert: Δ = θ_start − θ_local; Nesterov's first step is θ_start − 0.7 x 1.9 Δ
    local = trainer.hook.published[0][: trainer.outer.span]
    expected = start - 0.7 * 1.9 * (start - local)
    assert torch.allclose(trainer.flat_params()[: trainer.outer.span], expected, atol=1e-6)
    (record,) = read_metrics(tmp_path / "metrics.jsonl", kind="round")
    assert record["error"] == "mix timeout"
    assert math.isclose(record["outer_delta_norm"], float((start - local).norm()), rel_tol=1e-5)


# ---------------------------------------------------------------------------------------- swarm


def _peer_data(seed: int) -> LocalData:
    train = synthetic_dataset(64, 4, shape=(1, 16, 16), seed=seed)
    return LocalData(train=train, bank=None, test=None, own_test_idx=None, num_classes=4)


def _swarm_peer(index: int, membership: StaticMembership, run_dir) -> Trainer:
    cfg = tiny_config("simsiam", steps=6, period=2)
    cfg = dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, num_peers=2, peer_index=index),
        outer=OuterConfig(enabled=True),
    )
    peer_id = f"peer-{index}"
    trainer = Trainer.create(cfg, run_dir=run_dir / peer_id, data=_peer_data(index), peer_id=peer_id)
    node = NodeConfig(
        swarm_id="outer", peer_id=peer_id, layout_fingerprint=trainer.layout.fingerprint, pull_deadline_s=20.0
    )
    trainer.hook = GossipRunner.start(node, membership, topology.parse("ring"))
    return trainer


def test_two_real_peers_take_outer_steps_over_gossip_and_stay_in_consensus(tmp_path):
    # prepare: two peers, own data, one static membership, real gRPC gossip on 127.0.0.1
    membership = StaticMembership({})
    trainers: list[Trainer] = []
    try:
        trainers = [_swarm_peer(i, membership, tmp_path) for i in range(2)]
        threads = [threading.Thread(target=t.run, kwargs={"final_eval": False}) for t in trainers]
        # execute
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "a peer did not finish its 6 steps"
    finally:
        for trainer in trainers:
            trainer.request_stop()
            trainer.hook.close()
    # assert: three mixed rounds each, both neighbours answered, every round took an outer step
    for trainer in trainers:
        rounds = read_metrics(tmp_path / trainer.peer_id / "metrics.jsonl", kind="round")
        assert [r["round"] for r in rounds] == [1, 2, 3]
        assert all("error" not in r and r["answered"] == r["expected"] == 1 for r in rounds)
        assert all(r["outer_delta_norm"] > 0 for r in rounds)
        # round 1 (momentum from zero): ‖θ_new − θ_start‖ = 0.7 x 1.9 x ‖Δ‖
        assert math.isclose(
            rounds[0]["outer_update_norm"], 1.33 * rounds[0]["outer_delta_norm"], rel_tol=1e-4
        )
    # same initial weights, the same two-peer average and the same outer state: the peers stay equal
    a, b = (t.flat_params() for t in trainers)
    assert torch.allclose(a, b, atol=1e-6)
