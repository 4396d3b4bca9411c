"""gossip.discovery against real hivemind DHTs on 127.0.0.1: join, heartbeat, expiry, leave, hostile
records, clear start-up errors, and the printed join command.

Every wait polls with a deadline. Timings are printed (``-s`` shows them), never asserted on, except
where the bound is the behaviour under test (a dead peer drops out within its TTL plus slack).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import hivemind
import msgpack
import pytest

from gossip import discovery as discovery_module
from gossip.dht_records import check_entry
from gossip.discovery import DHTDiscovery, DiscoveryConfig, DiscoveryError, JoinError, NotReadyError
from protocol.records import PeerRecord, RecordError, peer_record_to_bytes
from tests.gossip.discovery_peer import PeerProcess

TTL_S = 3.0  # short, so expiry tests stay quick
HEARTBEAT_S = 0.5  # several beats per TTL: a contended CPU may delay one or two
SLACK_S = 15.0  # on top of the TTL: a loaded 2-core machine, a DHT traversal that hits a dead peer
SEEN_TIMEOUT_S = 20.0  # deadline for a record to become visible at another peer
POLL_S = 0.05
# a syntactically valid peer id of a peer that does not exist
ABSENT_PEER_ID = "12D3KooWPgLMziVgYTeyphdLeomRtdBe42ssVsycGyYz9J22uZw3"


def _record(peer_id: str, round_: int = 0) -> PeerRecord:
    return PeerRecord(
        peer_id=peer_id,
        address=f"127.0.0.1:{5000 + ord(peer_id[0])}",
        round=round_,
        layout_fingerprint="fp-test",
        capabilities=("fp16",),
    )


def _ids(discovery: DHTDiscovery) -> list[str]:
    return [record.peer_id for record in discovery.live_peers()]


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until true; return the seconds it took, fail naming ``what`` on timeout."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if condition():
            return time.perf_counter() - started
        time.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@pytest.fixture
def swarm_id() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def start(swarm_id: str) -> Iterator[Callable[..., DHTDiscovery]]:
    """Start DHTDiscovery instances of one swarm; all are closed at teardown."""
    started: list[DHTDiscovery] = []

    def _start(*initial_peers: str, **overrides) -> DHTDiscovery:
        config = DiscoveryConfig(
            swarm_id=overrides.pop("swarm_id", swarm_id),
            initial_peers=list(initial_peers),
            ttl_s=overrides.pop("ttl_s", TTL_S),
            heartbeat_s=overrides.pop("heartbeat_s", HEARTBEAT_S),
            **overrides,
        )
        t0 = time.perf_counter()
        discovery = DHTDiscovery.start(config)
        print(f"DHT start ({'join' if initial_peers else 'bootstrap'}): {time.perf_counter() - t0:.2f} s")
        started.append(discovery)
        return discovery

    try:
        yield _start
    finally:
        for discovery in started:
            discovery.close()


# ---- configuration (no DHT) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"initial_peers": ["garbage"]}, "not a valid multiaddr"),
        ({"initial_peers": ["/ip4/127.0.0.1/tcp/4000"]}, "lacks its /p2p/"),
        ({"initial_peers": "/ip4/127.0.0.1/tcp/1/p2p/x"}, "list of multiaddrs"),
        ({"host": "localhost"}, "IP address"),
        ({"port": 70000}, "port"),
        ({"ttl_s": 3.0, "heartbeat_s": 3.0}, "heartbeat_s"),
        ({"swarm_id": ""}, "swarm_id"),
        ({"start_attempts": 0}, "start_attempts"),
        ({"start_retry_s": -1.0}, "start_retry_s"),
    ],
)
def test_config_refuses_bad_values_with_a_clear_message(overrides, message):
    # prepare
    kwargs = {"swarm_id": "s", **overrides}
    # execute / assert
    with pytest.raises(ValueError, match=message):
        DiscoveryConfig(**kwargs)


def test_config_defaults_are_the_safe_flags():
    # execute
    config = DiscoveryConfig(swarm_id="s")
    # assert
    assert (config.nat_port_map, config.auto_nat, config.use_relay, config.use_auto_relay) == (False,) * 4
    assert config.host_maddr == "/ip4/127.0.0.1/tcp/0"
    assert config.key == "s/peers"
    assert config.heartbeat == pytest.approx(config.ttl_s / 3)
    assert DiscoveryConfig(swarm_id="s", host="::1", port=7).host_maddr == "/ip6/::1/tcp/7"


def test_join_command_prefers_a_non_loopback_maddr():
    # prepare: __init__ does no work, so no DHT is needed to test the choice
    loop = f"/ip4/127.0.0.1/tcp/4000/p2p/{ABSENT_PEER_ID}"
    public = f"/ip4/10.1.2.3/tcp/4000/p2p/{ABSENT_PEER_ID}"
    both = DHTDiscovery(DiscoveryConfig(swarm_id="my swarm".replace(" ", "-")), None, [loop, public])
    only_loop = DHTDiscovery(DiscoveryConfig(swarm_id="s"), None, [loop])
    # execute
    command = both.join_command("--data /d --peer-id 'x y'")
    # assert
    assert command == f"dssl join --bootstrap {public} --swarm-id my-swarm --data /d --peer-id 'x y'"
    assert only_loop.join_command() == f"dssl join --bootstrap {loop} --swarm-id s"


# ---- real DHTs ---------------------------------------------------------------------------------


def test_bootstrap_and_two_joiners_see_each_others_records(start):
    # prepare
    a = start()
    b = start(a.bootstrap_maddr)
    c = start(a.bootstrap_maddr)
    peers = {"a": a, "b": b, "c": c}
    # execute
    a.announce(_record("a"))
    seen = _wait(lambda: _ids(b) == ["a"], SEEN_TIMEOUT_S, "b to see a's record")
    print(f"record visible at another peer after {seen * 1000:.1f} ms")
    b.announce(_record("b"))
    c.announce(_record("c"))
    for name, peer in peers.items():
        _wait(lambda peer=peer: _ids(peer) == ["a", "b", "c"], SEEN_TIMEOUT_S, f"{name} to see a, b, c")
    c.announce(_record("c", round_=7))
    _wait(
        lambda: any(r.peer_id == "c" and r.round == 7 for r in a.live_peers()),
        SEEN_TIMEOUT_S,
        "a to see c's new round",
    )
    # assert: whole records survive the trip, sorted by peer id, with future expirations
    assert a.live_peers() == [_record("a"), _record("b"), _record("c", round_=7)]
    status = b.status()
    assert [record.peer_id for record, _ in status] == ["a", "b", "c"]
    assert all(time.time() < expiration <= time.time() + TTL_S + 1 for _, expiration in status)


def test_heartbeat_keeps_a_record_alive_past_its_ttl(start):
    # prepare
    a = start()
    b = start(a.bootstrap_maddr)
    b.announce(_record("b"))
    _wait(lambda: _ids(a) == ["b"], SEEN_TIMEOUT_S, "a to see b")
    # execute: watch for two TTLs; without the heartbeat the record would expire after one
    deadline = time.perf_counter() + 2 * TTL_S
    views = []
    while time.perf_counter() < deadline:
        views.append(_ids(a))
        time.sleep(POLL_S * 4)
    # assert
    assert views and all(view == ["b"] for view in views), views


def test_crashed_peer_drops_out_within_ttl(start, swarm_id, reaper, tmp_path):
    # prepare: a and b in this process, c in a child process that we SIGKILL (no leave, no close)
    a = start()
    b = start(a.bootstrap_maddr)
    a.announce(_record("a"))
    b.announce(_record("b"))
    c = PeerProcess.spawn(
        [
            "--swarm-id",
            swarm_id,
            "--peer-id",
            "c",
            "--initial-peer",
            a.bootstrap_maddr,
            "--ttl",
            str(TTL_S),
            "--heartbeat",
            str(HEARTBEAT_S),
        ],
        tmp_path / "c.log",
    )
    reaper.append(c.proc)
    c.wait_for(lambda e: e.get("peers") == ["a", "b", "c"], timeout=60)
    _wait(
        lambda: _ids(a) == ["a", "b", "c"] and _ids(b) == ["a", "b", "c"], SEEN_TIMEOUT_S, "a and b to see c"
    )
    # execute
    os.killpg(c.proc.pid, signal.SIGKILL)
    c.proc.wait(timeout=10)
    gone = _wait(
        lambda: _ids(a) == ["a", "b"] and _ids(b) == ["a", "b"],
        TTL_S + SLACK_S,
        "the killed peer to drop out of a's and b's live sets",
    )
    # assert: the bound is the behaviour (TTL plus slack); the figure is printed
    print(f"dead peer dropped out after {gone:.2f} s (ttl {TTL_S:g} s, heartbeat {HEARTBEAT_S:g} s)")
    assert gone <= TTL_S + SLACK_S


def test_late_joiner_appears_and_a_client_mode_reader_sees_everyone(start):
    # prepare
    a = start()
    b = start(a.bootstrap_maddr)
    a.announce(_record("a"))
    b.announce(_record("b"))
    _wait(lambda: _ids(a) == ["a", "b"], SEEN_TIMEOUT_S, "a to see b")
    # execute: a late joiner that joins through b, and a status reader that serves no DHT requests
    late = start(b.bootstrap_maddr)
    late.announce(_record("d"))
    reader = start(a.bootstrap_maddr, client_mode=True)
    # assert
    for name, peer in {"a": a, "b": b, "late": late, "reader": reader}.items():
        _wait(lambda peer=peer: _ids(peer) == ["a", "b", "d"], SEEN_TIMEOUT_S, f"{name} to see a, b, d")
    assert [record.peer_id for record, _ in reader.status()] == ["a", "b", "d"]


def test_leave_removes_a_peer_long_before_its_ttl(start):
    # prepare: a long TTL, so only the tombstone can explain a prompt drop
    long_ttl = 120.0
    a = start(ttl_s=long_ttl, heartbeat_s=long_ttl / 3)
    b = start(a.bootstrap_maddr, ttl_s=long_ttl, heartbeat_s=long_ttl / 3)
    a.announce(_record("a"))
    b.announce(_record("b"))
    _wait(lambda: _ids(a) == ["a", "b"], SEEN_TIMEOUT_S, "a to see b")
    # execute
    b.leave()
    gone = _wait(lambda: _ids(a) == ["a"], SEEN_TIMEOUT_S, "b's record to disappear from a after leave()")
    # assert
    print(f"left peer dropped out after {gone * 1000:.1f} ms")
    assert gone < long_ttl
    assert _ids(b) == ["a"]  # the leaver no longer lists itself either
    b.announce(_record("b", round_=3))  # and it may come back
    _wait(lambda: _ids(a) == ["a", "b"], SEEN_TIMEOUT_S, "a to see b again after re-announcing")


def _bogus_entries() -> dict:
    """Entries a hostile or buggy peer might write under the swarm key, by subkey."""
    field_types_wrong = {
        "peer_id": "w",
        "address": 5,
        "round": "r",
        "layout_fingerprint": "f",
        "capabilities": [],
    }
    negative_round = {
        "peer_id": "negative-round",
        "address": "h:1",
        "round": -1,
        "layout_fingerprint": "f",
        "capabilities": [],
    }
    return {
        "garbage": b"\xc1\xff\x00not msgpack",
        "w": msgpack.packb(field_types_wrong),
        "not-bytes": 12345,
        "mismatch": peer_record_to_bytes(_record("x")),  # a valid record for "x" under another subkey
        "big": b"\x00" * 5000,
        "negative-round": msgpack.packb(negative_round),
        42: peer_record_to_bytes(_record("x")),  # not a string subkey (hivemind itself trips on these)
    }


def test_check_entry_accepts_records_and_tombstones_and_refuses_the_rest():
    # prepare
    record = _record("a")
    # execute / assert
    assert check_entry("a", peer_record_to_bytes(record)) == record
    assert check_entry("a", b"") is None
    for subkey, value in _bogus_entries().items():
        with pytest.raises(RecordError):
            check_entry(subkey, value)


def test_hostile_records_are_ignored_and_do_not_break_live_peers(start, caplog):
    # prepare: two honest peers and a hostile node running plain hivemind without our validator
    import hivemind  # only to play the hostile peer; of ours only gossip/discovery.py and dht_records.py do

    a = start()
    b = start(a.bootstrap_maddr)
    a.announce(_record("a"))
    b.announce(_record("b"))
    _wait(lambda: _ids(b) == ["a", "b"], SEEN_TIMEOUT_S, "b to see a")
    hostile = hivemind.DHT(
        initial_peers=[a.bootstrap_maddr],
        start=True,
        await_ready=False,
        host_maddrs=["/ip4/127.0.0.1/tcp/0"],
        nat_port_map=False,
        auto_nat=False,
        use_relay=False,
        use_auto_relay=False,
    )
    try:
        hostile.wait_until_ready(timeout=SEEN_TIMEOUT_S)
        # execute: the hostile node writes every bogus entry straight into the swarm key, and a
        # plain value that would replace the whole map
        expiration = time.time() + 60
        for i, (subkey, value) in enumerate(_bogus_entries().items()):
            # distinct expirations: hivemind's own heap would otherwise compare int and str subkeys
            hostile.store(
                a.config.key, value, expiration + i / 100, subkey=subkey, return_future=True
            ).result(timeout=SEEN_TIMEOUT_S)
        wipe = hostile.store(a.config.key, b"wipe", expiration + 1, return_future=True)  # no subkey
        wipe.result(timeout=SEEN_TIMEOUT_S)
        with caplog.at_level(logging.WARNING):
            views = [(_ids(a), _ids(b)) for _ in range(5)]
    finally:
        hostile.shutdown()
    # assert: honest peers refused every bogus entry and still list exactly themselves
    assert all(view == (["a", "b"], ["a", "b"]) for view in views), views
    assert not any("reusing the last answer" in message for message in caplog.messages), caplog.messages
    raw = a._dht.get(a.config.key, latest=True, return_future=True).result(timeout=SEEN_TIMEOUT_S)
    assert isinstance(raw.value, dict) and sorted(raw.value) == ["a", "b"]  # what an honest node holds


def test_unreachable_initial_peer_fails_clearly_within_the_timeout(start, caplog):
    # prepare: a port that was just free, so nothing listens there
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    maddr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{ABSENT_PEER_ID}"
    startup_timeout = 30.0
    # execute: two attempts, 0.2 s apart
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="gossip.discovery"):
        with pytest.raises(JoinError) as error:
            start(maddr, startup_timeout_s=startup_timeout, start_attempts=2, start_retry_s=0.2)
    elapsed = time.perf_counter() - t0
    # assert: each attempt is bounded by the start-up deadline; the first failure is logged, the
    # second is the error, which says what to check
    print(f"unreachable initial peer reported after {elapsed:.2f} s")
    assert maddr in str(error.value) and "(after 2 attempts)" in str(error.value)
    assert "no initial peer answered" in str(error.value) and "port" in str(error.value)
    assert sum("DHT start attempt 1 of 2 failed" in m for m in caplog.messages) == 1
    assert elapsed < 2 * (startup_timeout + DiscoveryConfig(swarm_id="s").request_timeout_s) + 0.2


def test_host_that_is_not_ours_fails_clearly(start):
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737); .77 is not an address of this machine
    with pytest.raises(DiscoveryError, match="could not listen on /ip4/192.0.2.77/tcp/0"):
        start(host="192.0.2.77")


def _hang(_dht) -> None:
    """Stands in for ``hivemind.DHT.run`` in a forked DHT process that hangs (say, on a lock it
    inherited): it never becomes ready and never reads its shutdown request."""
    time.sleep(3600)


HUNG_START = {"startup_timeout_s": 2.0, "request_timeout_s": 1.0, "shutdown_timeout_s": 1.0}


def test_a_dht_process_that_hangs_at_start_is_replaced_by_a_fresh_one(start, monkeypatch, caplog):
    # prepare: the first DHT process forks with a run() that hangs; later ones are untouched
    processes: list = []
    new_dht = discovery_module._new_dht

    def first_one_hangs(config, peers):
        with monkeypatch.context() as patch:
            if not processes:
                patch.setattr(hivemind.DHT, "run", _hang)
            processes.append(new_dht(config, peers))
        return processes[-1]

    monkeypatch.setattr(discovery_module, "_new_dht", first_one_hangs)
    # execute
    with caplog.at_level(logging.WARNING, logger="gossip.discovery"):
        a = start(start_attempts=2, start_retry_s=0.2, **HUNG_START)
    a.announce(_record("a"))
    # assert: the hung process was ended, the second one serves, and the retry was logged
    assert len(processes) == 2 and not processes[0].is_alive() and a._dht is processes[1]
    retries = [m for m in caplog.messages if "DHT start attempt 1 of 2 failed" in m]
    assert len(retries) == 1 and "did not become ready" in retries[0]
    _wait(lambda: _ids(a) == ["a"], SEEN_TIMEOUT_S, "a to see its own record")


def test_a_dht_that_never_becomes_ready_fails_clearly_after_its_attempts(start, monkeypatch):
    # prepare: every DHT process hangs
    processes: list = []
    new_dht = discovery_module._new_dht
    monkeypatch.setattr(hivemind.DHT, "run", _hang)

    def recorded(config, peers):
        processes.append(new_dht(config, peers))
        return processes[-1]

    monkeypatch.setattr(discovery_module, "_new_dht", recorded)
    # execute
    with pytest.raises(NotReadyError) as error:
        start(start_attempts=2, start_retry_s=0.2, **HUNG_START)
    # assert: two attempts, both processes ended, and the message says what to raise
    assert "(after 2 attempts)" in str(error.value) and "startup_timeout_s" in str(error.value)
    assert len(processes) == 2 and not any(process.is_alive() for process in processes)


def test_join_command_contains_a_maddr_that_works(start):
    # prepare
    a = start()
    a.announce(_record("a"))
    # execute: do what the printed command says
    words = shlex.split(a.join_command("--data fashion-mnist"))
    bootstrap = words[words.index("--bootstrap") + 1]
    swarm = words[words.index("--swarm-id") + 1]
    joiner = start(bootstrap, swarm_id=swarm)
    joiner.announce(_record("j"))
    # assert
    assert words[:2] == ["dssl", "join"] and words[-2:] == ["--data", "fashion-mnist"]
    assert bootstrap in a.visible_maddrs
    _wait(lambda: _ids(a) == ["a", "j"] and _ids(joiner) == ["a", "j"], SEEN_TIMEOUT_S, "a and j to meet")


def test_close_is_idempotent_and_ends_the_dht(start):
    # prepare
    a = start()
    b = start(a.bootstrap_maddr)
    b.announce(_record("b"))
    _wait(lambda: _ids(a) == ["b"], SEEN_TIMEOUT_S, "a to see b")
    # execute
    t0 = time.perf_counter()
    b.close()
    b.close()
    closed = time.perf_counter() - t0
    # assert
    print(f"close took {closed:.2f} s")
    assert not b._dht.is_alive()
    with pytest.raises(DiscoveryError, match="after close"):
        b.live_peers()
    with pytest.raises(DiscoveryError, match="after close"):
        b.announce(_record("b"))
    _wait(lambda: _ids(a) == [], SEEN_TIMEOUT_S, "b to be gone from a after close")


def test_close_with_a_budget_ends_in_time_even_when_the_dht_ignores_its_shutdown(start, monkeypatch):
    # prepare: an announced peer whose DHT process will not answer the shutdown request
    discovery = start()
    discovery.announce(_record("p0"))
    dht = discovery._dht
    monkeypatch.setattr(dht, "shutdown", lambda: time.sleep(60))
    # execute
    t0 = time.monotonic()
    discovery.close(timeout_s=4.0)
    elapsed = time.monotonic() - t0
    # assert: leave (<= 60 %) + shutdown (<= 30 % + 1 s) + terminate/kill (<= 2 s), and the process is gone
    assert elapsed < 4.0 + 3.5, elapsed
    assert not dht.is_alive()
