"""A stand-in peer process for fault-runner tests: no torch, no gossip, one 'round' per tick.

Started by ``SwarmProcesses`` exactly like ``dssl peer`` (``--config PATH`` + extra flags it ignores):
writes ready.json (its pid, a fake multiaddr) into its run dir, then appends one ``round`` record
to metrics.jsonl every ``TICK_S`` (continuing after the last logged round, as a resumed peer
would), and exits 0 on SIGTERM — after ``FAKE_PEER_EXIT_DELAY_S`` seconds if that is set in its
environment (a process slow to exit, like a peer freeing a large heap on a loaded host). With
``FAKE_PEER_READY_DELAY_S`` it first waits that long before it is ready (a peer loading its model
and data); a SIGTERM meanwhile ends it at once, never ready.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import yaml

TICK_S = 0.05
# peer.rundir's names and peer.atomic_file's write, spelled out here: importing the peer package
# loads torch (seconds on a loaded machine), and a stand-in that starts that slowly shifts every
# round-triggered fault of the tests
READY_FILE = "ready.json"
METRICS_FILE = "metrics.jsonl"


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    config = yaml.safe_load(Path(argv[argv.index("--config") + 1]).read_text())
    run_dir = Path(config["train"]["run_dir"])
    peer_id = config["gossip"]["peer_id"]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    metrics = run_dir / METRICS_FILE
    last = -1
    if metrics.is_file():
        last = max((json.loads(line)["round"] for line in metrics.read_text().splitlines()), default=-1)
    ready_at = time.monotonic() + float(os.environ.get("FAKE_PEER_READY_DELAY_S", "0"))
    while not stop and time.monotonic() < ready_at:
        time.sleep(TICK_S)
    if stop:
        return 0
    ready = {"peer_id": peer_id, "pid": os.getpid(), "maddrs": [f"/ip4/127.0.0.1/tcp/1/p2p/{peer_id}"]}
    _write_json(run_dir / READY_FILE, ready)
    round_ = last + 1
    while not stop:
        with metrics.open("a") as fh:
            fh.write(
                json.dumps({"kind": "round", "round": round_, "time": time.time(), "peer": peer_id}) + "\n"
            )
        round_ += 1
        time.sleep(TICK_S)
    time.sleep(float(os.environ.get("FAKE_PEER_EXIT_DELAY_S", "0")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
