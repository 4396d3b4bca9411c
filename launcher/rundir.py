"""The run directory: everything one swarm run leaves behind, in one place.

Layout::

    runs/<UTC time>-<name>/
      manifest.json          versions, git SHA, seeds, topology, command line, peers and their knobs
      timeline.jsonl         launcher events (spawned, ready, exited, signalled, fault events ...)
      partition_report.*     copied from the bootstrap peer once it wrote its own
      peers/<peer id>/
        config.yaml          the resolved config this peer was started with
        peer.log             its stdout + stderr
        ready.json           written by the peer once it serves (id, address, maddrs, join command)
        metrics.jsonl ...    whatever the peer's trainer writes (checkpoints, final.json, params)
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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from peer.config import config_to_dict

_PACKAGES = ("dssl", "torch", "torchvision", "timm", "hivemind", "grpcio", "protobuf", "numpy")
_REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (creating it is :func:`create_run_dir`'s job)."""

    path: Path

    def peer_dir(self, peer_id: str) -> Path:
        return self.path / "peers" / peer_id

    def config_path(self, peer_id: str) -> Path:
        return self.peer_dir(peer_id) / "config.yaml"

    def log_path(self, peer_id: str) -> Path:
        return self.peer_dir(peer_id) / "peer.log"

    def ready_path(self, peer_id: str) -> Path:
        return self.peer_dir(peer_id) / "ready.json"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def timeline_path(self) -> Path:
        return self.path / "timeline.jsonl"


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
        (path / "peers").mkdir()
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


def git_sha(repo: Path = _REPO) -> str | None:
    """The source tree's commit (with ``-dirty`` when it has local changes); None outside git."""
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
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
        "peers": [{"index": p.index, "peer_id": p.peer_id, "knobs": p.knobs,
                   "config": str(run.config_path(p.peer_id))} for p in plan.peers],
        **(extra or {}),
    }
    run.manifest_path.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    return run.manifest_path


def read_timeline(path: Path) -> list[dict]:
    """The events of a ``timeline.jsonl`` written by :class:`Timeline` ([] when it does not exist);
    a torn last line is skipped."""
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


class Timeline:
    """Append-only JSONL of launcher events; thread-safe. Faults (issue 6) write here too.

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
        entry = {"t": round(now, 3), "t_rel": round(now - self._t0, 3), "event": event, "peer": peer, **detail}
        with self._lock:
            self._events.append(entry)
            with self.path.open("a") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")
        return entry

    def events(self, event: str | None = None, peer: str | None = None) -> list[dict]:
        with self._lock:
            return [e for e in self._events
                    if (event is None or e["event"] == event) and (peer is None or e["peer"] == peer)]
