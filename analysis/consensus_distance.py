"""Consensus distance: of flat parameter buffers, and of the evaluated encoder alone.

The run's consensus distance (1/N) Σ_i ‖θ_i − θ̄‖² is taken over everything that gossips: encoder,
heads or decoder, and (BN policy ``average``) BatchNorm running statistics. Those statistics are
not learned and their scale is the features' variance, so they can dominate it: in a 16-peer
SimSiam-ViT run 90 % of a distance of 795 was one BatchNorm ``running_var`` of the predictor, and
the encoder's parameters contributed 0.04 % (docs/results.md). The encoder's own distance is the
one that relates to what kNN, linear probe and θ̄ evaluate, so the reports carry it beside the total.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from peer import objectives
from peer.config import ConfigError
from peer.consensus import ConsensusError, consensus_config, live_peer_dirs, load_peer

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
