"""``dssl status --bootstrap MADDR --swarm-id S [--json]``: the live swarm as its DHT sees it.

A short-lived DHT client (client mode: it stores nothing and is never a neighbour) reads the swarm's
peer records and prints one row per live peer: id, round, gossip address, layout fingerprint and how
long ago its record was refreshed. Nothing else of the swarm is touched.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from gossip.address import is_loopback, maddr_host


def _status_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dssl status", description="Show the live peers of a swarm (from the DHT)."
    )
    p.add_argument(
        "--bootstrap", action="append", required=True, metavar="MADDR", help="any peer's multiaddr"
    )
    p.add_argument("--swarm-id", required=True, help="the swarm's id")
    p.add_argument(
        "--host", default=None, help="local address for our DHT client (default: from the multiaddr)"
    )
    p.add_argument("--ttl-s", type=float, default=10.0, help="the swarm's record ttl (for the heartbeat age)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _status_rows(args: argparse.Namespace) -> list[dict]:
    """The live peers, read through a short-lived DHT client; raises DiscoveryError / ValueError."""
    from gossip.discovery import DHTDiscovery, DiscoveryConfig, quiet_hivemind

    quiet_hivemind(logging.ERROR)
    host = args.host or maddr_host(args.bootstrap[0]) or "127.0.0.1"
    if not is_loopback(host) and args.host is None:
        host = "0.0.0.0"
    config = DiscoveryConfig(
        swarm_id=args.swarm_id, host=host, initial_peers=args.bootstrap, client_mode=True, ttl_s=args.ttl_s
    )
    discovery = DHTDiscovery.start(config)
    try:
        rows = discovery.status()
    finally:
        discovery.close()
    now = time.time()
    return [
        {
            "peer_id": r.peer_id,
            "round": r.round,
            "address": r.address,
            "fingerprint": r.layout_fingerprint[:12],
            "capabilities": list(r.capabilities),
            "last_heartbeat_s_ago": round(max(0.0, now - (expiration - args.ttl_s)), 1),
        }
        for r, expiration in rows
    ]


def status_main(argv: list[str]) -> int:
    """``dssl status --bootstrap MADDR --swarm-id S``: the live swarm as the DHT sees it."""
    from gossip.discovery import DiscoveryError

    args = _status_parser().parse_args(argv)
    try:
        peers = _status_rows(args)
    except (DiscoveryError, ValueError) as exc:
        print(f"dssl status: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"swarm_id": args.swarm_id, "peers": peers}, indent=2))
        return 0
    print(f"swarm {args.swarm_id}: {len(peers)} live peer(s)")
    print(f"{'peer':16s} {'round':>6s} {'address':22s} {'layout':12s} {'heartbeat':>10s}")
    for row in peers:
        print(
            f"{row['peer_id']:16s} {row['round']:6d} {row['address']:22s} {row['fingerprint']:12s} "
            f"{row['last_heartbeat_s_ago']:8.1f}s ago"
        )
    return 0
