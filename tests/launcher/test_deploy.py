"""deploy/: what can be checked without a container engine or a cluster (YAML shape, shell syntax)."""

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


def test_compose_has_a_bootstrap_and_joiners_that_join_through_it():
    # prepare / execute
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    # assert
    assert {"bootstrap", "joiner"} <= set(compose["services"])
    assert "--bootstrap-file /shared/p0/ready.json" in compose["services"]["joiner"]["command"][0]
    assert "--run-dir /shared/p0" in compose["services"]["bootstrap"]["command"][0]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_slurm_script_parses():
    # execute
    result = subprocess.run(["bash", "-n", str(DEPLOY / "slurm.sbatch")], capture_output=True, text=True)
    # assert
    assert result.returncode == 0, result.stderr
