"""The consensus model θ̄ of a finished swarm run, and its evaluation (``consensus.json``).

Decentralised SGD analyses bound the error of the averaged model θ̄ = Σ_i w_i θ_i (Lian et al.,
NeurIPS 2017, "Can decentralized algorithms outperform centralized algorithms?", Theorem 1), and the
paper's code evaluates it after training: the mean of the peers' final parameters, each peer weighted
by its local data size (as in FedAvg's aggregation, McMahan et al., AISTATS 2017). Here:

1. the peers *live at the end* are those that wrote ``final.json`` (a peer killed for good never
   does; a restarted one that finished does) and have a final checkpoint ``checkpoints/last.pt``;
2. their checkpoints must hold one architecture: the same flat-layout fingerprint and the same
   state-dict names and shapes (:class:`ConsensusError` names the first difference);
3. weight w_i = n_i / Σ n_j, n_i = peer i's training images: its share's size in the partition
   report it wrote (``partition.json``), capped by its ``data.train_limit`` — exactly the images
   :func:`peer.local_data.load_local_data` gave it;
4. θ̄ averages every floating tensor of the model state: parameters and BatchNorm running
   statistics (also under ``bn_policy: local``, where they did not travel); integer counters
   (``num_batches_tracked``) take the largest value;
5. θ̄ is evaluated like a peer (:func:`peer.evaluate.evaluate`: kNN + linear probe on the kNN bank
   and the test set of the first live peer's config: the full test set when ``data.test_limit`` is
   null) and fine-tuned end to end (:func:`peer.fine_tune.fine_tune`, ``eval.finetune_*``).

:func:`write_consensus` writes the result to ``<run>/consensus.json``; the launcher calls it after
``dssl swarm`` (``--no-consensus`` skips it) and ``dssl consensus RUN`` (re)computes it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from peer import checkpoint as ckpt
from peer import objectives
from peer.atomic_file import write_json
from peer.build import resolve_device
from peer.config import Config, ConfigError, apply_overrides, config_from_dict
from peer.evaluate import EvalSettings, evaluate
from peer.fine_tune import fine_tune
from peer.local_data import LocalData, load_local_data
from peer.rundir import CONSENSUS_FILE, FINAL_FILE, PARTITION_FILES, PEERS_DIR, checkpoint_path

log = logging.getLogger(__name__)

WEIGHTING = "local training images (partition share, capped by data.train_limit)"


class ConsensusError(ValueError):
    """The run has no consensus model: no live peer, different architectures, unknown data sizes."""


@dataclass(frozen=True)
class PeerModel:
    """One live peer's final model state and what θ̄ needs to know about it."""

    peer_id: str
    images: int  # training images of its share (its weight in θ̄ is proportional)
    state: dict[str, torch.Tensor]  # the objective's state dict from its final checkpoint
    fingerprint: str | None  # its flat layout's fingerprint (peer.flat.FlatLayout)
    config: dict  # its resolved config (plain dict)
    final: dict  # its final.json


def live_peer_dirs(run_dir: str | Path) -> list[Path]:
    """Peer directories of ``run_dir`` whose peer finished: ``final.json`` and a final checkpoint."""
    peers = Path(run_dir) / PEERS_DIR
    if not peers.is_dir():
        return []
    return sorted(d for d in peers.iterdir() if (d / FINAL_FILE).is_file() and checkpoint_path(d).is_file())


def local_images(peer_dir: Path, config: dict) -> int:
    """The number of training images the peer trained on (see the module docstring, point 3)."""
    data = config.get("data") or {}
    report_path = peer_dir / PARTITION_FILES[0]
    if not report_path.is_file():
        raise ConsensusError(f"{peer_dir.name}: no {PARTITION_FILES[0]}; its data size is unknown")
    sizes = {p["peer"]: p["size"] for p in json.loads(report_path.read_text())["peers"]}
    index = int(data.get("peer_index", 0))
    if index not in sizes:
        raise ConsensusError(f"{peer_dir.name}: peer_index {index} is not in {report_path}")
    limit = data.get("train_limit")
    return int(sizes[index] if limit is None else min(sizes[index], int(limit)))


def load_peer(peer_dir: Path) -> PeerModel:
    """A live peer's final checkpoint, data size and final.json."""
    state = ckpt.load_checkpoint(checkpoint_path(peer_dir), map_location="cpu")
    config = state.get("config") or {}
    return PeerModel(
        peer_id=peer_dir.name,
        images=local_images(peer_dir, config),
        state=state["model"],
        fingerprint=(state.get("extra") or {}).get("fingerprint"),
        config=config,
        final=json.loads((peer_dir / FINAL_FILE).read_text()),
    )


def check_same_architecture(peers: list[PeerModel]) -> None:
    """Raise :class:`ConsensusError` unless every peer has the first one's layout and state shapes."""
    if not peers:
        raise ConsensusError("no live peer: none wrote final.json and a final checkpoint")
    first = peers[0]
    shapes = {k: tuple(v.shape) for k, v in first.state.items()}
    for peer in peers[1:]:
        where = f"peer {peer.peer_id}'s model differs from peer {first.peer_id}'s"
        if peer.fingerprint != first.fingerprint:
            ours, theirs = str(peer.fingerprint)[:12], str(first.fingerprint)[:12]
            raise ConsensusError(f"{where}: flat layout fingerprint {ours} != {theirs}")
        other = {k: tuple(v.shape) for k, v in peer.state.items()}
        if other.keys() != shapes.keys():
            diff = sorted(other.keys() ^ shapes.keys())
            raise ConsensusError(f"{where}: tensors {', '.join(diff[:5])} are in only one of them")
        for name, shape in shapes.items():
            if other[name] != shape:
                raise ConsensusError(f"{where}: {name} has shape {other[name]}, not {shape}")


@torch.no_grad()
def weighted_average(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Σ_i w_i state_i for every floating tensor (w normalised to sum 1; accumulated in float64, cast
    back to each tensor's dtype); integer tensors (counters) take their largest value."""
    total = float(sum(weights))
    if not states or len(states) != len(weights) or total <= 0 or min(weights) < 0:
        raise ConsensusError(
            f"weighted_average: need one non-negative weight per state, sum > 0; got {weights}"
        )
    w = [float(x) / total for x in weights]
    out = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            acc = sum(wi * s[name].double() for wi, s in zip(w, states))
            out[name] = acc.to(first.dtype)
        else:
            out[name] = torch.stack([s[name] for s in states]).amax(0)
    return out


def consensus_config(peer: PeerModel, overrides: list[str] | None = None) -> Config:
    """The config θ̄ is built and evaluated with: the first live peer's, with ``overrides``
    (``section.key=value``) applied, e.g. ``data.test_limit=null`` for the full test set."""
    values = apply_overrides(copy.deepcopy(peer.config), list(overrides or []))
    cfg = config_from_dict(values)
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, own_distribution=False))


def build_consensus(peers: list[PeerModel], cfg: Config) -> torch.nn.Module:
    """θ̄ as an objective (CPU) built from ``cfg``: the data-size-weighted mean of the peers' states."""
    check_same_architecture(peers)
    objective = objectives.build(cfg.objective)
    objective.load_state_dict(weighted_average([p.state for p in peers], [p.images for p in peers]))
    return objective


def _fine_tune(objective: torch.nn.Module, data: Any, cfg: Config, device: torch.device) -> dict | None:
    """The fine-tuning protocol on a seeded subset of the kNN bank (None when ``finetune_images`` is 0)."""
    e = cfg.eval
    if not e.finetune_images:
        return None
    n = min(e.finetune_images, len(data.bank.labels))
    idx = np.sort(np.random.default_rng(cfg.data.seed + 31).choice(len(data.bank.labels), n, replace=False))
    return fine_tune(
        copy.deepcopy(objective),
        data.bank.subset(idx),
        data.test,
        data.num_classes,
        epochs=e.finetune_epochs,
        lr=e.finetune_lr,
        batch_size=e.finetune_batch_size,
        device=device,
        seed=cfg.data.seed,
    )


def evaluate_consensus(
    run_dir: str | Path, overrides: list[str] | None = None, data: LocalData | None = None
) -> dict[str, Any]:
    """Build θ̄ from the live peers of ``run_dir`` and evaluate it (kNN, linear probe, fine-tune) on
    ``data`` (default: the evaluation sets the consensus config loads; tests pass synthetic ones)."""
    started = time.perf_counter()
    peers = [load_peer(d) for d in live_peer_dirs(run_dir)]
    check_same_architecture(peers)
    try:
        cfg = consensus_config(peers[0], overrides)
    except ConfigError as exc:
        raise ConsensusError(f"consensus config: {exc}") from None
    device = resolve_device(cfg.train.device)
    objective = build_consensus(peers, cfg).to(device)
    data = data or load_local_data(cfg)
    settings = EvalSettings.from_config(cfg.eval)
    frozen = evaluate(objective, data.bank, data.test, None, settings, device, data.num_classes)
    total = sum(p.images for p in peers)
    return {
        "peers": [_peer_entry(p, total) for p in peers],
        "weighting": WEIGHTING,
        "fingerprint": peers[0].fingerprint,
        "knn": frozen["knn"],
        "linear": frozen["linear"],
        "fine_tune": _fine_tune(objective, data, cfg, device),
        "test_size": int(len(data.test.labels)),
        "bank_size": int(len(data.bank.labels)),
        "eval": {**dataclasses.asdict(settings), "test_limit": cfg.data.test_limit},
        "seconds": round(time.perf_counter() - started, 3),
    }


def _peer_entry(peer: PeerModel, total_images: int) -> dict[str, Any]:
    """A live peer's line in consensus.json: its weight and its own final kNN / linear accuracy."""
    final_eval = peer.final.get("eval") or peer.final.get("eval_final") or {}
    return {
        "peer_id": peer.peer_id,
        "images": peer.images,
        "weight": peer.images / total_images if total_images else None,
        "step": peer.final.get("step"),
        "round": peer.final.get("round"),
        "knn": final_eval.get("knn"),
        "linear": final_eval.get("linear"),
    }


def write_consensus(
    run_dir: str | Path, overrides: list[str] | None = None, data: LocalData | None = None
) -> Path:
    """:func:`evaluate_consensus` into ``<run>/consensus.json`` (atomic); returns its path."""
    result = evaluate_consensus(run_dir, overrides, data)
    path = Path(run_dir) / CONSENSUS_FILE
    write_json(path, result)
    log.info(
        "%s: consensus model of %d peers: kNN %.4f linear %.4f",
        run_dir,
        len(result["peers"]),
        result["knn"],
        result["linear"],
    )
    return path
