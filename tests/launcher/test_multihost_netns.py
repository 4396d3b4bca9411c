"""Two "hosts" made of network namespaces: peers in B join the swarm bootstrapped in A through A's
multiaddr (10.77.0.1) and gossip over gRPC across the veth link. Skips with the reason when the
machine cannot create namespaces (not root, no iproute2)."""

from __future__ import annotations

import json

import pytest

from launcher.hosts import inventory_from_dict, place
from launcher.processes import SwarmProcesses
from tests.launcher.swarm_util import reaped_swarm, rounds, tiny_plan
from tests.netns import NetnsPair, netns_pair

pytestmark = [pytest.mark.swarm, pytest.mark.slow]
BARRIER = ["--wait-peers", "3"]


def _swarm_on_two_hosts(pair: NetnsPair, tmp_path, reaper) -> SwarmProcesses:
    """1 peer on host A (the bootstrap), 2 on host B."""
    inventory = inventory_from_dict(
        {
            "hosts": [
                {"address": pair.addr_a, "transport": f"netns:{pair.a}", "peers": 1},
                {"address": pair.addr_b, "transport": f"netns:{pair.b}", "peers": 2},
            ]
        }
    )
    plan, transports, where = place(tiny_plan(3, "t-netns", steps=8), inventory)
    return reaped_swarm(plan, tmp_path, reaper, manifest_extra={"placement": where}, transports=transports)


def _answered(swarm: SwarmProcesses, peer_id: str) -> set[str]:
    return {n["peer"] for r in rounds(swarm.run.peer_dir(peer_id)) for n in r["neighbours"] if n["answered"]}


def test_peers_in_namespace_b_join_the_swarm_of_namespace_a_and_gossip_across(tmp_path, reaper):
    with netns_pair("dssl-h4") as pair:
        # prepare
        swarm = _swarm_on_two_hosts(pair, tmp_path, reaper)
        try:
            # execute
            swarm.start_peer("p0", extra_args=BARRIER)
            boot = swarm.wait_ready(["p0"], timeout=120)["p0"]
            for peer_id in ("p1", "p2"):
                swarm.start_peer(peer_id, bootstrap=boot["maddrs"], extra_args=BARRIER)
            ready = swarm.wait_ready(timeout=120)
            codes = swarm.wait(timeout=150)
        finally:
            swarm.stop(deadline_s=10)  # nothing may outlive the namespaces
        # assert: A's multiaddr is on the veth link, B's peers serve on B's address
        assert all(m.startswith(f"/ip4/{pair.addr_a}/") for m in boot["maddrs"]), boot["maddrs"]
        assert ready["p0"]["address"].startswith(f"{pair.addr_a}:")
        assert all(ready[p]["address"].startswith(f"{pair.addr_b}:") for p in ("p1", "p2"))
        assert codes == {"p0": 0, "p1": 0, "p2": 0}, {
            p: swarm.run.log_path(p).read_text()[-1500:] for p in codes
        }
        # and gossip crossed the link: p0 (in A) got answers from peers in B, and vice versa
        assert {"p1", "p2"} <= _answered(swarm, "p0")
        assert all("p0" in _answered(swarm, peer_id) for peer_id in ("p1", "p2"))
        manifest = json.loads(swarm.run.manifest_path.read_text())
        assert manifest["placement"] == {"p0": pair.addr_a, "p1": pair.addr_b, "p2": pair.addr_b}
