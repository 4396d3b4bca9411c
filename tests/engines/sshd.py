"""A real sshd inside a network namespace: keys made per test, key-only root login, stopped by pid.

``sshd_in(namespace, address, directory)`` generates a host key and a client key in ``directory``,
starts ``/usr/sbin/sshd`` in ``namespace`` listening on ``address:22`` (Debian's openssh-server,
installed when missing), waits until it accepts a login, yields the ssh options a client uses
(identity, the host's pinned key, no agent, no password prompts) and stops the daemon in ``finally``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 30.0


def ensure_openssh() -> None:
    """Install Debian's openssh-server and client when missing (root)."""
    if Path(SSHD).exists() and shutil.which("ssh") and shutil.which("ssh-keygen"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600, env=env)
    install = ["apt-get", "install", "-y", "-qq", "openssh-server", "openssh-client"]
    subprocess.run(install, check=True, timeout=600, env=env, capture_output=True)


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)


def _write_config(directory: Path, address: str) -> Path:
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress {address}\nPort 22\nHostKey {directory / 'host_key'}\n"
        f"PidFile {directory / 'sshd.pid'}\nAuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPrintMotd no\nAcceptEnv no\n"
    )
    return config


def client_options(directory: Path, address: str) -> list[str]:
    """ssh options that log in with the test key and trust exactly the test host key."""
    known = directory / "known_hosts"
    key_type, key = (directory / "host_key.pub").read_text().split()[:2]
    known.write_text(f"{address} {key_type} {key}\n")
    return [
        "-i", str(directory / "client_key"), "-o", f"UserKnownHostsFile={known}",
        "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
    ]  # fmt: skip


def _wait_for_login(prefix: list[str], options: list[str], address: str, daemon: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    probe = [
        *prefix,
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=3",
        *options,
        f"root@{address}",
        "true",
    ]
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise RuntimeError(f"sshd exited with {daemon.returncode}: {daemon.stderr.read()}")
        if subprocess.run(probe, capture_output=True, timeout=15).returncode == 0:
            return
        time.sleep(0.3)
    raise RuntimeError(f"sshd on {address} did not accept the test key within {START_TIMEOUT_S:.0f} s")


@contextmanager
def sshd_in(namespace: str, address: str, directory: Path, client_namespace: str) -> Iterator[list[str]]:
    """Run sshd in ``namespace``; yields client ssh options (clients run in ``client_namespace``)."""
    ensure_openssh()
    directory.mkdir(parents=True, exist_ok=True)
    _keygen(directory / "host_key")
    _keygen(directory / "client_key")
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    config = _write_config(directory, address)
    daemon = subprocess.Popen(
        ["ip", "netns", "exec", namespace, SSHD, "-D", "-e", "-f", str(config)],
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        options = client_options(directory, address)
        _wait_for_login(["ip", "netns", "exec", client_namespace], options, address, daemon)
        yield options
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=15)
