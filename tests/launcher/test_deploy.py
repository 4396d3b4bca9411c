"""deploy/: what can be checked without a container engine or a cluster (YAML shape, shell syntax).
The engines themselves run in tests/engines (make test-engines)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_k8s_manifest_is_a_headless_service_and_a_statefulset_of_peers():
    # prepare / execute
    docs = [d for d in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    # assert
    assert kinds["Service"]["spec"]["clusterIP"] == "None"
    sts = kinds["StatefulSet"]
    assert sts["spec"]["serviceName"] == kinds["Service"]["metadata"]["name"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {7000, 7001}
    assert "--bootstrap-file" in container["args"][0] and "dssl peer" in container["args"][0]


def test_compose_has_one_bootstrap_and_joiners_with_their_own_data_share():
    # prepare / execute
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    # assert: p0..p3 share one command; INDEX picks the peer id, the data share and the joining
    assert sorted(services) == ["p0", "p1", "p2", "p3"]
    assert [services[s]["environment"]["INDEX"] for s in sorted(services)] == ["0", "1", "2", "3"]
    command = services["p0"]["command"][0]
    assert all(services[s]["command"][0] == command for s in services)
    assert "--bootstrap-file /shared/$$SWARM_ID/p0/ready.json" in command
    assert "data.peer_index=$$INDEX" in command and services["p0"]["network_mode"] == "host"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("script", ["slurm.sbatch", "slurm/cluster.sh", "docker/engine.sh"])
def test_deploy_scripts_parse(script):
    # execute
    result = subprocess.run(["bash", "-n", str(DEPLOY / script)], capture_output=True, text=True)
    # assert
    assert result.returncode == 0, result.stderr
