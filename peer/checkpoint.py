"""Atomic checkpoints and exact resume.

A checkpoint is one ``torch.save`` file holding the model (objective) state, optimizer state,
GradScaler state, step, round, RNG states (python, numpy, torch CPU, every CUDA device) and the
resolved config as a plain dict. Writes are atomic: the file is written under a temporary name in
the same directory, fsync'ed, then ``os.replace``'d over the target (and the directory fsync'ed), so
a peer killed mid-write leaves either the old checkpoint or the new one, never half of one.

With the trainer's data order derived from (seed, epoch) and the RNG states restored, resuming from
step k continues bit-for-bit like the uninterrupted run (tests/peer/test_checkpoint.py checks it).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peer.atomic_file import replacing
from peer.rundir import snapshot_path

CHECKPOINT_VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator a training step draws from."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temp file beside ``path``, fsync, atomically replace ``path``, fsync the
    directory (so the rename itself survives a crash)."""
    path = Path(path)
    with replacing(path) as tmp:
        torch.save(obj, tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def save_round_snapshot(
    run_dir: Path, every: int, layout: Any, round: int, step: int, flat: torch.Tensor
) -> Path | None:
    """On ``eval.snapshot_every`` = ``every``'s schedule (0: never), atomically save the float32 params
    published for ``round`` to :func:`peer.rundir.snapshot_path` (exact consensus in the analysis)."""
    if not every or round % every:
        return None
    state = {"params": flat.float(), "fingerprint": layout.fingerprint, "round": round, "step": step}
    return atomic_torch_save(state, snapshot_path(run_dir, round))


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scaler: Any | None,
    step: int,
    round: int,
    config: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a complete, atomic checkpoint (model, optimizer, scaler, counters, RNG, config)."""
    state = {
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": int(step),
        "round": int(round),
        "rng": capture_rng_state(),
        "config": config,
        "extra": extra or {},
    }
    return atomic_torch_save(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (a plain dict; see its keys there)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # weights_only=False: the file holds RNG states (numpy arrays, tuples) that we wrote ourselves.
    state = torch.load(path, map_location=map_location, weights_only=False)
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path}: unsupported version {state.get('version')!r}")
    return state


def restore_checkpoint(
    state: dict[str, Any],
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any | None = None,
    restore_rng: bool = True,
) -> tuple[int, int]:
    """Load a checkpoint dict into live objects; returns (step, round)."""
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    if restore_rng:
        restore_rng_state(state["rng"])
    return state["step"], state["round"]
