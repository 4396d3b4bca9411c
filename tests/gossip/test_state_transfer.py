"""State transfer to a late joiner: donor ranking and who is asked (the pulls run in tests/launcher)."""

from __future__ import annotations

from gossip.state_transfer import donor_order, fetch_swarm_state
from protocol.records import PeerRecord


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
    live = [
        PeerRecord("a", "127.0.0.1:1", 0, "fp"),
        PeerRecord("b", "127.0.0.1:2", 5, "other-layout"),
        PeerRecord("me", "127.0.0.1:3", 0, "fp"),
    ]
    # execute
    fetched = fetch_swarm_state(live, swarm_id="dssl", peer_id="me", fingerprint="fp", donors=2, timeout=1.0)
    # assert
    assert fetched is None
