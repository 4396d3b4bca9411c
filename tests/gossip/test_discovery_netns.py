"""Discovery across two "hosts": Linux network namespaces joined by a veth pair (tests/netns.py).

A bootstrap peer runs in namespace A at 10.77.0.1, a joiner in namespace B at 10.77.0.2 joins
through the multiaddr A prints; both must list both records. Skipped (with the reason) where network
namespaces cannot be made: not root, no iproute2, not Linux.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest

from tests.gossip.discovery_peer import PeerProcess
from tests.netns import netns_pair, netns_unavailable_reason

pytestmark = [pytest.mark.swarm, pytest.mark.slow]

START_TIMEOUT_S = 90.0  # a cold interpreter importing torch + hivemind on a contended 2-core machine
SEEN_TIMEOUT_S = 30.0


def _stop(peers: list[PeerProcess]) -> None:
    """Kill our peer process groups and reap them (before the namespaces are deleted)."""
    for peer in peers:
        if peer.proc.poll() is None:
            try:
                os.killpg(peer.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for peer in peers:
        try:
            peer.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


def test_netns_pair_is_linked_and_cleaned_up():
    # prepare / execute
    with netns_pair() as pair:
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
        ping = subprocess.run(
            [*pair.exec_prefix(pair.b), "ip", "-4", "addr", "show", "veth-b"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    # assert
    assert pair.a in names and pair.b in names
    assert f"inet {pair.addr_b}/24" in ping.stdout
    assert pair.a not in after and pair.b not in after


@pytest.mark.skipif(netns_unavailable_reason() is not None, reason=str(netns_unavailable_reason()))
def test_joiner_in_another_namespace_finds_the_bootstrap_peer(tmp_path):
    swarm_id = f"netns-{uuid.uuid4().hex[:8]}"
    peers: list[PeerProcess] = []
    with netns_pair() as pair:
        try:
            # prepare: the bootstrap peer on "host" A
            a = PeerProcess.spawn(
                ["--swarm-id", swarm_id, "--peer-id", "a", "--host", pair.addr_a],
                tmp_path / "a.log",
                prefix=pair.exec_prefix(pair.a),
            )
            peers.append(a)
            ready = a.wait_for(lambda e: e.get("event") == "ready", START_TIMEOUT_S)
            bootstrap = ready["join"].split("--bootstrap ")[1].split()[0]
            assert f"/ip4/{pair.addr_a}/" in bootstrap, ready
            # execute: the joiner on "host" B, through the multiaddr A printed
            t0 = time.perf_counter()
            joiner_args = ["--swarm-id", swarm_id, "--peer-id", "b", "--host", pair.addr_b]
            b = PeerProcess.spawn(
                [*joiner_args, "--initial-peer", bootstrap],
                tmp_path / "b.log",
                prefix=pair.exec_prefix(pair.b),
            )
            peers.append(b)
            joined = b.wait_for(lambda e: e.get("event") == "ready", START_TIMEOUT_S)
            # assert: both hosts list both records
            b.wait_for(lambda e: e.get("peers") == ["a", "b"], SEEN_TIMEOUT_S)
            a.wait_for(lambda e: e.get("peers") == ["a", "b"], SEEN_TIMEOUT_S)
            print(
                f"netns: A bootstrapped in {ready['start_s']:.2f} s, B joined across the veth link in "
                f"{joined['start_s']:.2f} s; both saw both {time.perf_counter() - t0:.2f} s after B's "
                f"process started (interpreter start included)"
            )
        finally:
            _stop(peers)
