"""Every committed study grid loads: its runs resolve to valid swarm plans and its claims parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from analysis.claims import load_claims
from launcher.grid import load_grid

STUDY = Path(__file__).resolve().parents[2] / "examples" / "study"
GRIDS = sorted(p for p in STUDY.glob("*.yaml") if "sweep" in (yaml.safe_load(p.read_text()) or {}))


def test_the_study_directory_has_grids():
    assert {p.name for p in GRIDS} >= {"claims.yaml", "pays.yaml", "backbone_pilot.yaml"}


@pytest.mark.parametrize("path", GRIDS, ids=lambda p: p.name)
def test_a_study_grid_resolves_every_run_and_claim(path):
    # execute: load_grid resolves every run's swarm plan (peer configs validated)
    grid = load_grid(path)
    claims = load_claims(path)
    # assert
    assert grid.runs
    assert all(c.delta is None or 0 < c.delta < 0.2 for c in claims)
