"""Does the swarm pay? A swarm run against its two baselines, read from the run directory.

The baselines (trained by :mod:`launcher.baselines`, under ``<run>/baselines/``) use the swarm's
own shares, seeds, steps and evaluation sets:

* **local-only** (``baselines/local/<peer>/``): each peer's resolved config trained alone by
  ``dssl train``, no gossip — what the peer would have had without the swarm;
* **centralised** (``baselines/centralised/``): one model on the union of every peer's share
  (``data.union``) for the swarm's total number of steps — the ceiling collaboration approaches.

The gain is paired per peer: ``swarm_i − alone_i`` for every peer that finished both, with a Student-t
95 % CI over the peers (:func:`analysis.power.mean_ci`); the consensus model θ̄ (``consensus.json``)
is compared with each peer alone the same way. Metrics are fractions (0.03 = 3 points).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from analysis.power import mean_ci
from peer.rundir import CONSENSUS_FILE, FINAL_EVAL_FILE, FINAL_FILE, PEERS_DIR

BASELINES_DIR = "baselines"
LOCAL_DIR = "local"
CENTRALISED_DIR = "centralised"
BASELINES_FILE = "baselines.json"
METRICS = ("knn", "linear")


def _read_eval(path: Path) -> dict | None:
    """The ``eval`` block of a final.json / final_eval.json (None when the file is missing or bad)."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    block = payload.get("eval") or payload.get("eval_final") if isinstance(payload, dict) else None
    return block if isinstance(block, dict) else None


def _value(block: dict | None, metric: str) -> float | None:
    value = (block or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


@dataclass
class Gain:
    """A paired difference over peers: mean and 95 % CI (None where it cannot be computed)."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int

    @classmethod
    def of(cls, differences: list[float]) -> Gain:
        mean, low, high = mean_ci(differences)
        return cls(mean, low, high, len(differences))

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low is not None and (self.ci_low > 0 or self.ci_high < 0)


@dataclass
class BaselineSummary:
    """Per-peer swarm vs alone, θ̄ and the centralised model, per metric."""

    peers: list[dict] = field(default_factory=list)  # {peer, swarm_knn, alone_knn, swarm_linear, ...}
    consensus: dict = field(default_factory=dict)  # {knn, linear} of θ̄ (empty: not evaluated)
    centralised: dict = field(default_factory=dict)  # {knn, linear} (empty: not trained)
    gain: dict[str, Gain] = field(default_factory=dict)  # metric -> swarm_i − alone_i
    consensus_gain: dict[str, Gain] = field(default_factory=dict)  # metric -> θ̄ − alone_i

    def mean(self, who: str, metric: str) -> float | None:
        values = [p[f"{who}_{metric}"] for p in self.peers if p.get(f"{who}_{metric}") is not None]
        return sum(values) / len(values) if values else None

    def to_dict(self) -> dict:
        return {
            "peers": self.peers,
            "consensus": self.consensus,
            "centralised": self.centralised,
            "gain": {m: vars(g) for m, g in self.gain.items()},
            "consensus_gain": {m: vars(g) for m, g in self.consensus_gain.items()},
            "means": {f"{w}_{m}": self.mean(w, m) for w in ("swarm", "alone") for m in METRICS},
        }


def summarize(run_dir: Path) -> BaselineSummary:
    """Pair every peer's final evaluation with its local-only baseline; add θ̄ and the centralised model."""
    base = run_dir / BASELINES_DIR
    summary = BaselineSummary()
    for peer_dir in sorted((run_dir / PEERS_DIR).iterdir()) if (run_dir / PEERS_DIR).is_dir() else []:
        swarm = _read_eval(peer_dir / FINAL_FILE)
        alone = _read_eval(base / LOCAL_DIR / peer_dir.name / FINAL_EVAL_FILE)
        row = {"peer": peer_dir.name}
        for metric in METRICS:
            row[f"swarm_{metric}"], row[f"alone_{metric}"] = _value(swarm, metric), _value(alone, metric)
        summary.peers.append(row)
    consensus = _read_eval_or_top(run_dir / CONSENSUS_FILE)
    central = _read_eval(base / CENTRALISED_DIR / FINAL_EVAL_FILE)
    for metric in METRICS:
        paired = [(p[f"swarm_{metric}"], p[f"alone_{metric}"]) for p in summary.peers]
        complete = [(s, a) for s, a in paired if s is not None and a is not None]
        summary.gain[metric] = Gain.of([s - a for s, a in complete])
        theta = _value(consensus, metric)
        alone = [a for _, a in paired if a is not None]
        summary.consensus_gain[metric] = Gain.of([theta - a for a in alone] if theta is not None else [])
        if theta is not None:
            summary.consensus[metric] = theta
        if _value(central, metric) is not None:
            summary.centralised[metric] = _value(central, metric)
    return summary


def _read_eval_or_top(path: Path) -> dict | None:
    """consensus.json keeps kNN / linear at the top level."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _fmt_gain(gain: Gain) -> str:
    if gain.mean is None:
        return "-"
    if gain.ci_low is None:
        return f"{gain.mean * 100:+.2f} pts (n {gain.n})"
    return f"{gain.mean * 100:+.2f} pts [{gain.ci_low * 100:+.2f}, {gain.ci_high * 100:+.2f}] (n {gain.n})"


def format_summary(summary: BaselineSummary) -> str:
    """The comparison table and the paired gains, for the terminal and the run report."""
    rows = [
        ("swarm (per-peer mean)", summary.mean("swarm", "knn"), summary.mean("swarm", "linear")),
        ("consensus model θ̄", summary.consensus.get("knn"), summary.consensus.get("linear")),
        ("local-only (mean)", summary.mean("alone", "knn"), summary.mean("alone", "linear")),
        ("centralised", summary.centralised.get("knn"), summary.centralised.get("linear")),
    ]
    lines = [f"{'model':<24}{'kNN':>8}{'linear':>9}"]
    lines += [f"{name:<24}{_fmt(knn):>8}{_fmt(lin):>9}" for name, knn, lin in rows]
    for label, gains in (("swarm − local-only", summary.gain), ("θ̄ − local-only", summary.consensus_gain)):
        parts = [f"{m} {_fmt_gain(gains[m])}" for m in METRICS if m in gains]
        lines.append(f"{label} (paired over peers, 95% CI): " + "; ".join(parts))
    return "\n".join(lines)


def result_fields(summary: BaselineSummary) -> str:
    """``key=value`` fields for a RESULT line (nan where missing)."""

    def num(value: float | None) -> str:
        return "nan" if value is None else f"{value:.4f}"

    fields = {
        "local_only_knn": summary.mean("alone", "knn"),
        "centralised_knn": summary.centralised.get("knn"),
        "consensus_knn": summary.consensus.get("knn"),
    }
    for metric in METRICS:
        gain = summary.gain.get(metric)
        if gain is not None:
            fields[f"gain_{metric}"] = gain.mean
            fields[f"gain_{metric}_ci_low"], fields[f"gain_{metric}_ci_high"] = gain.ci_low, gain.ci_high
    return " ".join(f"{key}={num(value)}" for key, value in fields.items())
