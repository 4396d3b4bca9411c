"""Collect a finished swarm run: per-peer results, consensus distance, one summary and RESULT line.

Each peer leaves ``final.json`` (steps, rounds, kNN before/after training) and ``final_params.pt``
(its final flat parameter buffer) in its own directory. The swarm diagnostics (``peer.diagnostics``,
through ``peer.cli``) read those buffers once and give the consensus distance (1/N) Σ_i ‖θ_i − θ̄‖²
— the quantity D-PSGD analyses drive to zero.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from launcher.rundir import RunDir
from peer.cli import final_consensus_distance, swarm_diagnostics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerResult:
    peer_id: str
    steps: int | None
    rounds: int | None
    knn: float | None  # kNN accuracy of the final encoder (global test subset)
    knn_init: float | None  # same evaluation at random initialisation
    stopped_by: str | None
    caught_up: dict | None


@dataclass(frozen=True)
class SwarmResult:
    peers: tuple[PeerResult, ...]
    consensus_distance: float | None
    run_dir: Path

    @property
    def min_rounds(self) -> int:
        return min((p.rounds or 0) for p in self.peers) if self.peers else 0

    def _mean(self, values: list[float | None]) -> float:
        got = [v for v in values if v is not None]
        return sum(got) / len(got) if got else math.nan

    @property
    def knn_mean(self) -> float:
        return self._mean([p.knn for p in self.peers])

    @property
    def knn_init_mean(self) -> float:
        return self._mean([p.knn_init for p in self.peers])

    def result_line(self) -> str:
        cd = self.consensus_distance if self.consensus_distance is not None else math.nan
        return (f"RESULT peers={len(self.peers)} min_rounds={self.min_rounds} knn_acc_mean={self.knn_mean:.4f} "
                f"knn_acc_random_init={self.knn_init_mean:.4f} consensus_distance={cd:.6g} run_dir={self.run_dir}")


def _peer_result(peer_dir: Path) -> PeerResult | None:
    final = peer_dir / "final.json"
    if not final.is_file():
        return None
    data = json.loads(final.read_text())
    return PeerResult(
        peer_id=data.get("peer_id", peer_dir.name), steps=data.get("step"), rounds=data.get("round"),
        knn=(data.get("eval_final") or {}).get("knn"), knn_init=(data.get("eval_init") or {}).get("knn"),
        stopped_by=data.get("stopped_by"), caught_up=data.get("caught_up"))


def collect(run: RunDir) -> SwarmResult:
    """Read every peer that finished, write the swarm diagnostics, summarise."""
    results = [r for r in map(_peer_result, sorted((run.path / "peers").iterdir())) if r is not None]
    distance = write_run_diagnostics(run.path)
    swarm = SwarmResult(peers=tuple(results), consensus_distance=distance, run_dir=run.path)
    summary = {"peers": [r.__dict__ for r in results], "consensus_distance": distance,
               "min_rounds": swarm.min_rounds, "knn_acc_mean": swarm.knn_mean,
               "knn_acc_random_init": swarm.knn_init_mean, "result": swarm.result_line()}
    (run.path / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return swarm


def write_run_diagnostics(run_dir: Path) -> float | None:
    """Write diagnostics.json + rounds.csv (realised W per round, spectral gap, |A-bar|) and return the
    exact consensus distance. A damaged metrics file must not cost the run its RESULT line: then the
    failure is logged and the distance is computed from the final parameters alone."""
    try:
        return swarm_diagnostics(run_dir)["consensus_distance_exact"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: swarm diagnostics not written: %s", run_dir, exc)
        return final_consensus_distance(run_dir)


def format_table(swarm: SwarmResult) -> str:
    """Per-peer lines: rounds, steps, kNN at init and at the end."""
    def pct(value: float | None) -> str:
        return f"{value:.4f}" if value is not None else "-"

    lines = [f"{'peer':12s} {'rounds':>6s} {'steps':>6s} {'kNN init':>9s} {'kNN final':>9s}  note"]
    for p in swarm.peers:
        note = f"stopped by {p.stopped_by}" if p.stopped_by else ""
        if p.caught_up and p.caught_up.get("how") not in (None, "fresh"):
            note = (note + f" caught up by {p.caught_up['how']}").strip()
        lines.append(f"{p.peer_id:12s} {p.rounds or 0:6d} {p.steps or 0:6d} {pct(p.knn_init):>9s} "
                     f"{pct(p.knn):>9s}  {note}")
    return "\n".join(lines)
