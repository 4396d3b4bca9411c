"""Tiny configs and synthetic local data shared by the trainer / checkpoint tests."""

from __future__ import annotations

import numpy as np

from peer.config import Config, config_from_dict
from peer.data import synthetic_dataset
from peer.local_data import LocalData


def tiny_config(objective: str = "simsiam", **train) -> Config:
    """A config whose model trains a step in milliseconds (timm test_resnet / a 1-block ViT)."""
    obj = {
        "name": objective,
        "backbone": "test_resnet",
        "proj_hidden_dim": 32,
        "proj_dim": 32,
        "pred_dim": 8,
        "embed_dim": 32,
        "depth": 1,
        "num_heads": 2,
        "decoder_dim": 16,
        "decoder_heads": 2,
        "patch_size": 4,
    }
    values = {
        "name": "tiny",
        "objective": obj,
        "train": {"batch_size": 16, "period": 2, "log_every": 1, "threads": 1, **train},
        "eval": {"bank_limit": 64, "linear_epochs": 2, "batch_size": 64},
    }
    return config_from_dict(values)


def tiny_data(n: int = 64, with_eval: bool = True) -> LocalData:
    """Synthetic 16x16 grey images (unit tests only)."""
    train = synthetic_dataset(n, 4, shape=(1, 16, 16), seed=0)
    if not with_eval:
        return LocalData(train=train, bank=None, test=None, own_test_idx=None, num_classes=4)
    test = synthetic_dataset(32, 4, shape=(1, 16, 16), seed=1)
    own = np.arange(16)
    return LocalData(train=train, bank=train, test=test, own_test_idx=own, num_classes=4)
