"""Unit pieces of the peer process (the whole process is exercised in tests/launcher)."""

from __future__ import annotations

import json

from peer.peer import _advertised_host, _bootstrap_from_file, donor_order, fetch_swarm_state
from peer.config import Config
from protocol.serde import PeerRecord


def test_donor_order_is_deterministic_and_spreads_joiners_over_donors():
    # prepare
    donors = [f"p{i}" for i in range(8)]
    # execute
    firsts = {donor_order(f"joiner-{j}", donors)[0] for j in range(20)}
    # assert
    assert donor_order("x", donors) == donor_order("x", list(reversed(donors)))
    assert sorted(donor_order("x", donors)) == donors
    assert len(firsts) >= 3  # not always the same donor (never "always peer 0")


def test_no_state_transfer_when_nobody_has_trained_yet():
    # prepare: live peers at round 0 (just started) and one with another layout
    live = [PeerRecord("a", "127.0.0.1:1", 0, "fp"), PeerRecord("b", "127.0.0.1:2", 5, "other-layout"),
            PeerRecord("me", "127.0.0.1:3", 0, "fp")]
    # execute / assert
    assert fetch_swarm_state(live, Config(), "me", "fp", donors=2, timeout=1.0) is None


def test_advertised_host_replaces_a_wildcard_with_a_routable_address():
    assert _advertised_host("10.1.2.3", []) == "10.1.2.3"
    assert _advertised_host("0.0.0.0", ["/ip4/127.0.0.1/tcp/1/p2p/X", "/ip4/10.9.9.9/tcp/1/p2p/X"]) == "10.9.9.9"


def test_bootstrap_file_yields_the_bootstrap_multiaddrs(tmp_path):
    # prepare
    ready = tmp_path / "ready.json"
    ready.write_text(json.dumps({"maddrs": ["/ip4/10.0.0.1/tcp/7001/p2p/Qm"]}))
    # execute / assert
    assert _bootstrap_from_file(ready, timeout_s=1.0) == ["/ip4/10.0.0.1/tcp/7001/p2p/Qm"]
