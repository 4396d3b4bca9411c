"""Who is alive and where: peer records in a hivemind DHT (with gossip.dht_records, our only hivemind users).

Discovery is not transport (docs/design.md §1): the DHT only answers "which peers are alive and at which
gRPC address". Every peer stores its ``PeerRecord`` (msgpack, see ``protocol.records``) under the key
``<swarm id>/peers`` with subkey = its peer id and a short expiration, and a background heartbeat
re-stores it before it expires. A peer that stops heart-beating therefore drops out of everyone's
live set within one TTL; a peer that leaves politely overwrites its entry with a tombstone and drops
out at once.

The DHT runs with the safe flags of docs/design.md §4: it listens on one explicit address (loopback by
default) and NAT port mapping, AutoNAT and relays stay off unless the user asks for them.

hivemind runs the DHT in a forked process: start discovery before the process starts other threads
(gRPC server, torch workers), as forking a multi-threaded process can inherit a held lock.

Every call into the DHT has a deadline; nothing here blocks forever. Expiration times are absolute
``time.time()`` values (hivemind's ``get_dht_time``), so hosts of one swarm need roughly synchronised
clocks (hivemind tolerates a few seconds).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import logging
import os
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import hivemind
from hivemind.utils.multiaddr import Multiaddr
from hivemind.utils.timed_storage import get_dht_time

from gossip.dht_errors import DiscoveryError, JoinError, NotReadyError, start_error
from gossip.dht_records import TOMBSTONE, PeerRecordValidator, WarnOnce, check_entry
from protocol.records import PeerRecord, RecordError, peer_record_to_bytes

logger = logging.getLogger(__name__)

_MIN_EXPIRATION_STEP = 1e-3  # hivemind keeps the later-expiring value, so each store must expire later
_TIMEOUTS = (TimeoutError, concurrent.futures.TimeoutError)  # distinct types before Python 3.11


def check_initial_peer(maddr: str) -> None:
    """Refuse a bootstrap multiaddr that cannot work, before any daemon starts."""
    try:
        parsed = Multiaddr(maddr)
    except Exception as exc:  # the multiaddr library raises several types on malformed text
        raise ValueError(
            f"initial peer {maddr!r} is not a valid multiaddr ({exc}); expected the form "
            f"/ip4/<address>/tcp/<port>/p2p/<peer id>, as printed by the bootstrap peer"
        ) from None
    protocols = {proto.name for proto in parsed.protocols()}
    if "p2p" not in protocols:
        raise ValueError(
            f"initial peer {maddr!r} lacks its /p2p/<peer id> part; copy the whole multiaddr printed "
            f"by the bootstrap peer (e.g. /ip4/10.0.0.1/tcp/31337/p2p/12D3KooW...)"
        )


@dataclass(frozen=True)
class DiscoveryConfig:
    """Everything that decides how this peer joins the swarm's DHT."""

    swarm_id: str  # names the DHT key "<swarm_id>/peers"; peers of one swarm must agree on it
    host: str = "127.0.0.1"  # address the DHT listens on: loopback, or this host's own address
    port: int = 0  # DHT listen port; 0 = any free port (fix it when a firewall needs a known port)
    initial_peers: Sequence[str] = ()  # multiaddrs of running peers; empty = bootstrap a new DHT
    ttl_s: float = 10.0  # a record expires this long after its last heartbeat
    heartbeat_s: float | None = None  # re-announce period; None = ttl_s / 3 (two beats may be lost)
    startup_timeout_s: float = 60.0  # generous: p2pd start-up on a loaded 2-core machine
    request_timeout_s: float = 5.0  # deadline of each DHT get/store from this process
    shutdown_timeout_s: float = 5.0  # then the DHT process is terminated
    start_attempts: int = 3  # a join no initial peer answered, or a DHT process that did not become
    #                          ready, is started again: on a loaded host p2pd's dial can time out
    #                          although the peers are fine (16 peers on 2 cores), and a forked DHT
    #                          process can hang where a fresh one comes up
    start_retry_s: float = 3.0  # pause before the second attempt, doubled before each further one
    client_mode: bool = False  # True: store/read only, serve nobody (e.g. `dssl status`)
    nat_port_map: bool = False  # UPnP/NAT-PMP port mapping; only when the user asks
    auto_nat: bool = False  # libp2p AutoNAT reachability probing; only when the user asks
    use_relay: bool = False  # circuit relays; only when the user asks
    use_auto_relay: bool = False  # look for relays when behind NAT; only when the user asks

    def __post_init__(self) -> None:
        if isinstance(self.initial_peers, str):
            raise ValueError("initial_peers must be a list of multiaddrs, not one string")
        peers = tuple(str(p).strip() for p in self.initial_peers if str(p).strip())
        object.__setattr__(self, "initial_peers", peers)  # frozen: normalise once, here
        if not self.swarm_id or not self.swarm_id.isprintable() or any(c.isspace() for c in self.swarm_id):
            raise ValueError(
                f"swarm_id must be a non-empty printable string without spaces, got {self.swarm_id!r}"
            )
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ValueError(
                f"host must be an IP address of this machine (e.g. 127.0.0.1, 0.0.0.0 or "
                f"10.0.0.5), got {self.host!r}"
            ) from None
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {self.ttl_s}")
        if not 0 < self.heartbeat < self.ttl_s:
            raise ValueError(f"heartbeat_s must be in (0, ttl_s={self.ttl_s}), got {self.heartbeat}")
        for timeout in ("startup_timeout_s", "request_timeout_s", "shutdown_timeout_s"):
            if getattr(self, timeout) <= 0:
                raise ValueError(f"{timeout} must be > 0, got {getattr(self, timeout)}")
        if self.start_attempts < 1 or self.start_retry_s < 0:
            raise ValueError(
                f"start_attempts must be >= 1 and start_retry_s >= 0, "
                f"got {self.start_attempts}, {self.start_retry_s}"
            )
        for maddr in peers:
            check_initial_peer(maddr)

    @property
    def heartbeat(self) -> float:
        """The effective heartbeat period in seconds."""
        return self.heartbeat_s if self.heartbeat_s is not None else self.ttl_s / 3

    @property
    def key(self) -> str:
        """The DHT key all peers of this swarm store their records under."""
        return f"{self.swarm_id}/peers"

    @property
    def host_maddr(self) -> str:
        """The multiaddr the DHT listens on."""
        family = "ip6" if ipaddress.ip_address(self.host).version == 6 else "ip4"
        return f"/{family}/{self.host}/tcp/{self.port}"


def quiet_hivemind(level: int = logging.WARNING) -> None:
    """hivemind logs at INFO by default (and so does its p2pd); keep it to warnings unless the user
    set HIVEMIND_LOGLEVEL themselves."""
    if "HIVEMIND_LOGLEVEL" not in os.environ:
        logging.getLogger("hivemind").setLevel(level)


async def _visible_maddrs(_dht: Any, node: Any) -> list[str]:
    """Runs inside the DHT process: the multiaddrs other peers can dial."""
    return [str(maddr) for maddr in await node.get_visible_maddrs()]


def _is_loopback(maddr: str) -> bool:
    parts = maddr.split("/")
    for family in ("ip4", "ip6"):
        if family in parts and parts.index(family) + 1 < len(parts):
            try:
                return ipaddress.ip_address(parts[parts.index(family) + 1]).is_loopback
            except ValueError:
                return False
    return False


class DHTDiscovery:
    """Announce our ``PeerRecord`` and list the live ones; implements ``gossip.membership.Membership``.

    Build it with ``DHTDiscovery.start(config)``; ``__init__`` only stores what ``start`` made.
    """

    def __init__(self, config: DiscoveryConfig, dht: hivemind.DHT, visible_maddrs: list[str]):
        self.config = config
        self.visible_maddrs = visible_maddrs
        self._dht = dht
        self._send_lock = threading.Lock()  # hivemind's pipe to its DHT process is not thread-safe
        self._state_lock = threading.Lock()
        self._record: PeerRecord | None = None  # latest record to heart-beat; None = not announced
        self._expiration = 0.0  # expiration of the last record (or tombstone) we stored
        self._last_seen: dict[str, tuple[PeerRecord, float]] = {}  # last successful read
        self._warn = WarnOnce(logger)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._closed = False

    # ---- life cycle ------------------------------------------------------------------------

    @classmethod
    def start(cls, config: DiscoveryConfig) -> DHTDiscovery:
        """Start (or join, when ``config.initial_peers`` is set) the DHT; raises DiscoveryError."""
        quiet_hivemind()
        started = time.perf_counter()
        peers = list(config.initial_peers) or None
        dht, maddrs = _start_dht(config, peers)
        action = "joined" if peers else "bootstrapped"
        logger.info(
            "discovery %s swarm %r in %.2f s; visible at %s",
            action,
            config.swarm_id,
            time.perf_counter() - started,
            ", ".join(maddrs),
        )
        return cls(config, dht, maddrs)

    def leave(self, timeout_s: float | None = None) -> None:
        """Stop heart-beating and overwrite our record with a tombstone, so others drop us at once.
        ``timeout_s`` bounds the whole leave (a stopping peer's remaining budget)."""
        self._stop.set()
        full = self.config.request_timeout_s + self.config.heartbeat
        thread = self._heartbeat
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=full if timeout_s is None else min(full, 0.4 * timeout_s))
        with self._state_lock:
            record, self._record = self._record, None
        if record is None:
            return
        store_timeout = None if timeout_s is None else min(self.config.request_timeout_s, 0.6 * timeout_s)
        if self._store(record.peer_id, TOMBSTONE, store_timeout):
            logger.info("peer %s left swarm %r", record.peer_id, self.config.swarm_id)
        else:
            logger.warning(
                "peer %s could not store its leave tombstone; it drops out when its record expires (<= %g s)",
                record.peer_id,
                self.config.ttl_s,
            )

    def close(self, timeout_s: float | None = None) -> None:
        """Leave, then shut the DHT process down; within ``timeout_s`` when given (60 % to leave,
        the rest to the shutdown), else each step within its configured timeout. Idempotent."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.leave(None if timeout_s is None else 0.6 * timeout_s)
        except Exception:
            logger.warning("leaving the swarm failed during close", exc_info=True)
        shutdown = self.config.shutdown_timeout_s
        with self._send_lock:  # no request may race the shutdown message on the pipe
            _stop_dht(self._dht, shutdown if timeout_s is None else min(shutdown, 0.3 * timeout_s))
        logger.info("discovery for swarm %r closed", self.config.swarm_id)

    def __enter__(self) -> DHTDiscovery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- what other hosts need -------------------------------------------------------------

    @property
    def bootstrap_maddr(self) -> str:
        """The multiaddr other hosts should join through: a non-loopback one when we have one."""
        usable = [m for m in self.visible_maddrs if "p2p-circuit" not in m]
        public = [m for m in usable if not _is_loopback(m)]
        if not (public or usable):
            raise DiscoveryError("the DHT reports no visible multiaddr; nobody could join through it")
        return (public or usable)[0]

    def join_command(self, extra_args: str = "") -> str:
        """The exact command another host runs to join this swarm."""
        command = shlex.join(
            ["dssl", "join", "--bootstrap", self.bootstrap_maddr, "--swarm-id", self.config.swarm_id]
        )
        return f"{command} {extra_args.strip()}" if extra_args.strip() else command

    # ---- membership ------------------------------------------------------------------------

    def announce(self, record: PeerRecord) -> None:
        """Store (or refresh) our record now and keep heart-beating it until leave()/close()."""
        peer_record_to_bytes(record)  # raises RecordError on a record others would refuse
        with self._state_lock:
            if self._closed:
                raise DiscoveryError("announce() after close()")
            self._record = record
            self._stop.clear()
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._heartbeat = threading.Thread(
                    target=self._beat, daemon=True, name=f"dht-heartbeat-{record.peer_id}"
                )
                self._heartbeat.start()  # its first beat comes one period after this store
        if not self._store(record.peer_id, peer_record_to_bytes(record)):
            logger.warning(
                "announcing peer %s failed; the heartbeat retries every %g s",
                record.peer_id,
                self.config.heartbeat,
            )

    def live_peers(self) -> list[PeerRecord]:
        """The live peers (self included once announced), sorted by peer id."""
        return [record for record, _ in self.status()]

    def status(self) -> list[tuple[PeerRecord, float]]:
        """Live peers with their record's expiration time (``time.time()`` clock), sorted by peer id.

        The last heartbeat of a peer was about ``expiration - ttl_s``. When the DHT does not answer
        in time, the last answer is reused (minus what has expired since) and a warning is logged.
        """
        if self._closed:
            raise DiscoveryError("status()/live_peers() after close()")
        now = get_dht_time()
        live = {peer_id: entry for peer_id, entry in self._read().items() if entry[1] > now}
        with self._state_lock:
            if self._record is not None:  # we know we are alive, even if our last store failed
                live[self._record.peer_id] = (self._record, self._expiration)
        return [live[peer_id] for peer_id in sorted(live)]

    # ---- internals -------------------------------------------------------------------------

    def _call(self, submit: Callable[[], Any], what: str, timeout: float | None = None) -> Any:
        """Send one request to the DHT process and wait for it with the configured deadline (or
        ``timeout``)."""
        if not self._dht.is_alive():  # a dead DHT process would only ever time out
            raise DiscoveryError(f"the DHT process has exited (exit code {self._dht.exitcode})")
        with self._send_lock:
            future = submit()
        deadline = self.config.request_timeout_s if timeout is None else timeout
        try:
            return future.result(timeout=deadline)
        except _TIMEOUTS:
            future.cancel()
            raise TimeoutError(f"DHT {what} did not answer within {deadline:g} s") from None

    def _store(self, peer_id: str, value: bytes, timeout: float | None = None) -> bool:
        """Store under our subkey with an expiration later than anything we stored before."""
        with self._state_lock:
            expiration = max(get_dht_time() + self.config.ttl_s, self._expiration + _MIN_EXPIRATION_STEP)
            self._expiration = expiration
        try:
            return bool(
                self._call(
                    lambda: self._dht.store(
                        self.config.key, value, expiration, subkey=peer_id, return_future=True
                    ),
                    "store",
                    timeout,
                )
            )
        except Exception as exc:
            logger.warning("DHT store for peer %s failed: %s", peer_id, exc)
            return False

    def _read(self) -> dict[str, tuple[PeerRecord, float]]:
        """Every valid, unexpired record under the swarm key, by peer id."""
        try:
            found = self._call(lambda: self._dht.get(self.config.key, latest=True, return_future=True), "get")
        except Exception as exc:
            logger.warning(
                "reading the live set of swarm %r failed (%s); reusing the last answer",
                self.config.swarm_id,
                exc,
            )
            return dict(self._last_seen)
        entries = self._decode(found)
        self._last_seen = dict(entries)
        return entries

    def _decode(self, found: Any) -> dict[str, tuple[PeerRecord, float]]:
        if found is None:
            return {}
        if not isinstance(found.value, dict):
            self._warn(
                ("<whole key>", found.expiration_time),
                "swarm %r: the value under %r is not a map of peer records; ignored",
                self.config.swarm_id,
                self.config.key,
            )
            return {}
        now = get_dht_time()
        entries: dict[str, tuple[PeerRecord, float]] = {}
        for subkey, item in found.value.items():
            value, expiration = getattr(item, "value", None), getattr(item, "expiration_time", None)
            if not isinstance(expiration, (int, float)) or expiration <= now:
                continue
            try:
                record = check_entry(subkey, value)
            except RecordError as exc:
                self._warn(
                    (repr(subkey)[:64], expiration),
                    "swarm %r: ignoring entry %.64r: %s",
                    self.config.swarm_id,
                    subkey,
                    exc,
                )
                continue
            if record is not None:
                entries[record.peer_id] = (record, float(expiration))
        return entries

    def _beat(self) -> None:
        """Heartbeat thread: re-store the latest record every heartbeat period until stopped."""
        while not self._stop.wait(self.config.heartbeat):
            with self._state_lock:
                record = self._record
            if record is None:
                return
            if not self._store(record.peer_id, peer_record_to_bytes(record)):
                logger.warning(
                    "heartbeat of peer %s failed; retrying in %g s", record.peer_id, self.config.heartbeat
                )


def _start_dht(config: DiscoveryConfig, peers: list[str] | None) -> tuple[hivemind.DHT, list[str]]:
    """Start the DHT and wait until it is ready; a join that no initial peer answered, or a DHT
    process that did not become ready, is tried ``start_attempts`` times in all, with a doubling
    pause between attempts. Other failures (an address that is not ours) are raised at once."""
    pause = config.start_retry_s
    for attempt in range(1, config.start_attempts + 1):
        dht = _new_dht(config, peers)
        try:
            return dht, _visible_maddrs_when_ready(dht, config)
        except (JoinError, NotReadyError) as exc:
            if attempt == config.start_attempts:
                raise type(exc)(f"{exc} (after {attempt} attempts)") from exc
            logger.warning(
                "DHT start attempt %d of %d failed (%s); trying again in %.1f s",
                attempt,
                config.start_attempts,
                exc,
                pause,
            )
            time.sleep(pause)
            pause *= 2
    raise AssertionError("unreachable: the last attempt returns or raises")


def _new_dht(config: DiscoveryConfig, peers: list[str] | None) -> hivemind.DHT:
    """Start the DHT process with our safe flags; readiness is awaited by the caller, with a deadline."""
    return hivemind.DHT(
        initial_peers=peers,
        start=True,
        await_ready=False,  # we wait ourselves, with a deadline
        host_maddrs=[config.host_maddr],
        startup_timeout=config.startup_timeout_s,
        shutdown_timeout=config.shutdown_timeout_s,
        client_mode=config.client_mode,
        record_validators=[PeerRecordValidator(config.key)],
        nat_port_map=config.nat_port_map,
        auto_nat=config.auto_nat,
        use_relay=config.use_relay,
        use_auto_relay=config.use_auto_relay,
    )


def _visible_maddrs_when_ready(dht: hivemind.DHT, config: DiscoveryConfig) -> list[str]:
    """Wait (bounded) until the DHT is ready and return its dialable multiaddrs; stop it and raise
    DiscoveryError when it does not come up."""
    try:
        dht.wait_until_ready(timeout=config.startup_timeout_s + config.request_timeout_s)
        maddrs_future = dht.run_coroutine(_visible_maddrs, return_future=True)
        maddrs = maddrs_future.result(timeout=config.request_timeout_s)
    except _TIMEOUTS:
        _stop_dht(dht, config.shutdown_timeout_s)
        raise NotReadyError(
            f"the hivemind DHT did not become ready within {config.startup_timeout_s:g} s "
            f"(listening on {config.host_maddr}, initial peers: "
            f"{', '.join(config.initial_peers) or 'none'}); check the machine's load and that "
            f"the initial peers are reachable, or raise startup_timeout_s"
        ) from None
    except Exception as exc:
        _stop_dht(dht, config.shutdown_timeout_s)
        raise start_error(exc, config) from exc
    return maddrs


def _stop_dht(dht: hivemind.DHT, timeout: float) -> None:
    """Shut the DHT process down within about ``timeout`` seconds, whatever it does.

    The polite request runs in a helper thread (hivemind's ``shutdown`` itself can block on the
    DHT's pipe); a process still alive when the time is up is terminated, then killed. A peer's stop
    deadline therefore never runs out inside hivemind's shutdown."""
    request = threading.Thread(target=_request_shutdown, args=(dht,), daemon=True, name="dht-shutdown")
    request.start()
    request.join(timeout + 1.0)  # hivemind's own shutdown waits ``timeout``, then terminates
    for force in ("terminate", "kill"):
        if not dht.is_alive():
            return
        logger.warning("the DHT process ignored the shutdown for %g s: %s", timeout, force)
        getattr(dht, force)()
        dht.join(1.0)


def _request_shutdown(dht: hivemind.DHT) -> None:
    try:
        dht.shutdown()
    except Exception:
        logger.warning("DHT shutdown request failed", exc_info=True)
