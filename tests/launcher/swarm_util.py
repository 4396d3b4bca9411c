"""Shared pieces of the launcher tests: a tiny real-data peer config, polling, reading rounds, a
reaped swarm of real peers, and a swarm of gossip-only nodes with known parameters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from launcher.fault_control import write_control
from launcher.processes import PEER_COMMAND, SwarmProcesses
from launcher.run_setup import create_run_dir, write_manifest, write_peer_configs
from launcher.spec import plan_from_dict
from peer.atomic_file import write_json
from peer.rundir import FAULT_CONTROL_FILE, METRICS_FILE

REPO = Path(__file__).resolve().parents[2]
NODE = (sys.executable, "-m", "tests.launcher._gossip_node")


# Real Fashion-MNIST, a few hundred images, timm's 0.37 M-parameter test_resnet, tiny heads.
TINY = {
    "name": "tiny",
    "data": {"dataset": "fashion-mnist", "partition": "dirichlet:0.5", "train_limit": 192, "test_limit": 100},
    "objective": {
        "name": "simsiam",
        "backbone": "test_resnet",
        "proj_hidden_dim": 32,
        "proj_dim": 32,
        "pred_dim": 8,
    },
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
    return plan_from_dict(
        {
            "swarm": {"id": swarm_id, "ready_timeout_s": 120, "stop_deadline_s": 30, **swarm},
            "base": base,
            "defaults": {"threads": 1},
        },
        size=size,
    )


def churn_plan(size: int, swarm_id: str, **swarm):
    """A plan of real peers that train until stopped, checkpoint every round and honour transport
    faults: for fault-runner kills and restarts (``swarm``: extra swarm settings, e.g. zygote)."""
    base = json.loads(json.dumps(TINY))
    base["train"].update({"time_budget_s": 600.0, "checkpoint_every": 2})
    base["gossip"]["fault_injection"] = True
    return plan_from_dict(
        {
            "swarm": {"id": swarm_id, "ready_timeout_s": 120, "stop_deadline_s": 30, **swarm},
            "base": base,
            "defaults": {"threads": 1},
        },
        size=size,
    )


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
    path = peer_dir / METRICS_FILE
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


def reaped_swarm(
    plan,
    tmp_path: Path,
    reaper: list,
    peer_command=PEER_COMMAND,
    manifest_extra: dict | None = None,
    **kwargs,
) -> SwarmProcesses:
    """The SwarmProcesses of ``plan`` in a fresh run dir under ``tmp_path`` whose every peer process
    goes to the test's reaper the moment it exists (so nothing outlives a failing test)."""
    run = create_run_dir(tmp_path / "runs", "t")
    swarm = SwarmProcesses(
        plan, run, config_paths=write_peer_configs(run, plan), peer_command=peer_command, **kwargs
    )
    write_manifest(run, plan, ["pytest"], manifest_extra)
    original = swarm.start_peer

    def start_peer(*args, **kw):
        proc = original(*args, **kw)
        reaper.append(proc.popen)
        return proc

    swarm.start_peer = start_peer
    return swarm


class NodeSwarm:
    """Gossip-only node processes (tests/launcher/_gossip_node.py) sharing one directory."""

    def __init__(self, root: Path, reaper: list):
        self.root = root
        self.reaper = reaper
        self.procs: dict[str, subprocess.Popen] = {}
        root.mkdir(parents=True, exist_ok=True)

    def start(
        self,
        peer_ids: list[str],
        values: dict[str, float],
        *args: str,
        per_peer: dict[str, list[str]] | None = None,
    ) -> dict[str, str]:
        """Start one node per id holding ``values[id]`` (``per_peer[id]``: its own extra arguments);
        once all are bound, tell them each other's addresses (``peers.json``); returns them."""
        for peer_id in peer_ids:
            argv = [
                *NODE,
                "--peer-id",
                peer_id,
                "--dir",
                str(self.root),
                "--value",
                str(values[peer_id]),
                *args,
                *(per_peer or {}).get(peer_id, []),
            ]
            with (self.root / f"{peer_id}.log").open("ab") as log:
                proc = subprocess.Popen(
                    argv,
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                )
            self.reaper.append(proc)
            self.procs[peer_id] = proc
        addresses = wait_for(lambda: self._addresses(peer_ids), 90, "the nodes to bind")
        write_json(self.root / "peers.json", addresses)
        return addresses

    def _addresses(self, peer_ids: list[str]) -> dict[str, str] | None:
        for peer_id, proc in self.procs.items():
            assert proc.poll() is None, (self.root / f"{peer_id}.log").read_text()[-2000:]
        found = {}
        for peer_id in peer_ids:
            try:
                found[peer_id] = json.loads((self.root / f"{peer_id}.addr").read_text())["address"]
            except (OSError, json.JSONDecodeError):
                return None
        return found

    def records(self, peer_id: str, event: str = "round") -> list[dict]:
        path = self.root / f"{peer_id}.jsonl"
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record["event"] == event:
                out.append(record)
        return out

    def last_round(self, peer_id: str) -> int:
        done = self.records(peer_id)
        return done[-1]["round"] if done else -1

    def write_control(self, peer_id: str, values: dict) -> None:
        """Set ``peer_id``'s transport faults (its control file; the node need not run yet)."""
        write_control(self.root / peer_id / FAULT_CONTROL_FILE, values)

    def signal(self, peer_id: str, sig: int) -> None:
        os.killpg(self.procs[peer_id].pid, sig)

    def stop(self) -> None:
        (self.root / "stop").touch()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
