"""Transport faults of a running swarm: the ``faults.json`` control file of each peer.

The launcher never tells a peer about a fault: it writes the peer's control file (schema and reading
side: :mod:`gossip.faults`), which the peer's gossip server re-reads when it changes. Local and netns
peers share our disk, so the file is replaced atomically here; for ssh hosts the same atomic write
runs on the remote host through the host's transport (the peer's run dir path is the same string
there: it comes from the peer's config). ``delay``/``bandwidth`` act on what a peer serves to
``to``; a partition is written to every peer.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

from gossip.faults import FaultControl
from launcher.processes import SwarmProcesses
from launcher.spec import SwarmPlan
from peer.atomic_file import write_text
from peer.rundir import FAULT_CONTROL_FILE

# run on an ssh host, in its dssl checkout: the same atomic write as write_control (no validation)
_WRITE_REMOTE = "from peer.atomic_file import write_text; write_text({path!r}, {text!r})"


def write_control(path: str | Path, values: dict[str, Any]) -> None:
    """Atomically replace the control file at ``path`` with ``values`` (validated first: raises
    ``gossip.faults.ControlError``)."""
    FaultControl.from_dict(values)
    write_text(path, json.dumps(values, sort_keys=True))


def with_fault_injection(plan: SwarmPlan) -> SwarmPlan:
    """``plan`` with every peer honouring its control file (``gossip.fault_injection``): only then
    does a peer's gossip server install the fault interceptor."""
    peers = []
    for peer in plan.peers:
        gossip = dataclasses.replace(peer.config.gossip, fault_injection=True)
        peers.append(dataclasses.replace(peer, config=dataclasses.replace(peer.config, gossip=gossip)))
    return dataclasses.replace(plan, peers=tuple(peers))


class ControlWriter:
    """Writes a peer's control file where its gossip server reads it (here, or on its ssh host)."""

    def __init__(self, swarm: SwarmProcesses, timeout_s: float = 15.0):
        self.swarm = swarm
        self.timeout_s = timeout_s

    def path(self, peer_id: str) -> Path:
        return self.swarm.run.peer_dir(peer_id) / FAULT_CONTROL_FILE

    def write(self, peer_id: str, values: dict[str, Any]) -> None:
        transport = self.swarm.transports.get(peer_id)
        if transport is None or not transport.remote:
            write_control(self.path(peer_id), values)
            return
        FaultControl.from_dict(values)
        code = _WRITE_REMOTE.format(path=str(self.path(peer_id)), text=json.dumps(values, sort_keys=True))
        subprocess.run(
            transport.wrap(["python", "-c", code]),
            check=True,
            timeout=self.timeout_s,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )


class TransportControls:
    """What each peer's control file says now (seed, drop, links, the swarm's partition); every
    change rewrites the files it touches."""

    def __init__(self, writer: ControlWriter, seed: int, peer_ids: list[str]):
        self.writer = writer
        self.seed = seed
        self._controls: dict[str, dict[str, Any]] = {peer_id: {} for peer_id in peer_ids}
        self._partition: list[list[str]] | None = None

    def write(self, peer_id: str) -> None:
        values: dict[str, Any] = {"seed": self.seed, **self._controls[peer_id]}
        if self._partition:
            values["partition"] = self._partition
        self.writer.write(peer_id, values)

    def write_all(self) -> None:
        for peer_id in self._controls:
            self.write(peer_id)

    def clear(self) -> None:
        """No faults anywhere (the files keep only the seed)."""
        self._controls = {peer_id: {} for peer_id in self._controls}
        self._partition = None

    def drop(self, peer_id: str, p: float, mode: str) -> bool:
        control = self._controls[peer_id]
        control.pop("drop", None)
        if p > 0:
            control["drop"] = {"p": p, "mode": mode}
        self.write(peer_id)
        return True

    def set_link(self, peer_id: str, to: str, key: str, value: float | None) -> bool:
        links = self._controls[peer_id].setdefault("links", {})
        link = links.setdefault(to, {})
        if value is None or value == 0:
            link.pop(key, None)
        else:
            link[key] = value
        self._controls[peer_id]["links"] = {k: v for k, v in links.items() if v}
        self.write(peer_id)
        return True

    def partition(self, groups: list[list[str]] | None) -> bool:
        self._partition = [list(g) for g in groups] if groups else None
        self.write_all()
        return True
