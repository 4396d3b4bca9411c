"""Two "hosts" made of network namespaces: peers in B join the swarm bootstrapped in A through A's
multiaddr (10.77.0.1) and gossip over gRPC across the veth link. Skips with the reason when the
machine cannot create namespaces (not root, no iproute2)."""

from __future__ import annotations

import json

import pytest

from launcher.hosts import inventory_from_dict, place
from launcher.local import LocalSwarm
from launcher.rundir import create_run_dir, write_manifest, write_peer_configs
from tests.launcher.swarm_util import COMMAND, rounds, tiny_plan
from tests.netns import netns_pair

pytestmark = [pytest.mark.swarm, pytest.mark.slow]


def test_peers_in_namespace_b_join_the_swarm_of_namespace_a_and_gossip_across(tmp_path, reaper):
    with netns_pair("dssl-h4") as pair:
        # prepare: 1 peer on host A (the bootstrap), 2 on host B
        inventory = inventory_from_dict({"hosts": [
            {"address": pair.addr_a, "transport": f"netns:{pair.a}", "peers": 1},
            {"address": pair.addr_b, "transport": f"netns:{pair.b}", "peers": 2},
        ]})
        plan, transports, where = place(tiny_plan(3, "t-netns", steps=8), inventory)
        run = create_run_dir(tmp_path / "runs", "netns")
        paths = write_peer_configs(run, plan)
        write_manifest(run, plan, ["pytest"], {"placement": where})
        swarm = LocalSwarm(plan, run, config_paths=paths, peer_command=COMMAND, transports=transports)
        try:
            # execute
            swarm.start_peer("p0", extra_args=["--wait-peers", "3"])
            reaper.append(swarm.processes["p0"].popen)
            boot = swarm.wait_ready(["p0"], timeout=120)["p0"]
            for peer_id in ("p1", "p2"):
                reaper.append(swarm.start_peer(peer_id, bootstrap=boot["maddrs"],
                                               extra_args=["--wait-peers", "3"]).popen)
            ready = swarm.wait_ready(timeout=120)
            codes = swarm.wait(timeout=150)
        finally:
            swarm.stop(deadline_s=10)  # nothing may outlive the namespaces
        # assert: A's multiaddr is on the veth link, B's peers serve on B's address
        assert all(m.startswith(f"/ip4/{pair.addr_a}/") for m in boot["maddrs"]), boot["maddrs"]
        assert ready["p0"]["address"].startswith(f"{pair.addr_a}:")
        assert all(ready[p]["address"].startswith(f"{pair.addr_b}:") for p in ("p1", "p2"))
        assert codes == {"p0": 0, "p1": 0, "p2": 0}, {p: swarm.run.log_path(p).read_text()[-1500:] for p in codes}
        # and gossip crossed the link: p0 (in A) got answers from peers in B, and vice versa
        p0_answered = {n["peer"] for r in rounds(run.peer_dir("p0")) for n in r["neighbours"] if n["answered"]}
        assert {"p1", "p2"} <= p0_answered
        for peer_id in ("p1", "p2"):
            got = {n["peer"] for r in rounds(run.peer_dir(peer_id)) for n in r["neighbours"] if n["answered"]}
            assert "p0" in got
        manifest = json.loads(run.manifest_path.read_text())
        assert manifest["placement"] == {"p0": pair.addr_a, "p1": pair.addr_b, "p2": pair.addr_b}
