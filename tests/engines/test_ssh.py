"""``dssl swarm --hosts`` over a real sshd: a launcher on host A starts one peer there and two on
host B over ssh (TLS files and the swarm secret sent as one line on the peer's stdin), then a
fourth peer joins from host B by deploy/README.md's recipe: ``dssl certs`` for it, ``dssl join``
over ssh. Hosts A and B are network namespaces joined by a veth pair."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.engines.conftest import ROOT
from tests.engines.learning import final_evals
from tests.engines.sshd import sshd_in
from tests.launcher.swarm_util import rounds, wait_for
from tests.netns import netns_pair

pytestmark = [pytest.mark.engines, pytest.mark.slow]

DSSL = str(ROOT / ".venv" / "bin" / "dssl")
SWARM_TIMEOUT_S = 600


def _spec(tmp_path: Path, swarm_id: str) -> Path:
    base = yaml.safe_load((ROOT / "examples" / "engines.yaml").read_text())
    base["train"]["steps"] = 150  # long enough for the joiner to meet the swarm mid-run
    spec = {"swarm": {"id": swarm_id, "ready_timeout_s": 180, "stop_deadline_s": 30}, "base": base}
    path = tmp_path / "swarm.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _inventory(tmp_path: Path, pair, ssh_options: list[str]) -> Path:
    hosts = [
        {"address": pair.addr_a, "transport": "local", "peers": 1},
        {"address": pair.addr_b, "transport": "ssh", "ssh": f"root@{pair.addr_b}", "ssh_options": ssh_options,
         "peers": 2, "workdir": str(ROOT)},
    ]  # fmt: skip
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path


def _start_launcher(pair, spec: Path, hosts: Path, secret: Path, tmp_path: Path) -> subprocess.Popen:
    command = [*pair.exec_prefix(pair.a), DSSL, "swarm", "--config", str(spec), "--hosts", str(hosts),
               "--swarm-secret-file", str(secret), "--run-root", str(tmp_path / "runs")]  # fmt: skip
    log = (tmp_path / "launcher.log").open("w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _run_dir(tmp_path: Path) -> Path:
    text = (tmp_path / "launcher.log").read_text()
    found = re.search(r"run dir (\S+)", text)
    return Path(found.group(1)) if found and "all peers ready" in text else None


def _join_over_ssh(pair, ssh_options: list[str], run: Path, secret: Path, tmp_path: Path) -> subprocess.Popen:
    """deploy/README.md: a certificate from the swarm CA for the new peer, then `dssl join` there."""
    tls = tmp_path / "j3-tls"
    certs = [
        DSSL,
        "certs",
        "--ca-dir",
        str(run / "tls"),
        "--peer-id",
        "j3",
        "--host",
        pair.addr_b,
        "--out",
        str(tls),
    ]
    subprocess.run(certs, cwd=ROOT, check=True, capture_output=True, timeout=60)
    join = json.loads((run / "peers" / "p0" / "ready.json").read_text())["join_command"]
    flags = f"--peer-id j3 --listen {pair.addr_b}:0 --tls-dir {tls} --swarm-secret-file {secret}"
    remote = (
        f"cd {ROOT} && exec .venv/bin/{join} {flags} --run-dir {tmp_path / 'j3'} --set train.steps=40 --quiet"
    )
    command = [
        *pair.exec_prefix(pair.a),
        "ssh",
        "-o",
        "BatchMode=yes",
        *ssh_options,
        f"root@{pair.addr_b}",
        remote,
    ]
    log = (tmp_path / "j3.log").open("w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def test_swarm_over_ssh_with_credentials_on_stdin_and_a_join_from_another_host(tmp_path):
    with (
        netns_pair("dssl-ssh") as pair,
        sshd_in(pair.b, pair.addr_b, tmp_path / "ssh", pair.a) as ssh_options,
    ):
        # prepare
        secret = tmp_path / "secret"
        secret.write_text(secrets.token_hex(32))
        spec, hosts = _spec(tmp_path, f"ssh-{secrets.token_hex(3)}"), _inventory(tmp_path, pair, ssh_options)
        launcher = joiner = None
        try:
            # execute: the swarm over ssh, then a joiner on host B
            launcher = _start_launcher(pair, spec, hosts, secret, tmp_path)
            run = wait_for(lambda: _run_dir(tmp_path), 240, "all peers ready (launcher.log)")
            joiner = _join_over_ssh(pair, ssh_options, run, secret, tmp_path)
            launcher_code = launcher.wait(timeout=SWARM_TIMEOUT_S)
            joiner_code = joiner.wait(timeout=SWARM_TIMEOUT_S)
        finally:
            _stop(joiner)
            _stop(launcher)
        log = (tmp_path / "launcher.log").read_text()
        # assert: the swarm finished, its ssh peers got TLS + secret from stdin (nothing on argv)
        assert launcher_code == 0, log[-4000:]
        assert joiner_code == 0, (tmp_path / "j3.log").read_text()[-3000:]
        manifest = json.loads((run / "manifest.json").read_text())
        assert manifest["placement"] == {"p0": pair.addr_a, "p1": pair.addr_b, "p2": pair.addr_b}
        assert secret.read_text() not in log
        for peer_id in ("p1", "p2"):
            ready = json.loads((run / "peers" / peer_id / "ready.json").read_text())
            assert ready["security"] == "mutual TLS + swarm secret"
            assert ready["address"].startswith(f"{pair.addr_b}:")
        # the ssh peers served on host B with TLS and learned; the joiner gossiped with the swarm
        evals = final_evals([run / "peers" / p for p in ("p0", "p1", "p2")])
        assert all(final["linear"] > init["linear"] for init, final in evals.values()), evals
        answered = {n["peer"] for r in rounds(tmp_path / "j3") for n in r["neighbours"] if n["answered"]}
        assert answered & {"p0", "p1", "p2"}, (tmp_path / "j3.log").read_text()[-3000:]
