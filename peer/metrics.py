"""Per-peer metrics: one JSONL file (a line per event, flushed at once) and a fixed-format console line.

Every line of ``metrics.jsonl`` is one JSON object with at least ``kind`` ("train", "round", "eval",
"final", ...), ``time`` (unix seconds) and ``peer``; training lines carry step, round, loss, lr,
images/s and γ; round lines carry answered/expected, bytes in/out, pull and mix times and the
neighbour distance; eval lines carry the accuracies. Flushing each line means a killed peer loses at
most the line being written, and ``tail -f`` works during a run.

The console progress line has a fixed format so a swarm's interleaved logs stay readable::

    [peer-0] r   12 s    240 loss 0.4123/0.4410 img/s  310.2 nbr 2/2 mix  0.041s dist 1.23e-02
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from gossip.hook import MixResult, NeighbourReport

PROGRESS_LOGGER = "dssl.progress"  # the CLI attaches a plain console handler to this logger


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, tensors/numpy scalars become Python numbers."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class MetricsWriter:
    """Appends one JSON object per line to ``path`` and flushes each line."""

    def __init__(self, path: str | Path, peer: str = "peer-0") -> None:
        self.path = Path(path)
        self.peer = peer
        self._file: IO[str] | None = None

    def write(self, kind: str, **fields: Any) -> dict:
        """Write one record; returns it as written."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        record = {"kind": kind, "time": round(time.time(), 3), "peer": self.peer, **_clean(fields)}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict]:
    """All records of a metrics file (optionally only one ``kind``); [] when it does not exist.
    A malformed line — the torn last line of a killed peer — is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logging.getLogger(__name__).warning("%s: skipping a malformed line", path)
    return [r for r in records if kind is None or r.get("kind") == kind]


class RunningMean:
    """Mean of the last ``window`` values (the "avg" of the progress line)."""

    def __init__(self, window: int = 100) -> None:
        self._values: deque[float] = deque(maxlen=window)

    def add(self, value: float) -> None:
        self._values.append(float(value))

    @property
    def value(self) -> float:
        return sum(self._values) / len(self._values) if self._values else float("nan")


def format_progress(
    peer: str,
    round: int,
    step: int,
    loss: float,
    loss_avg: float,
    images_per_s: float,
    answered: int | None = None,
    expected: int | None = None,
    mix_seconds: float | None = None,
    neighbour_distance_sq: float | None = None,
) -> str:
    """The fixed-format console progress line (fields absent in standalone runs print as '-')."""
    nbr = f"{answered}/{expected}" if expected is not None else "-/-"
    mix = f"{mix_seconds:6.3f}s" if mix_seconds is not None else "     -"
    dist = f"{neighbour_distance_sq:.2e}" if neighbour_distance_sq is not None else "-"
    return (
        f"[{peer}] r {round:4d} s {step:6d} loss {loss:.4f}/{loss_avg:.4f} "
        f"img/s {images_per_s:6.1f} nbr {nbr} mix {mix} dist {dist}"
    )


def progress_logger() -> logging.Logger:
    """The logger the trainer sends progress lines to (INFO level)."""
    return logging.getLogger(PROGRESS_LOGGER)


def setup_cli_logging(verbose: bool) -> None:
    """For entry points: library logs as 'time level name: message' on stderr, progress lines as
    they are on stdout."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    progress = logging.getLogger(PROGRESS_LOGGER)
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
    progress.setLevel(logging.INFO)
    progress.propagate = False


def round_record(result: MixResult, mode: str, *, compute_seconds: float, blocked_seconds: float) -> dict:
    """A ``round`` record's fields: :func:`round_fields` and the gossip mode, or for a round that did
    not mix only its ``error`` (the hook's ``failure``) and times."""
    times = {"compute_seconds": compute_seconds, "blocked_seconds": blocked_seconds}
    if result.failure is not None:
        return {"error": result.failure, **times}
    return {"mode": mode, **round_fields(result, **times)}


def round_fields(result: MixResult, *, compute_seconds: float, blocked_seconds: float) -> dict[str, Any]:
    """The fields of a ``round`` record: the realised W row (self weight + each neighbour's weight,
    who answered), bytes, the time split and staleness.

    Time split: ``compute_seconds`` = training steps since the previous round; ``pull_seconds`` =
    communicating (until the last pull finished or hit its deadline); ``mix_seconds`` = averaging;
    ``wait_seconds`` = the rest of the time training was blocked on the round (publishing, loading
    the mixed params, waiting for the hook). Snapshot and probe time is in none of them."""
    stalenesses = [n.staleness for n in result.neighbours if n.answered and n.staleness is not None]
    return {
        "answered": result.answered,
        "expected": result.expected,
        "self_weight": result.self_weight,
        "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out,
        "compute_seconds": compute_seconds,
        "pull_seconds": result.pull_seconds,
        "mix_seconds": result.mix_seconds,
        "blocked_seconds": blocked_seconds,
        "wait_seconds": max(0.0, blocked_seconds - result.pull_seconds - result.mix_seconds),
        "staleness_max": max(stalenesses) if stalenesses else None,
        "neighbour_distance_sq": result.neighbour_distance_sq,
        "neighbours": [_neighbour_fields(n) for n in result.neighbours],
    }


def _neighbour_fields(n: NeighbourReport) -> dict[str, Any]:
    return {
        "peer": n.peer_id,
        "answered": n.answered,
        "weight": n.weight,
        "round": n.round,
        "staleness": n.staleness,
        "bytes_in": n.bytes_in,
        "seconds": n.seconds,
        "error": n.error,
        "deadline_s": n.deadline_s,  # this pull's deadline (per neighbour under gossip.deadline_s: auto)
    }
