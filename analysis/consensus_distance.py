"""Consensus distance: of flat parameter buffers, and of the evaluated encoder alone.

The run's consensus distance (1/N) Σ_i ‖θ_i − θ̄‖² is taken over everything that gossips: encoder,
heads or decoder, and (BN policy ``average``) BatchNorm running statistics. Those statistics are
not learned and their scale is the features' variance, so they can dominate it: in a 16-peer
SimSiam-ViT run 90 % of a distance of 795 was one BatchNorm ``running_var`` of the predictor, and
the encoder's parameters contributed 0.04 % (docs/results.md). The encoder's own distance is the
one that relates to what kNN, linear probe and θ̄ evaluate, so the reports carry it beside the total:
at the end from the final checkpoints, and per round from the parameter snapshots (the encoder's
slices of the published flat buffer, :func:`encoder_slices`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from peer import objectives
from peer.config import ConfigError, load_config
from peer.consensus import ConsensusError, consensus_config, live_peer_dirs, load_peer
from peer.flat import FlatLayout
from peer.rundir import CONFIG_FILE, PEERS_DIR

log = logging.getLogger(__name__)


def consensus_distance(buffers: list[torch.Tensor]) -> float:
    """(1/N) Σ_i ‖θ_i − θ̄‖² over equally shaped flat buffers (float64 accumulation)."""
    if not buffers:
        raise ValueError("no parameter buffers")
    stacked = torch.stack([b.double().flatten() for b in buffers])
    return float(((stacked - stacked.mean(dim=0)) ** 2).sum(dim=1).mean())


def encoder_consensus_distance(run_dir: str | Path) -> float | None:
    """(1/N) Σ_i ‖e_i − ē‖² over the parameters of the live peers' encoders (``encode``'s submodule),
    from their final checkpoints; None when fewer than two peers left a readable one."""
    try:
        peers = [load_peer(d) for d in live_peer_dirs(run_dir)]
        if len(peers) < 2:
            return None
        names = objectives.build(consensus_config(peers[0]).objective).encoder_parameter_names()
        buffers = [torch.cat([p.state[n].double().flatten() for n in names]) for p in peers]
    except (ConsensusError, ConfigError, OSError, KeyError, RuntimeError, ValueError) as exc:
        log.warning("no encoder consensus distance for %s: %s", run_dir, exc)
        return None
    if len({b.numel() for b in buffers}) != 1:
        log.warning("no encoder consensus distance for %s: the peers' encoders differ in size", run_dir)
        return None
    return consensus_distance(buffers)


def encoder_slices(run_dir: str | Path) -> tuple[str, list[slice]] | None:
    """Where the encoder's parameters lie in the flat buffer the peers publish (and snapshot):
    (that layout's fingerprint, its slices), rebuilt from the first peer's resolved config; None
    when no peer left a readable one. Compare the fingerprint with a snapshot's before using them."""
    for config_path in sorted(Path(run_dir).glob(f"{PEERS_DIR}/*/{CONFIG_FILE}")):
        try:
            cfg = load_config(config_path)
            objective = objectives.build(cfg.objective)
            layout = FlatLayout.from_module(objective, cfg.train.bn_policy)
            names = set(objective.encoder_parameter_names())
        except (ConfigError, OSError, KeyError, RuntimeError, ValueError, NotImplementedError) as exc:
            log.warning("no encoder layout from %s: %s", config_path, exc)
            continue
        slices = [slice(e.offset, e.offset + e.numel) for e in layout.entries if e.name in names]
        return layout.fingerprint, slices
    return None


def encoder_part(flat: torch.Tensor, slices: list[slice]) -> torch.Tensor:
    """The encoder's parameters out of a flat buffer, in layout order."""
    return torch.cat([flat[s] for s in slices])
