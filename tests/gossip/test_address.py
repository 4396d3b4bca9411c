"""Addresses: host:port and multiaddr parsing, and the address a wildcard listener advertises."""

from __future__ import annotations

from gossip.address import advertised_host, host_port, is_loopback, maddr_host


def test_host_port_strips_ipv6_brackets():
    assert host_port("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert host_port("[::1]:7001") == ("::1", 7001)


def test_maddr_host_reads_ip4_and_ip6_and_nothing_else():
    assert maddr_host("/ip4/10.0.0.1/tcp/7001/p2p/Qm") == "10.0.0.1"
    assert maddr_host("/ip6/::1/tcp/7001") == "::1"
    assert maddr_host("/dns4/example.org/tcp/1") is None


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("10.0.0.1") and not is_loopback("0.0.0.0")


def test_advertised_host_replaces_a_wildcard_with_a_routable_address():
    assert advertised_host("10.1.2.3", []) == "10.1.2.3"
    maddrs = ["/ip4/127.0.0.1/tcp/1/p2p/X", "/ip4/10.9.9.9/tcp/1/p2p/X"]
    assert advertised_host("0.0.0.0", maddrs) == "10.9.9.9"
