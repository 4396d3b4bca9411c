"""The probe batch and its representation diagnostics (peer.probe)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from peer.config import ConfigError, config_from_dict
from peer.data import synthetic_dataset
from peer.local_data import load_local_data
from peer.objectives.mar import a_mmd
from peer.probe import collapse_std, embedding_a_mmd, probe_batch, probe_embeddings
from peer.trainer import Trainer
from tests.peer._tiny import tiny_config, tiny_data


def test_collapse_std_is_zero_for_collapsed_embeddings_whatever_their_scale():
    # prepare: every embedding points the same way (different lengths: L2 normalisation removes them)
    direction = torch.randn(64)
    z = torch.rand(128, 1) * 5 + 0.1
    # execute
    value = collapse_std(z * direction)
    # assert
    assert value == pytest.approx(0.0, abs=1e-6)


def test_collapse_std_is_about_one_for_isotropic_gaussian_embeddings():
    # prepare: SimSiam §4.1: std of l2-normalised i.i.d. Gaussian vectors is 1/sqrt(d)
    z = torch.randn(4096, 512, generator=torch.Generator().manual_seed(0))
    # execute
    value = collapse_std(z)
    # assert
    assert value == pytest.approx(1.0, abs=0.02)


def test_collapse_std_falls_with_a_shared_offset():
    # prepare: the same spread around a large common mean direction (a partially collapsed encoder)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(1024, 128, generator=gen)
    offset = torch.zeros(128)
    offset[0] = 30.0
    # execute / assert
    assert collapse_std(z + offset) < 0.5 * collapse_std(z)


def test_collapse_std_rejects_a_single_embedding():
    with pytest.raises(ValueError, match="B >= 2"):
        collapse_std(torch.ones(1, 8))


def test_embedding_a_mmd_is_the_mar_a_mmd_and_grows_with_a_shift():
    # prepare
    gen = torch.Generator().manual_seed(2)
    z, same, shifted = (torch.randn(64, 16, generator=gen) for _ in range(3))
    shifted = shifted + 2.0
    # execute
    aligned, apart = embedding_a_mmd(z, same), embedding_a_mmd(z, shifted)
    # assert: the same quantity as MAR's loss term, larger for a shifted distribution
    assert aligned == pytest.approx(float(a_mmd(z.double(), same.double())), abs=1e-5)
    assert apart > aligned + 0.05


def test_probe_batch_is_seeded_sorted_and_capped_at_the_test_set():
    # prepare
    test = synthetic_dataset(100, 4, shape=(1, 8, 8), seed=3)
    # execute
    a, b, other = probe_batch(test, 16, seed=0), probe_batch(test, 16, seed=0), probe_batch(test, 16, seed=1)
    whole = probe_batch(test, 256, seed=0)
    # assert
    assert a.size == 16 and np.array_equal(a.indices, b.indices) and torch.equal(a.images, b.images)
    assert not np.array_equal(a.indices, other.indices)
    assert np.all(np.diff(a.indices) > 0)
    assert torch.equal(a.images, test.images[torch.as_tensor(a.indices)])
    assert whole.size == 100 and np.array_equal(whole.indices, np.arange(100))


def test_two_peers_of_a_swarm_probe_the_same_real_test_images():
    # prepare: two shares of a Dirichlet split of real Fashion-MNIST (different training data)
    def peer_cfg(index: int):
        return config_from_dict(
            {
                "data": {
                    "dataset": "fashion-mnist",
                    "num_peers": 2,
                    "peer_index": index,
                    "partition": "dirichlet:0.1",
                    "train_limit": 50,
                    "test_limit": 300,
                },
                "eval": {"bank_limit": 50, "own_distribution": False, "probe_size": 64},
            }
        )

    cfgs = [peer_cfg(0), peer_cfg(1)]
    data = [load_local_data(c) for c in cfgs]
    # execute
    probes = [probe_batch(d.test, c.eval.probe_size, c.data.seed) for c, d in zip(cfgs, data)]
    # assert
    assert not torch.equal(data[0].train.labels, data[1].train.labels)
    assert probes[0].size == 64 and np.array_equal(probes[0].indices, probes[1].indices)
    assert torch.equal(probes[0].images, probes[1].images)


def test_probe_embeddings_are_the_eval_mode_features_and_restore_train_mode():
    # prepare
    trainer = Trainer.create(tiny_config("simsiam", steps=1), data=tiny_data())
    model = trainer.objective
    images = tiny_data().test.images[:10]
    model.train()
    # execute
    z = probe_embeddings(model, images, "cpu", batch_size=4)
    # assert: same as encode() in eval mode, batched the same; train mode is back
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = model.encode(images.float() / 255)
    assert z.shape == expected.shape and z.dtype == torch.float32
    torch.testing.assert_close(z, expected, rtol=1e-4, atol=1e-5)
    assert math.isfinite(collapse_std(z))


@pytest.mark.parametrize(
    "key,value", [("probe_every", -1), ("snapshot_every", -2), ("probe_size", 1), ("curve_test_images", -5)]
)
def test_bad_probe_and_snapshot_settings_are_rejected(key, value):
    with pytest.raises(ConfigError, match=f"eval.{key}"):
        config_from_dict({"eval": {key: value}})
