"""A trainer's pieces from a config: device, seeds, objective + flat layout, optimizer + its learning
rate schedule, run dir.

:meth:`peer.trainer.Trainer.create` calls these in order; each is a plain function so benchmarks and
tests can build one piece alone. Every peer seeds the model from ``train.seed`` (identical initial
weights: decentralised SGD starts at consensus), then re-seeds a per-peer stream for augmentations.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from peer import objectives
from peer.config import Config, TrainConfig, dump_config
from peer.flat import FlatLayout
from peer.local_data import LocalData
from peer.partition import parse_partition, write_partition_report
from peer.rundir import CONFIG_FILE


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when present, else cpu; otherwise the named device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name!r} but no CUDA device is available")
    return device


def prepare_device(name: str, threads: int = 0) -> torch.device:
    """:func:`resolve_device`; on a CPU, torch gets ``threads`` threads (0 = all cores)."""
    device = resolve_device(name)
    if device.type == "cpu":
        torch.set_num_threads(threads or os.cpu_count() or 1)
    return device


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(objective: objectives.Objective) -> torch.optim.Optimizer:
    """AdamW (MAE recipe) or SGD with momentum (SimSiam recipe), as the objective resolves them.

    Parameter groups come from the objective (weight decay on rank >= 2 weights only, frozen
    parameters left out); the learning rate is set every step by the trainer's schedule.
    """
    groups, name, cfg = objective.param_groups(), objective.optimizer_name, objective.cfg
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=objective.lr, betas=tuple(cfg.betas))
    if name == "sgd":
        return torch.optim.SGD(groups, lr=objective.lr, momentum=cfg.momentum)
    raise ValueError(f"objective.optimizer: expected 'adamw' or 'sgd', got {name!r}")


def build_objective(
    cfg: Config, data: LocalData, device: torch.device
) -> tuple[Config, nn.Module, FlatLayout]:
    """The objective sized to the data (identical initial weights on every peer) and its flat layout;
    returns the config with ``objective.img_size`` / ``in_chans`` resolved from the data."""
    channels, height, _ = tuple(data.train.images.shape[1:])
    ocfg = dataclasses.replace(cfg.objective, img_size=int(height), in_chans=int(channels))
    cfg = dataclasses.replace(cfg, objective=ocfg)
    seed_everything(cfg.train.seed)  # identical initial weights on every peer (D-PSGD starts at consensus)
    objective = objectives.build(ocfg).to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        objective = objective.to(memory_format=torch.channels_last)
    return cfg, objective, FlatLayout.from_module(objective, cfg.train.bn_policy)


def prepare_run_dir(cfg: Config, data: LocalData, run_dir: str | Path | None) -> Path | None:
    """Create the run directory with the resolved config and the partition report (None: no outputs)."""
    if not run_dir:
        return None
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / CONFIG_FILE)
    if data.report is not None:
        write_partition_report(data.report, run_dir)
    return run_dir


def learning_rate(train: TrainConfig, base: float, step: int) -> float:
    """The schedule: linear warm-up, then constant or cosine decay to 0 at ``train.steps``."""
    if train.warmup_steps and step < train.warmup_steps:
        return base * (step + 1) / train.warmup_steps
    if train.lr_schedule == "cosine" and train.steps:
        progress = min(1.0, (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps))
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base


def feature_skew_for(cfg: Config) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """This peer's fixed image transform under the ``feature_skew`` partition, else None."""
    if parse_partition(cfg.data.partition).kind != "feature_skew":
        return None
    from peer.augment import FeatureSkew

    return FeatureSkew.for_peer(cfg.data.peer_index, cfg.data.seed)
