"""A hand-made 3-peer run directory whose realised mixing matrices are known in closed form.

Round 1: full graph, every row 1/3 (W = J/3: eigenvalues 1, 0, 0 -> gap 1; |A_i| = 3).
Round 2: path a - b - c with Metropolis weights, W = [[1/2,1/2,0],[1/3,1/3,1/3],[0,1/2,1/2]]:
  eigenvalues 1, 1/2, -1/6 -> gap 1/2; |A| = (2, 3, 2) -> mean 7/3, harmonic 3/(1/2+1/3+1/2) = 9/4.
Round 3: c logged nothing (dead) but a mixed c's stale snapshot, b heard nobody:
  W = [[1/2,0,1/2],[0,1,0],[0,0,1]] -> eigenvalues 1, 1, 1/2 -> gap 0; |A| = (2, 1, 1) -> 4/3, 1.2.
Final params a = (0, 0), b = (2, 0), c = (1, 3): mean (1, 1) -> (2 + 2 + 4) / 3 = 8/3.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

T0 = 1_800_000_000.0
FINAL_PARAMS = {"a": [0.0, 0.0], "b": [2.0, 0.0], "c": [1.0, 3.0]}


def _nbr(peer: str, weight: float, answered: bool = True, staleness: int = 0) -> dict:
    return {
        "peer": peer,
        "answered": answered,
        "weight": weight if answered else 0.0,
        "round": 1,
        "staleness": staleness if answered else None,
        "bytes_in": 1000 if answered else 0,
        "seconds": 0.01,
        "error": None if answered else "deadline",
    }


def _round(peer: str, rnd: int, self_weight: float, nbrs: list[dict], dist: float) -> dict:
    answered = sum(n["answered"] for n in nbrs)
    return {
        "kind": "round",
        "time": T0 + 10 * rnd,
        "peer": peer,
        "step": 10 * rnd,
        "round": rnd,
        "mode": "sync",
        "answered": answered,
        "expected": len(nbrs),
        "self_weight": self_weight,
        "bytes_in": 1000 * answered,
        "bytes_out": 2_000_000 * rnd,
        "compute_seconds": 1.0,
        "pull_seconds": 0.1,
        "mix_seconds": 0.01,
        "blocked_seconds": 0.2,
        "wait_seconds": 0.09,
        "staleness_max": max((n["staleness"] for n in nbrs if n["answered"]), default=None),
        "neighbour_distance_sq": dist,
        "neighbours": nbrs,
    }


def _eval(peer: str, rnd: int, knn: float, tag: str) -> dict:
    return {
        "kind": "eval",
        "time": T0 + 10 * rnd + 1,
        "peer": peer,
        "step": 10 * rnd,
        "round": rnd,
        "tag": tag,
        "knn": knn,
    }


def records() -> dict[str, list[dict]]:
    third = 1.0 / 3.0
    return {
        "a": [
            _eval("a", 0, 0.30, "init"),
            _round("a", 1, third, [_nbr("b", third), _nbr("c", third)], 0.4),
            _round("a", 2, 0.5, [_nbr("b", 0.5)], 0.4),
            _round("a", 3, 0.5, [_nbr("c", 0.5, staleness=2)], 0.5),
            _eval("a", 3, 0.50, "final"),
        ],
        "b": [
            _eval("b", 0, 0.31, "init"),
            _round("b", 1, third, [_nbr("a", third), _nbr("c", third)], 0.4),
            _round("b", 2, third, [_nbr("a", third), _nbr("c", third)], 0.3),
            _round("b", 3, 1.0, [_nbr("a", 0.5, answered=False), _nbr("c", 0.5, answered=False)], 0.0),
            _eval("b", 3, 0.55, "final"),
        ],
        "c": [
            _eval("c", 0, 0.29, "init"),
            _round("c", 1, third, [_nbr("a", third), _nbr("b", third)], 0.4),
            _round("c", 2, 0.5, [_nbr("b", 0.5)], 0.2),
        ],
    }


def make_run(root: Path) -> Path:
    """Write the run directory (peers/<id>/metrics.jsonl, final_params.pt, timeline, manifest)."""
    run = root / "20260101-000000-synthetic"
    for peer, recs in records().items():
        d = run / "peers" / peer
        d.mkdir(parents=True)
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        torch.save({"params": torch.tensor(FINAL_PARAMS[peer]), "fingerprint": "fp"}, d / "final_params.pt")
    events = [
        {"t": T0, "t_rel": 0.0, "event": "spawned", "peer": "a"},
        {"t": T0 + 25, "t_rel": 25.0, "event": "fault", "peer": "c", "action": "kill"},
        {"t": T0 + 40, "t_rel": 40.0, "event": "exited", "peer": "a"},
    ]
    (run / "timeline.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (run / "manifest.json").write_text(json.dumps({"command": ["dssl", "swarm", "--peers", "3"]}))
    return run
