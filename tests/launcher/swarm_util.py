"""Shared pieces of the swarm tests: a tiny real-data peer config, the peer command, polling."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import peer.cli
from launcher.local import PEER_COMMAND, LocalSwarm
from launcher.rundir import create_run_dir, write_manifest, write_peer_configs
from launcher.spec import plan_from_dict

# `dssl peer` through the real console entry once peer.cli exposes it; the same peer module otherwise.
COMMAND = PEER_COMMAND if hasattr(peer.cli, "peer_main") else (sys.executable, "-m", "peer.peer")

# Real Fashion-MNIST, a few hundred images, timm's 0.37 M-parameter test_resnet, tiny heads.
TINY = {
    "name": "tiny",
    "data": {"dataset": "fashion-mnist", "partition": "dirichlet:0.5", "train_limit": 192, "test_limit": 100},
    "objective": {"name": "simsiam", "backbone": "test_resnet", "proj_hidden_dim": 32, "proj_dim": 32,
                  "pred_dim": 8},
    "train": {"batch_size": 16, "period": 2, "log_every": 2},
    "eval": {"bank_limit": 200, "linear_epochs": 1, "own_distribution": False, "at_start": False},
    "gossip": {"mode": "sync", "topology": "ring", "deadline_s": 3.0},
}


def tiny_plan(size: int, swarm_id: str, steps: int | None, **swarm):
    base = json.loads(json.dumps(TINY))
    if steps is not None:
        base["train"]["steps"] = steps
    else:
        base["train"]["time_budget_s"] = 600.0  # stopped by the test
    return plan_from_dict({"swarm": {"id": swarm_id, "ready_timeout_s": 120, "stop_deadline_s": 30, **swarm},
                           "base": base, "defaults": {"threads": 1}}, size=size)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, poll_s: float = 0.3):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def rounds(peer_dir: Path) -> list[dict]:
    """The peer's round records so far (metrics.jsonl, kind 'round')."""
    path = peer_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            continue
        if record.get("kind") == "round":
            out.append(record)
    return out


def reaped_swarm(plan, tmp_path: Path, reaper: list, peer_command=COMMAND, **kwargs) -> LocalSwarm:
    """A LocalSwarm of ``plan`` in a fresh run dir under ``tmp_path`` whose every peer process goes
    to the test's reaper the moment it exists (so nothing outlives a failing test)."""
    run = create_run_dir(tmp_path / "runs", "t")
    swarm = LocalSwarm(plan, run, config_paths=write_peer_configs(run, plan), peer_command=peer_command, **kwargs)
    write_manifest(run, plan, ["pytest"])
    original = swarm.start_peer

    def start_peer(*args, **kw):
        proc = original(*args, **kw)
        reaper.append(proc.popen)
        return proc

    swarm.start_peer = start_peer
    return swarm
