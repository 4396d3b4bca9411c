"""The run-directory contract: every file name and path that one process writes and another reads.

A swarm run directory (the launcher creates it; peers, the analysis and the sweep runner read and
write inside it)::

    <run>/
      manifest.json          versions, git SHA, seeds, topology, command line, peers and their knobs
      timeline.jsonl         launcher events (spawned, ready, exited, signalled, fault events ...)
      partition.json/.txt    the partition report, copied from the first peer that wrote it
      summary.json           per-peer results and the RESULT line (analysis.collect)
      diagnostics.json       realised mixing matrix, spectral gap, consensus (analysis.diagnostics)
      rounds.csv             the same per round
      consensus.json         the consensus model θ̄: weights, kNN / linear / fine-tune (peer.consensus)
      report.md, *.png       ``dssl report RUN``
      peers/<peer id>/
        config.yaml          the resolved config this peer was started with
        peer.log             its stdout + stderr
        ready.json           written once the peer serves (id, address, maddrs, join command)
        metrics.jsonl        one JSON record per line (train, round, eval, probe ...)
        faults.json          transport faults for this peer (written by the launcher, read by gossip)
        checkpoints/last.pt  the newest checkpoint (atomic)
        snapshots/round_NNNNN.pt  the parameters published for round N (``eval.snapshot_every``)
        final.json           the peer's summary at exit
        final_params.pt      its final flat parameters (consensus distance, consensus model)

A standalone ``dssl train`` run uses the per-peer part of this layout in its own directory.
Everything here is a name or a pure path function: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from gossip.faults import CONTROL_FILE as FAULT_CONTROL_FILE
from gossip.security import encode_credentials as credentials_line
from gossip.security import read_credentials

__all__ = ["FAULT_CONTROL_FILE", "credentials_line", "read_credentials"]

# ---- the swarm run directory ---------------------------------------------------------------------
PEERS_DIR = "peers"
MANIFEST_FILE = "manifest.json"
TIMELINE_FILE = "timeline.jsonl"
SUMMARY_FILE = "summary.json"
DIAGNOSTICS_FILE = "diagnostics.json"
CONSENSUS_FILE = "consensus.json"
ROUNDS_CSV = "rounds.csv"
REPORT_FILE = "report.md"
PARTITION_FILES = ("partition.json", "partition.txt")

# ---- a sweep directory (``dssl sweep`` writes it, analysis reads it) ------------------------------
# <sweep>/grid.yaml, sweep.json, results.csv, claims.csv, report.md, runs/<run name>/run.json and
# runs/<run name>/<swarm run directory>
GRID_FILE = "grid.yaml"
SWEEP_FILE = "sweep.json"
RESULTS_CSV = "results.csv"
CLAIMS_CSV = "claims.csv"
SWEEP_RUNS_DIR = "runs"
RUN_MANIFEST_FILE = "run.json"

# ---- one peer's directory ------------------------------------------------------------------------
CONFIG_FILE = "config.yaml"
LOG_FILE = "peer.log"
READY_FILE = "ready.json"
READY_MARKER = "DSSL-READY "  # a peer prints its ready.json content after this on stdout
METRICS_FILE = "metrics.jsonl"
FINAL_FILE = "final.json"
PARAMS_FILE = "final_params.pt"
FINAL_EVAL_FILE = "final_eval.json"  # standalone ``dssl train``
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_NAME = re.compile(r"^round_(\d+)\.pt$")


def peer_dir(run_dir: str | Path, peer_id: str) -> Path:
    """``<run>/peers/<peer id>``."""
    return Path(run_dir) / PEERS_DIR / peer_id


@dataclass(frozen=True)
class RunDir:
    """The paths inside one swarm run directory (the launcher creates it: ``launcher.run_setup``)."""

    path: Path

    def peer_dir(self, peer_id: str) -> Path:
        return peer_dir(self.path, peer_id)

    def config_path(self, peer_id: str) -> Path:
        return self.peer_dir(peer_id) / CONFIG_FILE

    def log_path(self, peer_id: str) -> Path:
        return self.peer_dir(peer_id) / LOG_FILE

    def ready_path(self, peer_id: str) -> Path:
        return self.peer_dir(peer_id) / READY_FILE

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def timeline_path(self) -> Path:
        return self.path / TIMELINE_FILE


def checkpoint_path(peer_run_dir: str | Path) -> Path:
    """Where a peer (or a standalone run) keeps its newest checkpoint."""
    return Path(peer_run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT


def snapshot_path(peer_run_dir: str | Path, round: int) -> Path:
    """The parameters a peer published for ``round`` (see :data:`SNAPSHOT_NAME`)."""
    return Path(peer_run_dir) / SNAPSHOT_DIR / f"round_{round:05d}.pt"


def snapshot_round(path: str | Path) -> int | None:
    """The round of a snapshot file name, or None for any other file."""
    match = SNAPSHOT_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None
