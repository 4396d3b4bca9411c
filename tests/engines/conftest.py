"""Real engines for the engine tests (``make test-engines``): a single-node Slurm cluster, a Docker
engine with a locally built base image, and sshd inside network namespaces.

Each fixture starts its engine through the project's own scripts (``deploy/slurm/cluster.sh``,
``deploy/docker/engine.sh``), which install the Debian packages they need, and stops what it started
when the tests end. Everything needs root; without it the tests are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLURM_STATE = Path("/tmp/dssl-slurm-tests")
ENGINE_TIMEOUT_S = 1200  # package installs and a debootstrap over the network fit in this


def _script(script: str, action: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        ["bash", script, action],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=ENGINE_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{script} {action} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the engine tests install Debian packages and start daemons: run them as root")


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[Path]:
    """A single-node Slurm cluster (munge, slurmctld, slurmd); yields its slurm.conf."""
    _need_root()
    env = {"SLURM_STATE": str(SLURM_STATE)}
    _script("deploy/slurm/cluster.sh", "up", env)
    try:
        yield SLURM_STATE / "slurm.conf"
    finally:
        _script("deploy/slurm/cluster.sh", "down", env)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """A running Docker engine with the locally imported base image; yields the base image name."""
    _need_root()
    _script("deploy/docker/engine.sh", "up")
    try:
        _script("deploy/docker/engine.sh", "context")
        _script("deploy/docker/engine.sh", "base")
        yield "dssl-base:bookworm"
    finally:
        _script("deploy/docker/engine.sh", "down")
