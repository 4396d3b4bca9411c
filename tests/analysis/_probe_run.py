"""Probe records and parameter snapshots added to the hand-made run of ``tests/analysis/_diag_run.py``.

Snapshots (params published for the round, pre-mix):
  round 1: a = (0, 0), b = (2, 0), c = (1, 3) -> mean (1, 1) -> (2 + 2 + 4) / 3 = 8/3;
  round 2: a = (0, 0), b = (2, 0), c under another layout fingerprint -> a, b only: (1 + 1) / 2 = 1;
  round 3: a's snapshot only (b's file is torn) -> no exact figure for round 3.
Probe records: a at rounds 2, 3; b at rounds 2, 3 (its round-3 mix timed out: no A-MMD); c none.
  round 2: collapse std (0.8 + 0.9) / 2 = 0.85, A-MMD (0.1 + 0.2) / 2 = 0.15;
  round 3: collapse std (0.6 + 0.7) / 2 = 0.65, A-MMD 0.3 (a only).
  Summary (each peer's last value): collapse std (0.6 + 0.7) / 2 = 0.65; A-MMD (0.3 + 0.2) / 2 = 0.25.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tests.analysis._diag_run import T0, make_run

SNAPSHOTS = {
    1: {"a": ([0.0, 0.0], "fp"), "b": ([2.0, 0.0], "fp"), "c": ([1.0, 3.0], "fp")},
    2: {"a": ([0.0, 0.0], "fp"), "b": ([2.0, 0.0], "fp"), "c": ([5.0, 5.0], "other")},
    3: {"a": ([0.0, 0.0], "fp")},
}
PROBES = {"a": [(2, 0.8, 0.1), (3, 0.6, 0.3)], "b": [(2, 0.9, 0.2), (3, 0.7, None)]}


def _probe(peer: str, rnd: int, std: float, mmd: float | None) -> dict:
    return {
        "kind": "probe",
        "time": T0 + 10 * rnd + 2,
        "peer": peer,
        "step": 10 * rnd,
        "round": rnd,
        "collapse_std": std,
        "collapse_std_mixed": None if mmd is None else std - 0.05,
        "a_mmd": mmd,
        "probe_size": 256,
        "seconds": 0.05,
    }


def make_probe_run(root: Path) -> Path:
    """The hand-made 3-peer run plus the snapshots and probe records above."""
    run = make_run(root)
    for rnd, saved in SNAPSHOTS.items():
        for peer, (params, fingerprint) in saved.items():
            path = run / "peers" / peer / "snapshots" / f"round_{rnd:05d}.pt"
            path.parent.mkdir(exist_ok=True)
            torch.save(
                {"params": torch.tensor(params), "fingerprint": fingerprint, "round": rnd, "step": 10 * rnd},
                path,
            )
    (run / "peers" / "b" / "snapshots" / "round_00003.pt").write_bytes(b"PK\x03\x04 torn")
    for peer, probes in PROBES.items():
        with (run / "peers" / peer / "metrics.jsonl").open("a") as f:
            f.writelines(json.dumps(_probe(peer, *p)) + "\n" for p in probes)
    return run
