"""Two test "hosts" on this machine: Linux network namespaces joined by a veth pair.

``netns_pair()`` creates namespaces A and B (unique names per run, so parallel runs never collide),
links them with a veth pair (10.77.0.1/24 in A, 10.77.0.2/24 in B), brings up ``lo`` in each, yields
their names and addresses, and deletes both in ``finally``. The addresses exist only inside the
namespaces, so every run can use the same ones. Run commands inside with ``pair.exec_prefix(ns)``.
Kill the processes you started inside before the context exits: a namespace with live processes
outlives ``ip netns delete`` until they end.

Needs root and iproute2; when either is missing the test is skipped with the reason.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

logger = logging.getLogger(__name__)

_IP_TIMEOUT_S = 10  # every `ip` call is local and quick; this only guards against a wedged kernel


@dataclass(frozen=True)
class NetnsPair:
    """Names and addresses of the two namespaces."""

    a: str
    b: str
    addr_a: str = "10.77.0.1"
    addr_b: str = "10.77.0.2"

    @staticmethod
    def exec_prefix(namespace: str) -> list[str]:
        """Prefix a command with this to run it inside ``namespace``."""
        return ["ip", "netns", "exec", namespace]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT_S)


def _unique_name(prefix: str, tag: str) -> str:
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}-{tag}"


@functools.lru_cache(maxsize=1)
def netns_unavailable_reason() -> str | None:
    """None when this process can create network namespaces, else why not (for a skip message)."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the tests as root to include this test"
    if shutil.which("ip") is None:
        return "the iproute2 `ip` command is not installed"
    probe = _unique_name("dssl-probe", "x")
    created = _ip("netns", "add", probe)
    if created.returncode != 0:
        return f"`ip netns add` failed here: {created.stderr.strip() or created.stdout.strip()}"
    _ip("netns", "delete", probe)
    return None


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stderr.strip() or result.stdout.strip()}")


@contextmanager
def netns_pair(prefix: str = "dssl") -> Iterator[NetnsPair]:
    """Create two linked namespaces, yield them, always delete them (skips when unavailable)."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    pair = NetnsPair(a=_unique_name(prefix, "a"), b=_unique_name(prefix, "b"))
    created: list[str] = []
    try:
        for namespace in (pair.a, pair.b):
            _check(_ip("netns", "add", namespace), f"ip netns add {namespace}")
            created.append(namespace)
        # Both veth ends are created directly inside their namespaces: no name ever exists on the
        # host, so concurrent runs cannot collide on interface names.
        _check(
            _ip(
                "link",
                "add",
                "veth-a",
                "netns",
                pair.a,
                "type",
                "veth",
                "peer",
                "name",
                "veth-b",
                "netns",
                pair.b,
            ),
            "creating the veth pair",
        )
        for namespace, dev, addr in ((pair.a, "veth-a", pair.addr_a), (pair.b, "veth-b", pair.addr_b)):
            _check(_ip("-n", namespace, "addr", "add", f"{addr}/24", "dev", dev), f"address {addr}")
            _check(_ip("-n", namespace, "link", "set", dev, "up"), f"{dev} up in {namespace}")
            _check(_ip("-n", namespace, "link", "set", "lo", "up"), f"lo up in {namespace}")
        yield pair
    finally:
        for namespace in created:
            deleted = _ip("netns", "delete", namespace)
            if deleted.returncode != 0:
                logger.warning("could not delete namespace %s: %s", namespace, deleted.stderr.strip())
