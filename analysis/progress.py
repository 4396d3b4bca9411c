"""Live swarm progress: one line per interval from the peers' growing metrics files.

The launcher's supervision loop calls :meth:`SwarmProgress.line` every few seconds. Each call reads
only the bytes appended to each ``peers/<id>/metrics.jsonl`` since the previous call (a torn last
line is kept for the next call), so a long run costs the same per line as a short one::

    [ 42.0s] rounds 12-14  steps 1380  loss 0.4123  img/s 1210.5  nbr 7/8  peers live 4/4 crashed 0

The line reads files only; which peers are alive or crashed is told by the caller.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from peer import rundir


@dataclass
class _PeerTail:
    """The newest train and round record of one peer, and how far its file has been read."""

    offset: int = 0
    partial: bytes = b""
    train: dict = field(default_factory=dict)
    round: dict = field(default_factory=dict)

    def read(self, path: Path) -> None:
        try:
            with path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            self._take(line)

    def _take(self, line: bytes) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if isinstance(record, dict) and record.get("kind") in ("train", "round"):
            setattr(self, record["kind"], record)


@dataclass(frozen=True)
class ProgressSnapshot:
    """The swarm at one moment, summed or ranged over the peers that have logged."""

    rounds_min: int | None
    rounds_max: int | None
    steps: int
    loss: float | None
    images_per_s: float
    answered: int
    expected: int

    def line(self, elapsed_s: float, live: int, total: int, crashed: int) -> str:
        rounds = "-" if self.rounds_min is None else f"{self.rounds_min}-{self.rounds_max}"
        loss = "-" if self.loss is None else f"{self.loss:.4f}"
        return (
            f"[{elapsed_s:6.1f}s] rounds {rounds}  steps {self.steps}  loss {loss}  "
            f"img/s {self.images_per_s:.1f}  nbr {self.answered}/{self.expected}  "
            f"peers live {live}/{total} crashed {crashed}"
        )


class SwarmProgress:
    """Follows the metrics files of a swarm run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self._tails: dict[str, _PeerTail] = {}

    def snapshot(self, live: set[str] | None = None) -> ProgressSnapshot:
        """Read what was appended since the last call. ``live`` limits throughput and neighbour
        counts to the peers still running (a dead peer's last images/s is not current)."""
        peers_dir = self.run_dir / rundir.PEERS_DIR
        for peer_dir in sorted(peers_dir.iterdir()) if peers_dir.is_dir() else []:
            tail = self._tails.setdefault(peer_dir.name, _PeerTail())
            tail.read(peer_dir / rundir.METRICS_FILE)
        current = {p: t for p, t in self._tails.items() if live is None or p in live}
        logged = [t for t in self._tails.values() if t.train or t.round]
        # a round record comes every round, a train record every log_every steps: take the newer
        rounds = [max(t.train.get("round", 0), t.round.get("round", 0)) for t in logged]
        losses = [t.train["loss_avg"] for t in current.values() if _finite(t.train.get("loss_avg"))]
        return ProgressSnapshot(
            rounds_min=min(rounds) if rounds else None,
            rounds_max=max(rounds) if rounds else None,
            steps=sum(max(int(t.train.get("step", 0)), int(t.round.get("step", 0))) for t in logged),
            loss=sum(losses) / len(losses) if losses else None,
            images_per_s=sum(float(t.train.get("images_per_s") or 0.0) for t in current.values()),
            answered=sum(int(t.round.get("answered") or 0) for t in current.values()),
            expected=sum(int(t.round.get("expected") or 0) for t in current.values()),
        )


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
