"""Peers on hosts that do not share our disk get their TLS files and the swarm secret on stdin:
the ssh transport's argv carries no credential path, and real peers started through the same
transport logic (locally, so no ssh server is needed) gossip over mutual TLS with the secret."""

from __future__ import annotations

import pytest

from launcher.fault_schedule import load_schedule
from launcher.hosts import CredentialsOverStdin, Host, SshTransport, inventory_from_dict
from launcher.spec import SpecError
from launcher.swarm import run_swarm, security_args
from tests.launcher.swarm_util import reaped_swarm, rounds, tiny_plan

SECRET = "correct horse battery staple 42\n"


def test_credential_flags_become_credentials_stdin(tmp_path):
    # prepare
    transport = CredentialsOverStdin()
    argv = [
        "python",
        "-m",
        "launcher.cli",
        "peer",
        "--config",
        "c.yaml",
        "--tls-dir",
        "/run/tls",
        "--swarm-secret-file",
        "/run/secret",
    ]
    # execute / assert
    assert transport.wrap(argv) == [
        "python",
        "-m",
        "launcher.cli",
        "peer",
        "--config",
        "c.yaml",
        "--credentials-stdin",
    ]
    assert transport.wrap(["peer", "--insecure"]) == ["peer", "--insecure"]
    assert transport.stdin_preamble("p0", ["peer", "--insecure"]) is None
    assert transport.keep_stdin_open


def test_ssh_command_line_names_no_credential_file(tmp_path):
    # prepare
    config = tmp_path / "c.yaml"
    config.write_text("name: x\n")
    ssh = SshTransport(Host(address="10.0.0.2", ssh="alice@box", workdir="/opt/dssl"))
    # execute
    argv = ssh.wrap(
        [
            "/usr/bin/python",
            "-m",
            "launcher.cli",
            "peer",
            "--config",
            str(config),
            "--tls-dir",
            str(tmp_path / "tls"),
            "--swarm-secret-file",
            str(tmp_path / "secret"),
        ]
    )
    # assert
    remote = argv[-1]
    assert argv[:2] == ["ssh", "-o"] and "alice@box" in argv
    assert "--credentials-stdin" in remote and "--stop-on-stdin-eof" in remote
    assert str(tmp_path) not in remote and "--tls-dir" not in remote and "--swarm-secret-file" not in remote


@pytest.mark.swarm
@pytest.mark.slow
class _SshHere(CredentialsOverStdin):
    """What SshTransport does to a peer (credentials on stdin, stdin held open, stop on its EOF),
    without ssh: the real sshd run is tests/engines/test_ssh.py."""

    def wrap(self, argv: list[str]) -> list[str]:
        return [*super().wrap(argv), "--stop-on-stdin-eof"]


def test_peers_started_with_credentials_on_stdin_gossip_over_mutual_tls(tmp_path, reaper):
    # prepare: a 2-peer swarm whose peers read TLS files + secret from stdin and watch it (as over ssh)
    plan = tiny_plan(2, "t-stdin-creds", steps=6)
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    swarm = reaped_swarm(plan, tmp_path, reaper, transports={p.peer_id: _SshHere() for p in plan.peers})
    run = swarm.run
    swarm.peer_args = security_args(plan, run, insecure=False, secret_file=secret)
    try:
        # execute
        swarm.start(wait_all=True)
        ready = {p: swarm.processes[p].ready() for p in swarm.processes}
        codes = swarm.wait(timeout=150)
    finally:
        swarm.stop(deadline_s=10)
    # assert: both peers ran secured, finished, and pulled from each other
    assert codes == {"p0": 0, "p1": 0}, {p: run.log_path(p).read_text()[-1500:] for p in codes}
    assert {r["security"] for r in ready.values()} == {"mutual TLS + swarm secret"}
    for me, other in (("p0", "p1"), ("p1", "p0")):
        answered = {n["peer"] for r in rounds(run.peer_dir(me)) for n in r["neighbours"] if n["answered"]}
        assert other in answered
    assert "--tls-dir" not in run.log_path("p0").read_text()


def test_a_fault_schedule_is_refused_for_ssh_hosts_before_anything_starts(tmp_path):
    # prepare
    plan = tiny_plan(2, "t-ssh-faults", steps=2)
    inventory = inventory_from_dict(
        {
            "hosts": [
                {"address": "127.0.0.1", "transport": "local"},
                {"address": "10.0.0.2", "ssh": "alice@box"},
            ]
        }
    )
    schedule_path = tmp_path / "faults.yaml"
    schedule_path.write_text("events:\n  - {at: 1, action: kill, peer: p1}\n")
    schedule = load_schedule(schedule_path, ["p0", "p1"])
    # execute / assert
    with pytest.raises(SpecError, match="ssh:alice@box cannot take one"):
        run_swarm(plan, ["pytest"], inventory=inventory, run_root=str(tmp_path / "runs"), faults=schedule)
    assert not (tmp_path / "runs").exists()
