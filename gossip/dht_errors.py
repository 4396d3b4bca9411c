"""What a failed DHT start means to the user: the discovery errors and their messages.

``start_error`` turns hivemind's / p2pd's start-up failures into a message that says what to check
(an unreachable initial peer, an address that is not ours, a daemon that did not come up);
``JoinError`` marks the first kind and ``NotReadyError`` a daemon that did not come up in time: both can
be passing trouble on a loaded host, so :mod:`gossip.discovery` tries them again.
"""

from __future__ import annotations

from typing import Any


class DiscoveryError(RuntimeError):
    """The DHT could not start or join; the message says what failed and what to check."""


class JoinError(DiscoveryError):
    """None of the initial peers answered the join (tried ``start_attempts`` times)."""


class NotReadyError(DiscoveryError):
    """The DHT process did not become ready within its start-up deadline (tried ``start_attempts`` times)."""


def start_error(exc: BaseException, config: Any) -> DiscoveryError:
    """Turn hivemind/p2pd start-up failures into a message that says what to check (``config``: the
    ``gossip.discovery.DiscoveryConfig`` of the attempt)."""
    text = str(exc)
    peers = ", ".join(config.initial_peers)
    if "bootstrap" in text or "initial_peers" in text:
        return JoinError(
            f"could not join swarm {config.swarm_id!r}: no initial peer answered ({peers}). Check that "
            f"the address and port are right and reachable from this host (firewall open for that TCP "
            f"port), that the bootstrap peer is still running, and that the /p2p/ peer id is its current "
            f"one (it changes on every restart). [{text}]"
        )
    if "listen" in text or "bind" in text:
        return DiscoveryError(
            f"the DHT could not listen on {config.host_maddr}: check that {config.host} is an address of "
            f"this machine and that port {config.port} is free. [{text}]"
        )
    return DiscoveryError(
        f"the hivemind DHT daemon (p2pd) did not start: {text}. Check that hivemind is installed with "
        f"its p2pd binary, that {config.host_maddr} is usable here, and raise startup_timeout_s "
        f"(now {config.startup_timeout_s:g} s) on a heavily loaded machine."
    )
