"""Setting up a run directory: create it, write every peer's resolved config and the manifest, and
keep the timeline of launcher events.

The layout and every file name are ``peer.rundir``'s (the run-directory contract); this module only
writes. Reading the timeline back is ``analysis.timeline``'s job.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from peer.atomic_file import write_json
from peer.config import config_to_dict
from peer.rundir import PEERS_DIR, RunDir

_PACKAGES = ("dssl", "torch", "torchvision", "timm", "hivemind", "grpcio", "protobuf", "numpy")
_REPO = Path(__file__).resolve().parent.parent


def create_run_dir(root: str | Path, name: str) -> RunDir:
    """Make a fresh ``<root>/<UTC time>-<name>`` directory (suffixed when the name is taken)."""
    root = Path(root)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for attempt in range(1000):
        path = root / (f"{stamp}-{name}" if attempt == 0 else f"{stamp}-{name}-{attempt}")
        try:
            path.mkdir(parents=True)
        except FileExistsError:
            continue
        (path / PEERS_DIR).mkdir()
        return RunDir(path.resolve())
    raise RuntimeError(f"could not create a run directory under {root}")


def write_peer_configs(run: RunDir, plan) -> dict[str, Path]:
    """Write each peer's resolved config (with its run dir pointing into ours); returns the paths."""
    paths = {}
    for peer in plan.peers:
        peer_dir = run.peer_dir(peer.peer_id)
        peer_dir.mkdir(parents=True, exist_ok=True)
        values = config_to_dict(peer.config)
        values["train"]["run_dir"] = str(peer_dir)
        run.config_path(peer.peer_id).write_text(yaml.safe_dump(values, sort_keys=False))
        paths[peer.peer_id] = run.config_path(peer.peer_id)
    return paths


def _git(repo: Path, *args: str, check: bool = False) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=check
    ).stdout.strip()


def git_sha(repo: Path = _REPO) -> str | None:
    """The source tree's commit (with ``-dirty`` when it has local changes); None outside git."""
    try:
        sha = _git(repo, "rev-parse", "HEAD", check=True)
        dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide what a run computes."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_manifest(run: RunDir, plan, argv: list[str], extra: dict[str, Any] | None = None) -> Path:
    """Record what was run, with what, from which source, on which host."""
    first = plan.peers[0].config
    manifest = {
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": [Path(sys.argv[0]).name, *argv],
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "git_sha": git_sha(),
        "versions": versions(),
        "spec": plan.source,
        "swarm_id": plan.settings.swarm_id,
        "seeds": {"swarm": plan.settings.seed, "data": first.data.seed, "train": first.train.seed},
        "topology": {"kind": first.gossip.topology, "mixing": first.gossip.mixing, "mode": first.gossip.mode},
        "partition": first.data.partition,
        "dataset": first.data.dataset,
        "peers": [
            {
                "index": p.index,
                "peer_id": p.peer_id,
                "knobs": p.knobs,
                "config": str(run.config_path(p.peer_id)),
            }
            for p in plan.peers
        ],
        **(extra or {}),
    }
    return write_json(run.manifest_path, manifest)


class Timeline:
    """Append-only JSONL of launcher events (peers spawned, ready, exited, signalled, faults);
    thread-safe.

    Each line: ``{"t": unix time, "t_rel": seconds since the timeline opened, "event": ...,
    "peer": id or null, ...detail}``; :meth:`events` returns them in memory for tests and plots.
    """

    def __init__(self, path: Path):
        self.path = path
        self._t0 = time.time()
        self._lock = threading.Lock()
        self._events: list[dict] = []

    def record(self, event: str, peer: str | None = None, **detail: Any) -> dict:
        now = time.time()
        entry = {
            "t": round(now, 3),
            "t_rel": round(now - self._t0, 3),
            "event": event,
            "peer": peer,
            **detail,
        }
        with self._lock:
            self._events.append(entry)
            with self.path.open("a") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")
        return entry

    def events(self, event: str | None = None, peer: str | None = None) -> list[dict]:
        with self._lock:
            return [
                e
                for e in self._events
                if (event is None or e["event"] == event) and (peer is None or e["peer"] == peer)
            ]
