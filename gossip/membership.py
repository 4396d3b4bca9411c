"""Who is in the swarm: the live peer set that topology.py builds each round's graph from.

Two sources implement the same small protocol:

* ``StaticMembership``: a fixed list (``--peers id@host:port,...``), no DHT at all (tests,
  air-gapped hosts). A bare ``host:port`` entry uses the address itself as the peer id, so every
  peer given the same list derives the same sorted id set.
* ``gossip.discovery.DHTDiscovery``: hivemind DHT records with a heartbeat and an expiry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from protocol.records import PeerRecord


class Membership(Protocol):
    def live_peers(self) -> list[PeerRecord]:
        """The live peers (self included once announced), sorted by peer id."""
        ...

    def announce(self, record: PeerRecord) -> None:
        """Publish (or refresh) our own record."""
        ...

    def close(self, timeout_s: float | None = None) -> None:
        """Leave the swarm; within ``timeout_s`` when given (a stopping peer's remaining budget)."""
        ...


def parse_peer_list(text: str) -> dict[str, str]:
    """Parse ``"id@host:port,host:port,..."`` into {peer id: address}; raises ValueError."""
    peers: dict[str, str] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        peer_id, _, address = entry.rpartition("@") if "@" in entry else (entry, "", entry)
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad peer entry {entry!r}: expected [id@]host:port with a port in 1..65535")
        if peer_id in peers:
            raise ValueError(f"peer id {peer_id!r} appears twice in the peer list")
        peers[peer_id] = address
    if not peers:
        raise ValueError("the peer list is empty: expected [id@]host:port,...")
    return peers


class StaticMembership:
    """A fixed peer set. ``announce`` only updates our own entry (round, fingerprint)."""

    def __init__(self, peers: Mapping[str, str]):
        self._records = {
            peer_id: PeerRecord(peer_id=peer_id, address=address, round=0, layout_fingerprint="")
            for peer_id, address in peers.items()
        }

    def live_peers(self) -> list[PeerRecord]:
        return [self._records[k] for k in sorted(self._records)]

    def announce(self, record: PeerRecord) -> None:
        self._records[record.peer_id] = record

    def close(self, timeout_s: float | None = None) -> None:
        pass
