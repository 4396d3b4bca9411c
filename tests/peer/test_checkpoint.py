"""Checkpoints: bit-for-bit round trip, atomic writes, exact resume."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

from peer import checkpoint as ckpt
from peer.trainer import Trainer
from tests.peer._tiny import tiny_config, tiny_data


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_round_trip_bit_for_bit(tmp_path):
    # prepare: a trainer with a few steps of optimizer state
    trainer = Trainer.create(tiny_config("simsiam", steps=3), data=tiny_data(with_eval=False))
    trainer.run(final_eval=False)
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    rng_after_save = torch.rand(3)
    # execute: restore into a fresh trainer
    other = Trainer.create(tiny_config("simsiam", seed=9), data=tiny_data(with_eval=False))
    state = ckpt.load_checkpoint(path)
    step, rnd = ckpt.restore_checkpoint(state, model=other.objective, optimizer=other.optimizer)
    # assert
    assert (step, rnd) == (3, 1)
    assert _state_equal(trainer.objective.state_dict(), other.objective.state_dict())
    opt_a, opt_b = trainer.optimizer.state_dict(), other.optimizer.state_dict()
    assert opt_a["param_groups"] == opt_b["param_groups"]
    for key in opt_a["state"]:
        assert _state_equal(opt_a["state"][key], opt_b["state"][key])
    assert torch.equal(torch.rand(3), rng_after_save)  # torch RNG restored to the saved point
    assert state["config"]["objective"]["name"] == "simsiam"


def test_rng_states_round_trip():
    # prepare
    state = ckpt.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    # execute
    ckpt.restore_rng_state(state)
    # assert
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


def test_resume_continues_identically(tmp_path):
    # prepare: uninterrupted 6 steps vs 3 steps + checkpoint + resume in a new trainer to 6
    full = Trainer.create(tiny_config("simsiam", steps=6, period=2), data=tiny_data(with_eval=False))
    full.run(final_eval=False)
    first = Trainer.create(tiny_config("simsiam", steps=3, period=2), data=tiny_data(with_eval=False))
    first.run(final_eval=False)
    path = first.save_checkpoint(tmp_path / "mid.pt")
    # execute
    second = Trainer.create(tiny_config("simsiam", steps=6, period=2), data=tiny_data(with_eval=False))
    second.resume(path)
    second.run(final_eval=False)
    # assert
    assert second.step == 6 and second.round == full.round == 3
    assert torch.equal(second.flat_params(), full.flat_params())
    assert _state_equal(second.objective.state_dict(), full.objective.state_dict())


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    # prepare
    path = tmp_path / "c.pt"
    ckpt.atomic_torch_save({"a": torch.ones(2)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    # execute
    with pytest.raises(RuntimeError, match="boom"):
        ckpt.atomic_torch_save({"a": Unpicklable()}, path)
    # assert: the old checkpoint is intact and no temp file is left behind
    assert torch.equal(torch.load(path)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["c.pt"]


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
