"""The trainer's scheduled diagnostics: probe records and parameter snapshots (test-double hook)."""

from __future__ import annotations

import concurrent.futures
import dataclasses

import pytest
import torch

from peer.metrics import read_metrics
from peer.probe import collapse_std, embedding_a_mmd
from peer.trainer import Trainer
from tests.peer._tiny import tiny_config, tiny_data
from tests.peer.test_trainer import FakeHook


class IdentityHook(FakeHook):
    """Answers mix() with the published buffer unchanged (the mixed model equals the local one)."""

    def mix(self):
        future = super().mix()  # records the halved buffer; replace it by the published one
        self.returned[-1] = self.published[-1][1].clone()
        resolved: concurrent.futures.Future = concurrent.futures.Future()
        resolved.set_result(dataclasses.replace(future.result(), params=self.returned[-1]))
        return resolved


def _trainer(tmp_path, hook, objective="mae", steps=8, data=None, **eval_values):
    cfg = tiny_config(objective, steps=steps, period=2)
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, **eval_values))
    return Trainer.create(cfg, hook=hook, run_dir=tmp_path, data=data or tiny_data())


@pytest.mark.parametrize("objective", ["simsiam", "mae"])
def test_probe_records_on_the_round_schedule(tmp_path, objective):
    # prepare: 4 rounds (period 2, 8 steps), a probe every 2 rounds
    trainer = _trainer(tmp_path, FakeHook(), objective, probe_every=2)
    # execute
    summary = trainer.run(final_eval=False)
    probes = read_metrics(tmp_path / "metrics.jsonl", kind="probe")
    # assert
    assert [(p["round"], p["step"]) for p in probes] == [(2, 4), (4, 8)]
    for p in probes:
        assert p["probe_size"] == 32  # the whole 32-image synthetic test set (< probe_size 256)
        assert 0.0 <= p["collapse_std"] and 0.0 <= p["collapse_std_mixed"]
        assert p["a_mmd"] is not None and p["seconds"] > 0
    assert summary["diagnostics_seconds"] > 0
    rounds = read_metrics(tmp_path / "metrics.jsonl", kind="round")
    assert [r["round"] for r in rounds] == [1, 2, 3, 4]  # probing does not disturb the round records


def test_probe_compares_the_pre_mix_model_with_the_mixed_one(tmp_path):
    # prepare: an identity mix (mixed = local) and a halving mix (mixed params = local / 2)
    same = _trainer(tmp_path / "same", IdentityHook(), probe_every=4)
    halved = _trainer(tmp_path / "halved", FakeHook(), probe_every=4)
    # execute
    same.run(final_eval=False)
    halved.run(final_eval=False)
    (p_same,) = read_metrics(tmp_path / "same" / "metrics.jsonl", kind="probe")
    (p_halved,) = read_metrics(tmp_path / "halved" / "metrics.jsonl", kind="probe")
    # assert: with the identity mix both embeddings are the final model's, exactly
    z = same._embed_probe()
    assert p_same["collapse_std"] == pytest.approx(collapse_std(z), rel=1e-6)
    assert p_same["collapse_std_mixed"] == pytest.approx(p_same["collapse_std"], rel=1e-6)
    assert p_same["a_mmd"] == pytest.approx(embedding_a_mmd(z, z), rel=1e-5, abs=1e-9)
    # the halving mix moves the embeddings: the mixed side is the model after the mix was loaded
    z_mixed = halved._embed_probe()
    assert p_halved["collapse_std_mixed"] == pytest.approx(collapse_std(z_mixed), rel=1e-6)
    assert p_halved["a_mmd"] > p_same["a_mmd"] + 1e-3


def test_standalone_probe_has_no_neighbourhood_side(tmp_path):
    # prepare: no hook, rounds counted every 2 steps, a probe every round
    trainer = _trainer(tmp_path, None, "simsiam", steps=6, probe_every=1, snapshot_every=1)
    # execute
    trainer.run(final_eval=False)
    probes = read_metrics(tmp_path / "metrics.jsonl", kind="probe")
    # assert: collapse std on schedule, no A-MMD, nothing published so no snapshots
    assert [p["round"] for p in probes] == [1, 2, 3]
    assert all(
        p["collapse_std"] is not None and p["a_mmd"] is None and p["collapse_std_mixed"] is None
        for p in probes
    )
    assert not (tmp_path / "snapshots").exists()


def test_no_probe_when_off_or_without_evaluation_data(tmp_path):
    # prepare
    off = _trainer(tmp_path / "off", FakeHook(), probe_every=0)
    no_eval = _trainer(tmp_path / "no_eval", FakeHook(), data=tiny_data(with_eval=False), probe_every=1)
    # execute
    off.run(final_eval=False)
    no_eval.run(final_eval=False)
    # assert
    assert read_metrics(tmp_path / "off" / "metrics.jsonl", kind="probe") == []
    assert read_metrics(tmp_path / "no_eval" / "metrics.jsonl", kind="probe") == []


def test_snapshots_hold_the_published_params_on_their_schedule(tmp_path):
    # prepare: 4 rounds, a snapshot every 2 rounds
    hook = FakeHook()
    trainer = _trainer(tmp_path, hook, "simsiam", snapshot_every=2, probe_every=0)
    # execute
    trainer.run(final_eval=False)
    # assert: the files of rounds 2 and 4 hold exactly what was published for them (pre-mix)
    files = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert files == ["round_00002.pt", "round_00004.pt"]  # no temp files left behind
    published = {rnd: params for rnd, params, _ in hook.published}
    for rnd, step in ((2, 4), (4, 8)):
        saved = torch.load(tmp_path / "snapshots" / f"round_{rnd:05d}.pt", weights_only=True)
        assert saved["round"] == rnd and saved["step"] == step
        assert saved["fingerprint"] == trainer.layout.fingerprint
        assert saved["params"].dtype == torch.float32
        assert torch.equal(saved["params"], published[rnd])
        assert not torch.equal(saved["params"], hook.returned[rnd - 1])  # not the mixed params
