"""The image builds from a locally imported base, runs a peer, and deploy/compose.yaml brings up a
4-peer swarm that learns."""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from tests.engines.conftest import ROOT
from tests.engines.learning import assert_learned

pytestmark = [pytest.mark.engines, pytest.mark.slow]

IMAGE = "dssl:engine-test"
BUILD_TIMEOUT_S = 1500
COMPOSE_TIMEOUT_S = 900


def _run(command: list[str], timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def image(docker_engine) -> str:
    """deploy/Dockerfile built on the local base image (host network: the build installs packages)."""
    build = _run(
        ["docker", "build", "--network", "host", "-f", "deploy/Dockerfile",
         "--build-arg", f"BASE={docker_engine}", "-t", IMAGE, "."],
        BUILD_TIMEOUT_S,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return IMAGE


def test_the_image_runs_the_dssl_command(image):
    # execute
    result = _run(["docker", "run", "--rm", "--network", "host", image, "--help"], 120)
    # assert: the entry point is dssl, with its sub-commands
    assert result.returncode == 0, result.stderr
    assert "peer" in result.stdout and "swarm" in result.stdout


def test_compose_brings_up_a_four_peer_swarm_that_learns(image, tmp_path):
    # prepare: a fresh swarm id and a bind-mounted shared directory
    swarm_id = f"compose-{secrets.token_hex(3)}"
    env = {
        **os.environ, "IMAGE": image, "CONFIG": "examples/engines.yaml", "SHARED": str(tmp_path),
        "SWARM_ID": swarm_id, "COMPOSE_PROJECT_NAME": swarm_id,
    }  # fmt: skip
    compose = ["docker-compose", "-f", "deploy/compose.yaml"]
    try:
        # execute: up in the foreground returns when every peer container has exited
        up = _run([*compose, "up", "--no-build", "--no-color"], COMPOSE_TIMEOUT_S, env=env)
        codes = _run([*compose, "ps", "-q"], 60, env=env).stdout.split()
        states = [
            _run(["docker", "inspect", "-f", "{{.State.ExitCode}}", c], 60).stdout.strip() for c in codes
        ]
    finally:
        _run([*compose, "down", "-v"], 300, env=env)
    # assert: four containers exited 0, and the swarm learned
    assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-2000:]
    assert states == ["0"] * 4, up.stdout[-4000:]
    peer_dirs = sorted((tmp_path / swarm_id).iterdir())
    assert [p.name for p in peer_dirs] == ["p0", "p1", "p2", "p3"]
    assert_learned(peer_dirs)
