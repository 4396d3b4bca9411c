"""Network addresses as the swarm spells them: ``host:port`` strings and hivemind multiaddrs.

    host_port("[::1]:7000")                       -> ("::1", 7000)
    maddr_host("/ip4/10.0.0.1/tcp/7001/p2p/Qm")   -> "10.0.0.1"
    advertised_host("0.0.0.0", maddrs)            -> the address neighbours dial

Pure functions (only :func:`advertised_host` may ask the resolver for this host's name).
"""

from __future__ import annotations

import socket

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})  # listen on every interface


def host_port(address: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 hosts in brackets or not) into (host without brackets, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def maddr_host(maddr: str) -> str | None:
    """The IPv4/IPv6 host of a multiaddr such as ``/ip4/10.0.0.1/tcp/7001/p2p/Qm``; None without one."""
    parts = maddr.split("/")
    for family in ("ip4", "ip6"):
        if family in parts and parts.index(family) + 1 < len(parts):
            return parts[parts.index(family) + 1]
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.x, ::1, localhost)."""
    return host.startswith("127.") or host in ("::1", "localhost")


def advertised_host(listen_host: str, maddrs: list[str]) -> str:
    """The address others dial: the listen host, or for a wildcard our first non-loopback address."""
    if listen_host not in WILDCARD_HOSTS:
        return listen_host
    for maddr in maddrs:
        host = maddr_host(maddr)
        if host and not host.startswith("127.") and host != "::1":
            return host
    return socket.gethostbyname(socket.gethostname())
