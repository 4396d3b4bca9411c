"""A gossip node in its own process that tries to join a swarm it may not belong to.

Run as ``python -m tests.gossip.stranger_peer --swarm-id S --peer-id P --member ADDR [--tls-dir D]``
(the swarm secret, if any, comes from ``$DSSL_SWARM_SECRET``, as for a real peer). It serves a
snapshot of round 0, then prints JSON lines on stdout:

* ``{"event": "serving", "address": ...}`` once its server is up;
* ``{"event": "pull", "error": ...}`` and ``{"event": "hello", "error": ...}``: its own attempts
  to pull from / greet the member (``error`` is null on success).

It then keeps serving until its stdin closes (so the member can try to pull from it) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import torch


def _emit(**event) -> None:
    print(json.dumps(event), flush=True)


async def run(args: argparse.Namespace) -> None:
    from gossip.client import PullFailed
    from gossip.node import GossipNode, NodeConfig
    from gossip.security import TLSFiles, load_secret

    tls = TLSFiles.from_dir(args.tls_dir, args.peer_id) if args.tls_dir else None
    node = await GossipNode.create(
        NodeConfig(
            swarm_id=args.swarm_id,
            peer_id=args.peer_id,
            layout_fingerprint="l",
            tls=tls,
            swarm_secret=load_secret(),
            pull_deadline_s=5.0,
            hello_deadline_s=5.0,
        )
    )
    try:
        node.publish(torch.ones(1000), 0)
        _emit(event="serving", address=node.address)
        outcome = await node.pull("member", args.member, 0)
        _emit(event="pull", error=outcome.error)
        try:
            await node.hello(args.member)
            _emit(event="hello", error=None)
        except PullFailed as exc:
            _emit(event="hello", error=str(exc))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await node.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swarm-id", required=True)
    parser.add_argument("--peer-id", required=True)
    parser.add_argument("--member", required=True, help="host:port of the swarm member to try")
    parser.add_argument("--tls-dir", default=None)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
