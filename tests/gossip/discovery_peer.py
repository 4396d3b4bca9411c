"""A discovery peer in its own process, for tests that need a real crash or another "host".

Run as ``python -m tests.gossip.discovery_peer --swarm-id S --peer-id P [--initial-peer MADDR]``.
It starts a ``DHTDiscovery``, announces its record, and prints one JSON line per event on stdout:
``{"event": "ready", "maddrs": [...], "start_s": <DHT start seconds>, "join": "..."}`` once, then
``{"event": "live", "peers": [...]}`` whenever its live set changes. It runs until killed (SIGKILL =
crash) or SIGTERM (clean close).

``PeerProcess`` is the test side: it starts the script in a new session (optionally under a prefix
such as ``ip netns exec NS``) and waits, with deadlines, for the events it prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_POLL_S = 0.05


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swarm-id", required=True)
    parser.add_argument("--peer-id", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--initial-peer", action="append", default=[])
    parser.add_argument("--ttl", type=float, default=3.0)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from gossip.discovery import DHTDiscovery, DiscoveryConfig
    from protocol.records import PeerRecord

    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config = DiscoveryConfig(
        swarm_id=args.swarm_id,
        host=args.host,
        initial_peers=args.initial_peer,
        ttl_s=args.ttl,
        heartbeat_s=args.heartbeat,
    )
    started = time.perf_counter()
    with DHTDiscovery.start(config) as discovery:
        start_s = time.perf_counter() - started
        discovery.announce(
            PeerRecord(peer_id=args.peer_id, address=f"{args.host}:1", round=0, layout_fingerprint="test")
        )
        print(
            json.dumps(
                {
                    "event": "ready",
                    "maddrs": discovery.visible_maddrs,
                    "start_s": start_s,
                    "join": discovery.join_command(),
                }
            ),
            flush=True,
        )
        last: list[str] | None = None
        while not stop.wait(_POLL_S):
            peers = [record.peer_id for record in discovery.live_peers()]
            if peers != last:
                print(json.dumps({"event": "live", "peers": peers}), flush=True)
                last = peers
    return 0


class PeerProcess:
    """A running ``discovery_peer`` with a deadline-bounded view of its stdout events."""

    def __init__(self, proc: subprocess.Popen, log_path: Path):
        self.proc = proc
        self.log_path = log_path
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)

    @classmethod
    def spawn(cls, args: list[str], log_path: Path, prefix: list[str] | None = None) -> PeerProcess:
        command = [*(prefix or []), sys.executable, "-m", "tests.gossip.discovery_peer", *args]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, start_new_session=True
            )
        peer = cls(proc, log_path)
        peer._reader.start()
        return peer

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._events.put(json.loads(line))
            except ValueError:
                continue

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first event matching ``predicate``; raises AssertionError with the log on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._events.get(timeout=min(_POLL_S * 4, max(deadline - time.monotonic(), 0.001)))
            except queue.Empty:
                if self.proc.poll() is not None and self._events.empty() and not self._reader.is_alive():
                    break
                continue
            if predicate(event):
                return event
        raise AssertionError(
            f"peer process (exit code {self.proc.poll()}) did not report the expected "
            f"event within {timeout:g} s; its log:\n{self.log_path.read_text()[-4000:]}"
        )


if __name__ == "__main__":
    sys.exit(main())
