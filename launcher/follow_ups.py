"""What follows a complete swarm run when asked: its consensus model θ̄ and its baselines.

θ̄ is the data-size-weighted mean of the live peers' final parameters (``peer/consensus.py``,
written to ``consensus.json``); the baselines are each peer trained alone and one centralised model
(``launcher/baselines.py``, compared in ``baselines.json``). Both resume: what is on disk is kept.
"""

from __future__ import annotations

from pathlib import Path

from analysis.baselines import BASELINES_FILE
from launcher.baselines import train_baselines
from launcher.swarm import evaluate_consensus_model
from peer.rundir import CONSENSUS_FILE


def missing_follow_ups(run_path: Path, consensus: bool, baselines: bool) -> list[str]:
    """The files asked for that ``run_path`` lacks (``consensus.json``, ``baselines.json``)."""
    wanted = [(consensus, CONSENSUS_FILE), (baselines, BASELINES_FILE)]
    return [name for on, name in wanted if on and not (run_path / name).exists()]


def follow_ups(run_path: Path, consensus: bool, baselines: bool, prog: str) -> list[str]:
    """Evaluate θ̄ and / or train the baselines where missing; returns what could not be done
    (empty when nothing failed). A failure leaves the swarm run as it was: a later call retries."""
    missing = missing_follow_ups(run_path, consensus, baselines)
    problems = []
    if CONSENSUS_FILE in missing and not evaluate_consensus_model(run_path, prog):
        problems.append("consensus model not evaluated")
    if BASELINES_FILE in missing and train_baselines(run_path, prog) is None:
        problems.append("baselines not compared")
    return problems
