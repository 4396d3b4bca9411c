"""The training loop with a test-double gossip hook (allowed in unit tests only)."""

from __future__ import annotations

import concurrent.futures
import dataclasses

import numpy as np
import pytest
import torch

from gossip.hook import MixResult, NeighbourReport
from peer.metrics import read_metrics
from peer.trainer import Trainer
from tests.peer._tiny import tiny_config, tiny_data


class FakeHook:
    """Records publish() calls and answers mix() with the published buffer scaled by 0.5."""

    def __init__(self, embedding: torch.Tensor | None = None) -> None:
        self.published: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []
        self.returned: list[torch.Tensor] = []
        self.embedding = embedding

    def publish(self, params, round, embedding=None):
        self.published.append((round, params.clone(), embedding))

    def mix(self):
        round, params, _ = self.published[-1]
        mixed = params * 0.5
        self.returned.append(mixed)
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(
            MixResult(
                round=round,
                params=mixed,
                embedding=self.embedding,
                self_weight=0.5,
                neighbours=(NeighbourReport("peer-1", True, 0.5, round, 0, 100, 0.01),),
                bytes_out=100,
                pull_seconds=0.01,
                mix_seconds=0.001,
                neighbour_distance_sq=2.0,
            )
        )
        return future


@pytest.mark.parametrize("objective", ["simsiam", "mae"])
def test_publish_and_mix_every_period_and_mixed_params_loaded(tmp_path, objective):
    # prepare
    hook = FakeHook()
    trainer = Trainer.create(
        tiny_config(objective, steps=6, period=2),
        hook=hook,
        run_dir=tmp_path,
        data=tiny_data(with_eval=False),
    )
    # execute
    summary = trainer.run()
    # assert: rounds 1..3 after steps 2, 4, 6; the last mixed buffer is what the model holds
    assert [r for r, _, _ in hook.published] == [1, 2, 3]
    assert summary["step"] == 6 and summary["round"] == 3 and trainer.round == 3
    assert torch.equal(trainer.flat_params(), hook.returned[-1])
    assert hook.published[0][1].numel() == trainer.layout.numel
    rounds = read_metrics(tmp_path / "metrics.jsonl", kind="round")
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert rounds[0]["answered"] == 1 and rounds[0]["expected"] == 1 and rounds[0]["bytes_in"] == 100
    trains = read_metrics(tmp_path / "metrics.jsonl", kind="train")
    assert [r["step"] for r in trains] == list(range(1, 7))
    assert all(r["loss"] is not None and r["images_per_s"] > 0 for r in trains)
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "checkpoints" / "last.pt").is_file()


def test_global_embedding_is_handed_to_the_objective(tmp_path):
    # prepare: an objective spy on set_global_embedding
    z = torch.ones(4, 32)
    trainer = Trainer.create(
        tiny_config("mae", steps=2, period=2), hook=FakeHook(embedding=z), data=tiny_data(with_eval=False)
    )
    seen = []
    trainer.objective.set_global_embedding = lambda emb, rnd: seen.append((emb, rnd))
    # execute
    trainer.run()
    # assert
    assert len(seen) == 1 and torch.equal(seen[0][0], z) and seen[0][1] == 1


def test_standalone_counts_rounds_and_evaluates(tmp_path):
    # prepare
    trainer = Trainer.create(
        tiny_config("simsiam", steps=4, period=2, eval_every=2), run_dir=tmp_path, data=tiny_data()
    )
    # execute
    summary = trainer.run()
    # assert: init eval, periodic at 2 and 4, final; keys of the global and own-distribution sets
    evals = read_metrics(tmp_path / "metrics.jsonl", kind="eval")
    assert [e["tag"] for e in evals] == ["init", "periodic", "periodic", "final"]
    assert {"knn", "linear", "knn_own", "linear_own"} <= set(summary["eval"])
    assert 0.0 <= summary["eval"]["knn"] <= 1.0 and summary["round"] == 2


def test_periodic_evaluations_are_knn_curve_points_on_the_curve_test_set(tmp_path):
    # prepare: a curve test set of 8 of the 32 test images
    data = tiny_data()
    data.curve_test = data.test.subset(np.arange(8))
    trainer = Trainer.create(
        tiny_config("simsiam", steps=4, period=2, eval_every=2), run_dir=tmp_path, data=data
    )
    # execute
    trainer.run()
    # assert: the periodic points are kNN on 8 images, the final evaluation the full one
    evals = {e["tag"] + str(e["step"]): e for e in read_metrics(tmp_path / "metrics.jsonl", kind="eval")}
    for key in ("periodic2", "periodic4"):
        assert evals[key]["test_size"] == 8 and 0.0 <= evals[key]["knn"] <= 1.0
        assert "linear" not in evals[key]
    assert {"knn", "linear", "knn_own"} <= set(evals["final4"])


def test_request_stop_ends_the_loop(tmp_path):
    # prepare: no step limit, stop requested from inside the loop after 3 steps
    trainer = Trainer.create(tiny_config("simsiam", period=100), data=tiny_data(with_eval=False))
    original = trainer._train_step

    def step_then_maybe_stop():
        out = original()
        if trainer.step == 2:  # the third step is in progress
            trainer.request_stop()
        return out

    trainer._train_step = step_then_maybe_stop
    # execute
    summary = trainer.run()
    # assert
    assert summary["step"] == 3 and summary["stopped"]


def test_epoch_budget_and_seeded_order():
    # prepare: 64 images, batch 16 -> 4 steps per epoch
    a = Trainer.create(tiny_config("simsiam", epochs=1.5), data=tiny_data(with_eval=False))
    b = Trainer.create(tiny_config("simsiam", epochs=1.5), data=tiny_data(with_eval=False))
    # execute
    a.run(final_eval=False)
    # assert: 6 steps; the same seed gives the same batches, each epoch a permutation
    assert a.step == 6
    assert torch.equal(a._batch(0), b._batch(0))
    epoch = torch.cat([b._batch(i) for i in range(4)])
    assert len({bytes(x.numpy().tobytes()) for x in epoch}) == len(epoch)


def test_load_flat_params_and_model_state():
    # prepare
    a = Trainer.create(tiny_config("simsiam"), data=tiny_data(with_eval=False))
    b = Trainer.create(
        dataclasses.replace(tiny_config("simsiam"), train=dataclasses.replace(tiny_config().train, seed=5)),
        data=tiny_data(with_eval=False),
    )
    assert not torch.equal(a.flat_params(), b.flat_params())
    # execute
    b.load_flat_params(a.flat_params())
    same_after_flat = torch.equal(a.flat_params(), b.flat_params())
    zeros = {k: v * 0 if v.is_floating_point() else v for k, v in a.objective.state_dict().items()}
    b.load_model_state(zeros)
    # assert
    assert same_after_flat
    assert b.flat_params().abs().sum() == 0
    b.set_round(7)
    assert b.round == 7


class FailingHook(FakeHook):
    """Every round resolves like a round the gossip layer gave up on: local params, with the reason."""

    def mix(self):
        round, params, _ = self.published[-1]
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(
            MixResult(
                round=round, params=params * 0.5, embedding=None, self_weight=1.0, failure="mix timeout"
            )
        )
        return future


def test_a_failed_round_keeps_the_local_params_and_logs_why(tmp_path):
    # prepare
    trainer = Trainer.create(
        tiny_config("simsiam", steps=2, period=2),
        hook=FailingHook(),
        run_dir=tmp_path,
        data=tiny_data(with_eval=False),
    )
    original = trainer._gossip_round
    before: list[torch.Tensor] = []

    def remember_then_round():
        before.append(trainer.flat_params())
        original()

    trainer._gossip_round = remember_then_round
    # execute
    trainer.run(final_eval=False)
    # assert: the round counts, the model holds its own params, the record says why
    assert trainer.round == 1 and trainer.last_mix is None
    assert torch.equal(trainer.flat_params(), before[0])
    (record,) = read_metrics(tmp_path / "metrics.jsonl", kind="round")
    assert record["error"] == "mix timeout" and record["round"] == 1 and "answered" not in record
    assert record["blocked_seconds"] >= 0.0 and record["compute_seconds"] > 0.0
