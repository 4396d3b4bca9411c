"""``sbatch deploy/slurm.sbatch`` runs a 3-peer swarm to completion under a real Slurm cluster."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.engines.conftest import ROOT
from tests.engines.learning import assert_learned

pytestmark = [pytest.mark.engines, pytest.mark.slow]

JOB_TIMEOUT_S = 900


def test_sbatch_runs_a_three_peer_swarm_that_learns(slurm_conf, tmp_path):
    # prepare: three tasks on the one node, peers on loopback, the run dir under tmp_path
    run = tmp_path / "run"
    env = {**os.environ, "SLURM_CONF": str(slurm_conf), "PEER_ADDRESS": "127.0.0.1", "RUN": str(run)}
    command = [
        "sbatch", "--wait", "--nodes=1", "--ntasks=3", "--ntasks-per-node=3", "--cpus-per-task=1",
        "--time=00:15:00",
        f"--chdir={ROOT}", f"--output={tmp_path}/slurm-%j.out",
        "deploy/slurm.sbatch", "examples/engines.yaml", "--quiet",
    ]  # fmt: skip
    # execute
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    # assert: the job succeeded and every task's peer finished and learned
    logs = "\n".join(p.read_text()[-3000:] for p in tmp_path.glob("slurm-*.out"))
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs}"
    assert sorted(p.name for p in run.iterdir()) == ["p0", "p1", "p2"], logs
    assert_learned([run / "p0", run / "p1", run / "p2"])
