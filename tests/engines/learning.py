"""Did a finished swarm learn? Read each peer's final.json (no process is started here)."""

from __future__ import annotations

import json
from pathlib import Path


def final_evals(peer_dirs: list[Path]) -> dict[str, tuple[dict, dict]]:
    """peer dir name -> (evaluation at random init, final evaluation)."""
    out = {}
    for peer_dir in peer_dirs:
        final = json.loads((peer_dir / "final.json").read_text())
        out[peer_dir.name] = (final["eval_init"], final["eval_final"])
    return out


def assert_learned(peer_dirs: list[Path], min_linear_gain: float = 0.03) -> None:
    """Every peer finished, and on average the swarm's linear probe beats random init by
    ``min_linear_gain``. (kNN is not asserted: after ~100 steps on 2,000 images it moves by about
    its own noise, +-1 point on 500 test images; the linear probe gains ~12 points.)"""
    evals = final_evals(peer_dirs)
    assert len(evals) == len(peer_dirs)
    linear_gain = sum(f["linear"] - i["linear"] for i, f in evals.values()) / len(evals)
    assert linear_gain >= min_linear_gain, evals
