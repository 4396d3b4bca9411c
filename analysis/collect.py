"""Collect a finished swarm run: per-peer results, consensus distance, one summary and RESULT line.

Each peer leaves ``final.json`` (steps, rounds, kNN before/after training) and ``final_params.pt``
(its final flat parameter buffer) in its own directory. Every peer that ever ran is listed, also one
that was killed or crashed and never wrote ``final.json``: how it ended (finished, exit code, last
round, restarts) comes from the launcher's timeline and the peer's metrics. The swarm diagnostics
(:mod:`analysis.diagnostics`) read those buffers once and give the consensus distance (1/N) Σ_i ‖θ_i − θ̄‖²
— the quantity D-PSGD analyses drive to zero.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from analysis.diagnostics import exact_consensus_distance, write_diagnostics
from analysis.timeline import read_timeline
from peer.atomic_file import write_json
from peer.metrics import read_metrics
from peer.rundir import FINAL_FILE, METRICS_FILE, PEERS_DIR, SUMMARY_FILE, TIMELINE_FILE

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
    finished: bool = True  # wrote final.json
    ended: str = "finished"  # how it ended: finished / exit code and last round / restarts


@dataclass(frozen=True)
class SwarmResult:
    peers: tuple[PeerResult, ...]  # every peer that ever ran, finished or not
    consensus_distance: float | None
    run_dir: Path

    @property
    def finished(self) -> tuple[PeerResult, ...]:
        return tuple(p for p in self.peers if p.finished)

    @property
    def min_rounds(self) -> int:
        return min((p.rounds or 0) for p in self.finished) if self.finished else 0

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
        finished = len(self.finished)
        return (
            f"RESULT peers={finished} min_rounds={self.min_rounds} knn_acc_mean={self.knn_mean:.4f} "
            f"knn_acc_random_init={self.knn_init_mean:.4f} consensus_distance={cd:.6g} run_dir={self.run_dir}"
        )


def _peer_result(peer_dir: Path, events: list[dict]) -> PeerResult:
    final = peer_dir / FINAL_FILE
    ended = _ending(events, final.is_file(), peer_dir)
    if not final.is_file():
        last = _last_progress(peer_dir)
        return PeerResult(
            peer_id=peer_dir.name,
            steps=last.get("step"),
            rounds=last.get("round"),
            knn=None,
            knn_init=None,
            stopped_by=None,
            caught_up=None,
            finished=False,
            ended=ended,
        )
    data = json.loads(final.read_text())
    return PeerResult(
        peer_id=data.get("peer_id", peer_dir.name),
        steps=data.get("step"),
        rounds=data.get("round"),
        knn=(data.get("eval_final") or {}).get("knn"),
        knn_init=(data.get("eval_init") or {}).get("knn"),
        stopped_by=data.get("stopped_by"),
        caught_up=data.get("caught_up"),
        ended=ended,
    )


def _last_progress(peer_dir: Path) -> dict:
    """The newest record of a peer's metrics that carries its step and round ({} if none)."""
    records = [r for r in read_metrics(peer_dir / METRICS_FILE) if "step" in r and "round" in r]
    return records[-1] if records else {}


def _ending(events: list[dict], finished: bool, peer_dir: Path) -> str:
    """How one peer ended, from its timeline events: ``finished``, ``killed (exit -9) at round 12``,
    ``crashed (exit 1) at round 3``, prefixed with ``restarted 2x,`` when it was started again."""
    spawns = sum(1 for e in events if e.get("event") == "spawned")
    exits = [e for e in events if e.get("event") in ("exited", "crashed")]
    code = exits[-1].get("code") if exits else None
    if finished and code in (0, None):
        how = "finished"
    elif code is None:
        how = "no final.json (still running or lost)"
    else:
        verb = "crashed" if exits[-1]["event"] == "crashed" else ("killed" if code < 0 else "exited")
        how = f"{verb} (exit {code}) at round {_last_progress(peer_dir).get('round', 0)}"
    return f"restarted {spawns - 1}x, {how}" if spawns > 1 else how


def collect(run_dir: str | Path) -> SwarmResult:
    """Read every peer of a run directory that finished, write the swarm diagnostics and
    ``summary.json``, summarise."""
    run_dir = Path(run_dir)
    timeline = read_timeline(run_dir / TIMELINE_FILE)
    peer_dirs = sorted(d for d in (run_dir / PEERS_DIR).iterdir() if d.is_dir())
    results = [_peer_result(d, [e for e in timeline if e.get("peer") == d.name]) for d in peer_dirs]
    distance = write_run_diagnostics(run_dir)
    swarm = SwarmResult(peers=tuple(results), consensus_distance=distance, run_dir=run_dir)
    summary = {
        "peers": [r.__dict__ for r in results],
        "consensus_distance": distance,
        "min_rounds": swarm.min_rounds,
        "knn_acc_mean": swarm.knn_mean,
        "knn_acc_random_init": swarm.knn_init_mean,
        "result": swarm.result_line(),
    }
    write_json(run_dir / SUMMARY_FILE, summary)
    return swarm


def write_run_diagnostics(run_dir: Path) -> float | None:
    """Write diagnostics.json + rounds.csv (realised W per round, spectral gap, |A-bar|) and return the
    exact consensus distance. A damaged metrics file must not cost the run its RESULT line: then the
    failure is logged and the distance is computed from the final parameters alone."""
    try:
        return write_diagnostics(run_dir)["consensus_distance_exact"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: swarm diagnostics not written: %s", run_dir, exc)
        return exact_consensus_distance(Path(run_dir))


def format_table(swarm: SwarmResult) -> str:
    """Per-peer lines for every peer that ever ran: rounds, steps, kNN at init and at the end, and
    how it ended."""

    def pct(value: float | None) -> str:
        return f"{value:.4f}" if value is not None else "-"

    lines = [f"{'peer':12s} {'rounds':>6s} {'steps':>6s} {'kNN init':>9s} {'kNN final':>9s}  ended"]
    for p in swarm.peers:
        note = p.ended + (f", stopped by {p.stopped_by}" if p.stopped_by else "")
        if p.caught_up and p.caught_up.get("how") not in (None, "fresh"):
            note += f", caught up by {p.caught_up['how']}"
        lines.append(
            f"{p.peer_id:12s} {p.rounds or 0:6d} {p.steps or 0:6d} {pct(p.knn_init):>9s} "
            f"{pct(p.knn):>9s}  {note}"
        )
    return "\n".join(lines)
