"""One dssl gossip peer of the line-rate benchmark, run inside a network namespace.

Started by ``benchmarks/linerate_bench.py`` as
``ip netns exec NS python -m benchmarks._netns_peer --rank R --host ADDR --floats N [--tls-dir D]``.
It starts a ``GossipRunner`` (the trainer's facade) bound to ``ADDR:0`` over a two-peer static
membership ("full" topology: the other peer is its one neighbour, Metropolis-Hastings weights 1/2),
holding ``benchmarks.make_buffer(N, SEEDS[R])``, prints ``{"address": ...}`` and then answers one
JSON line on stdout per JSON command line on stdin:

* ``{"cmd": "peer", "address": A}``  the other peer's address (announced in the membership);
* ``{"cmd": "arm"}``   publish the original buffer as the next round and wait until it is encoded;
* ``{"cmd": "mix"}``   one ``mix()``: pull the other's snapshot and average; answers the pull and
  mix seconds measured inside and the payload bytes received;
* ``{"cmd": "check"}`` the last mix's result must equal the average of both buffers, bit for bit;
* ``{"cmd": "stop"}``  close the runner and exit (also on end of input).

Every answer has ``"ok"``; a failure answers ``{"ok": false, "error": ...}`` and the peer goes on.
Tuning runs may override integer ``gossip._grpc`` options with ``--grpc-option NAME=INT``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import numpy as np
import torch

from benchmarks import SEEDS, expected_average, make_buffer
from gossip import _grpc, topology
from gossip.membership import StaticMembership
from gossip.node import NodeConfig
from gossip.runner import GossipRunner
from gossip.security import TLSFiles
from protocol.frames import DEFAULT_CHUNK_BYTES
from protocol.records import PeerRecord

WAIT_S = 300.0  # one publish or mix: generous, a 100 Mbit/s link with a loaded CPU takes seconds


class Peer:
    """The runner and the buffers of one benchmark peer."""

    def __init__(self, args: argparse.Namespace):
        tls = None if not args.tls_dir else TLSFiles.from_dir(args.tls_dir, f"p{args.rank}")
        self._config = NodeConfig(
            swarm_id="linerate",
            peer_id=f"p{args.rank}",
            layout_fingerprint=f"flat-fp32-{args.floats}",
            listen=f"{args.host}:0",
            pull_deadline_s=WAIT_S,
            chunk_bytes=args.chunk_bytes,
            tls=tls,
        )
        self._rank = args.rank
        self._floats = args.floats
        self._original = torch.from_numpy(make_buffer(args.floats, SEEDS[args.rank]))
        self._membership = StaticMembership({})
        self._runner = GossipRunner.start(self._config, self._membership, topology.parse("full"))
        self._round = -1
        self._result: torch.Tensor | None = None
        self._expected: np.ndarray | None = None

    @property
    def address(self) -> str:
        return self._runner.address

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        """Carry out one command; the answer to print."""
        cmd = command.get("cmd")
        if cmd == "peer":
            record = PeerRecord(f"p{1 - self._rank}", command["address"], 0, self._config.layout_fingerprint)
            self._membership.announce(record)
            return {"ok": True}
        if cmd == "arm":
            return self._arm()
        if cmd == "mix":
            return self._mix()
        if cmd == "check":
            return self._check()
        raise ValueError(f"unknown command {cmd!r}")

    def _arm(self) -> dict[str, Any]:
        self._round += 1
        if self._result is not None:  # hand last round's buffer back, as a trainer would
            self._runner.recycle(self._result)
            self._result = None
        self._runner.publish(self._original, self._round)
        self._runner.wait_published(WAIT_S)
        return {"ok": True}

    def _mix(self) -> dict[str, Any]:
        result = self._runner.mix().result(WAIT_S)
        if result.answered != 1:
            return {"ok": False, "error": f"neighbour did not answer: {result.failure or result.neighbours}"}
        self._result = result.params
        bytes_in = sum(n.bytes_in for n in result.neighbours)
        return {"ok": True, "pull_s": result.pull_seconds, "mix_s": result.mix_seconds, "bytes_in": bytes_in}

    def _check(self) -> dict[str, Any]:
        if self._result is None:
            return {"ok": False, "error": "no mix to check"}
        if self._expected is None:  # computed once: two 11.7M-float random draws take a while
            self._expected = expected_average(self._floats)
        np.testing.assert_array_equal(self._result.numpy(), self._expected)
        return {"ok": True}

    def close(self) -> None:
        self._runner.close()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rank", type=int, choices=(0, 1), required=True)
    parser.add_argument("--host", required=True, help="address to bind (inside the namespace)")
    parser.add_argument("--floats", type=int, required=True)
    parser.add_argument("--tls-dir", default="", help="launcher.certs dir: mutual TLS")
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES)
    parser.add_argument(
        "--grpc-option", action="append", default=[], metavar="NAME=INT", help="override (tuning runs)"
    )
    return parser.parse_args(argv)


def override_grpc_options(overrides: list[str]) -> None:
    """Replace or add integer options in ``gossip._grpc``'s channel and server lists (both), so a
    tuning run can try an option without editing the module; logged to stderr."""
    for item in overrides:
        name, _, value = item.partition("=")
        for options in (_grpc.CHANNEL_OPTIONS, _grpc.SERVER_OPTIONS):
            options[:] = [(k, v) for k, v in options if k != name] + [(name, int(value))]
        logging.warning("gRPC option override: %s=%s", name, value)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    override_grpc_options(args.grpc_option)
    torch.set_num_threads(1)  # two peers share the machine's cores
    peer = Peer(args)
    try:
        _say({"ok": True, "address": peer.address})
        for line in sys.stdin:
            command = json.loads(line)
            if command.get("cmd") == "stop":
                break
            try:
                _say(peer.handle(command))
            except Exception as exc:  # report to the coordinator, keep serving
                _say({"ok": False, "error": repr(exc)})
    finally:
        peer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
