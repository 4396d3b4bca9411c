"""gossip.overlap: training goes on while a round's mix is in flight (test-double hook, unit tests only)."""

from __future__ import annotations

import concurrent.futures
import threading

import pytest
import torch

from gossip.hook import MixResult, NeighbourReport
from peer.metrics import read_metrics
from peer.overlap import with_local_progress
from peer.trainer import Trainer
from tests.peer._tiny import tiny_config, tiny_data


class DelayedHook:
    """mix() returns a future the test resolves later, with the published buffer scaled by 0.5.

    Records, at every publish, whether an earlier round's future was still unresolved (overlap must
    land a round before publishing the next)."""

    def __init__(self, resolve_after_s: float | None = None) -> None:
        self.published: list[tuple[int, torch.Tensor]] = []
        self.futures: list[concurrent.futures.Future] = []
        self.mixed: list[torch.Tensor] = []
        self.published_over_pending = 0
        self.resolve_after_s = resolve_after_s
        self.timers: list[threading.Timer] = []

    def publish(self, params, round, embedding=None):
        self.published_over_pending += sum(not f.done() for f in self.futures)
        self.published.append((round, params.clone()))

    def mix(self):
        round, params = self.published[-1]
        self.mixed.append(params * 0.5)
        future: concurrent.futures.Future = concurrent.futures.Future()
        self.futures.append(future)
        if self.resolve_after_s is not None:
            timer = threading.Timer(self.resolve_after_s, self.resolve, args=(len(self.futures) - 1,))
            self.timers.append(timer)
            timer.start()
        return future

    def resolve(self, index: int) -> None:
        round, _ = self.published[index]
        self.futures[index].set_result(
            MixResult(
                round=round,
                params=self.mixed[index].clone(),
                embedding=None,
                self_weight=0.5,
                neighbours=(NeighbourReport("peer-1", True, 0.5, round, 0, 100, 0.01),),
                pull_seconds=0.01,
                mix_seconds=0.001,
            )
        )


def test_with_local_progress_adds_the_steps_taken_since_the_publish():
    # prepare
    mixed, published, current = (
        torch.tensor([1.0, 2.0]),
        torch.tensor([10.0, 10.0]),
        torch.tensor([11.0, 7.0]),
    )
    # execute
    out = with_local_progress(mixed, published, current)
    # assert: θ_mix + (θ_now − θ_p), inputs untouched
    assert torch.equal(out, torch.tensor([2.0, -1.0]))
    assert torch.equal(published, torch.tensor([10.0, 10.0])) and torch.equal(mixed, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="differ in shape"):
        with_local_progress(mixed, published, torch.zeros(3))


def test_training_goes_on_while_the_mix_is_in_flight_and_it_lands_with_the_local_progress(tmp_path):
    # prepare: a round at step 3; its mix resolves only after step 4 has been taken
    cfg = tiny_config("simsiam", steps=5, period=3)
    cfg.gossip.overlap = True
    hook = DelayedHook()
    trainer = Trainer.create(cfg, hook=hook, run_dir=tmp_path, data=tiny_data(with_eval=False))
    original_step, original_land = trainer._train_step, trainer._land_round
    at_landing: list[tuple[int, torch.Tensor]] = []

    def step_then_resolve():
        out = original_step()
        if trainer.step == 3 and hook.futures and not hook.futures[0].done():  # step 4 is being taken
            hook.resolve(0)
        return out

    def remember_then_land(in_flight):
        at_landing.append((trainer.step, trainer.flat_params()))
        original_land(in_flight)

    trainer._train_step, trainer._land_round = step_then_resolve, remember_then_land
    # execute
    trainer.run(final_eval=False)
    # assert: published at step 3, landed after step 4 (one step in flight), then trained on
    assert [r for r, _ in hook.published] == [1] and at_landing[0][0] == 4 and trainer.round == 1
    (record,) = read_metrics(tmp_path / "metrics.jsonl", kind="round")
    assert record["round"] == 1 and record["step"] == 4 and record["overlap_steps"] == 1
    assert record["answered"] == 1 and trainer.step == 5


def test_the_model_after_landing_is_the_mix_plus_the_local_progress(tmp_path):
    # prepare: the round of step 2 resolves after step 3; the run stops at step 3, so the model
    # after the run is exactly what landed (the final landing happens in _finish)
    cfg = tiny_config("mae", steps=3, period=2)
    cfg.gossip.overlap = True
    hook = DelayedHook()
    trainer = Trainer.create(cfg, hook=hook, run_dir=None, data=tiny_data(with_eval=False))
    original_land = trainer._land_round
    before: list[torch.Tensor] = []

    def resolve_then_land(in_flight):
        before.append(trainer.flat_params())
        if not hook.futures[0].done():
            hook.resolve(0)
        original_land(in_flight)

    trainer._land_round = resolve_then_land
    # execute
    trainer.run(final_eval=False)
    # assert
    assert trainer.step == 3 and trainer.round == 1
    expected = hook.mixed[0] + (before[0] - hook.published[0][1])
    assert torch.allclose(trainer.flat_params(), expected, atol=1e-6)


def test_a_round_lands_before_the_next_publish(tmp_path):
    # prepare: every mix resolves 50 ms after it starts, steps take far less
    cfg = tiny_config("simsiam", steps=8, period=2)
    cfg.gossip.overlap = True
    hook = DelayedHook(resolve_after_s=0.05)
    trainer = Trainer.create(cfg, hook=hook, run_dir=tmp_path, data=tiny_data(with_eval=False))
    try:
        # execute
        summary = trainer.run(final_eval=False)
    finally:
        for timer in hook.timers:
            timer.cancel()
    # assert: 4 rounds published in order, none over an unresolved one, all landed by the end
    assert [r for r, _ in hook.published] == [1, 2, 3, 4]
    assert hook.published_over_pending == 0
    assert summary["round"] == 4 and trainer.round == 4
    rounds = read_metrics(tmp_path / "metrics.jsonl", kind="round")
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]
    assert all(r["overlap_steps"] >= 0 for r in rounds)
