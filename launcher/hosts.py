"""Multi-host swarms: a hosts inventory, and how a peer command reaches each host.

Inventory YAML (see ``examples/hosts.yaml``)::

    hosts:
      - address: 10.0.0.1        # this host's own address: its peers' gRPC and DHT listen on it
        transport: ssh           # ssh (default) | local | netns:<namespace>
        ssh: alice@gpu-box-1     # ssh destination (default: the address)
        ssh_options: [-p, "2222"]  # extra ssh arguments (identity file, port, known-hosts file ...)
        peers: 2                 # peers started on this host
        devices: [cuda:0, cuda:1]  # round-robin over this host's peers (default: the spec's device)
        workdir: /opt/dssl       # the dssl checkout there (default: this checkout's path)
        python: .venv/bin/python # interpreter, relative to workdir (default: .venv/bin/python)

``dssl swarm --hosts hosts.yaml [--config swarm.yaml]`` plans ``sum(peers)`` peers from the swarm
spec, assigns them to hosts in inventory order (:func:`place`), and ``launcher.swarm.run_swarm``
starts them: the first peer (on the first host) as the bootstrap, every other peer joining the same
DHT through the bootstrap's multiaddr.

Transports: ``local`` runs the command here; ``netns:<name>`` runs it inside a Linux network
namespace on this machine (``ip netns exec``; the tests' stand-in for a second host); ``ssh`` runs
it on the host over ssh with the peer's config passed inline, its TLS certificate and the swarm
secret sent as one line on its stdin (never on a command line), stdin held open (the remote peer
stops cleanly when the launcher's ssh ends), and readiness read from the peer's stdout.

Security is that of ``dssl swarm``: mutual TLS with a fresh swarm CA whose certificates name every
host's address (``--insecure`` turns it off), plus the optional swarm secret. A fault schedule
needs the peers' run directories on this machine (``local`` and ``netns`` hosts).
"""

from __future__ import annotations

import base64
import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from gossip.security import encode_credentials, load_secret
from launcher.processes import Transport
from launcher.spec import PeerPlan, SpecError, SwarmPlan

_REPO = Path(__file__).resolve().parent.parent
_HOST_KEYS = {"address", "transport", "ssh", "ssh_options", "peers", "devices", "workdir", "python"}


@dataclass(frozen=True, kw_only=True)
class Host:
    address: str  # IP address of the host that its peers listen on
    transport: str = "ssh"  # "ssh", "local" or "netns:<name>"
    ssh: str | None = None  # ssh destination (default: address)
    ssh_options: tuple[str, ...] = ()  # extra ssh arguments, e.g. [-i, key, -p, "2222"]
    peers: int = 1
    devices: tuple[str, ...] = ()
    workdir: str = str(_REPO)
    python: str = ".venv/bin/python"


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    source: str | None = None

    @property
    def total_peers(self) -> int:
        return sum(h.peers for h in self.hosts)


class LocalTransport(Transport):
    name = "local"


class NetnsTransport(Transport):
    """Run inside a network namespace of this machine (root only); files stay on our disk."""

    def __init__(self, namespace: str):
        self.namespace = namespace
        self.name = f"netns:{namespace}"

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, *argv]


def _take_option(args: list[str], flag: str) -> str | None:
    """Remove ``flag VALUE`` from ``args`` (in place); returns VALUE or None."""
    if flag not in args:
        return None
    i = args.index(flag)
    value = args[i + 1]
    del args[i : i + 2]
    return value


class CredentialsOverStdin(Transport):
    """A transport whose host does not share our disk: the peer's ``--tls-dir`` / ``--swarm-secret-file``
    become ``--credentials-stdin``, and the files' contents go to its stdin as one line."""

    keep_stdin_open = True

    def stdin_preamble(self, peer_id: str, argv: list[str]) -> bytes | None:
        args = list(argv)
        tls_dir, secret_file = _take_option(args, "--tls-dir"), _take_option(args, "--swarm-secret-file")
        if tls_dir is None and secret_file is None:
            return None
        secret = load_secret(secret_file) if secret_file is not None else None
        return encode_credentials(tls_dir, peer_id, secret)

    def wrap(self, argv: list[str]) -> list[str]:
        args = list(argv)
        tls_dir, secret_file = _take_option(args, "--tls-dir"), _take_option(args, "--swarm-secret-file")
        return [*args, "--credentials-stdin"] if tls_dir is not None or secret_file is not None else args


class SshTransport(CredentialsOverStdin):
    """Run on another host over ssh (key-based, non-interactive: ``BatchMode=yes``)."""

    remote = True

    def __init__(self, host: Host):
        self.host = host
        self.name = f"ssh:{host.ssh or host.address}"

    def wrap(self, argv: list[str]) -> list[str]:
        # argv is [this python, -m, launcher.cli, peer, --config PATH, ...]: swap in the remote
        # interpreter and pass the config inline (the path exists only on our disk).
        args = super().wrap(argv)[1:]
        if "--config" in args:
            i = args.index("--config")
            config_text = Path(args[i + 1]).read_text()
            args[i : i + 2] = ["--config-b64", base64.b64encode(config_text.encode()).decode()]
        remote = [self.host.python, *args, "--stop-on-stdin-eof"]
        command = f"cd {shlex.quote(self.host.workdir)} && exec {shlex.join(remote)}"
        return [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=15",
            *self.host.ssh_options,
            self.host.ssh or self.host.address,
            command,
        ]


def transport_for(host: Host) -> Transport:
    if host.transport == "local":
        return LocalTransport()
    if host.transport.startswith("netns:"):
        return NetnsTransport(host.transport.split(":", 1)[1])
    return SshTransport(host)


def _strings(values: dict, key: str, where: str, example: str) -> list[str]:
    got = values.get(key, [])
    if not isinstance(got, list) or not all(isinstance(item, str) for item in got):
        raise SpecError(f"{where}.{key}: expected a list of strings like {example}, got {got!r}")
    return got


def _host(values: dict, index: int) -> Host:
    where = f"hosts[{index}]"
    if not isinstance(values, dict):
        raise SpecError(f"{where}: expected a mapping, got {values!r}")
    unknown = sorted(set(values) - _HOST_KEYS)
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_HOST_KEYS))}"
        )
    if not isinstance(values.get("address"), str):
        raise SpecError(f"{where}.address: required, the host's IP address (its peers listen on it)")
    transport = values.get("transport", "ssh")
    if transport not in ("ssh", "local") and not (
        isinstance(transport, str) and transport.startswith("netns:") and len(transport) > 6
    ):
        raise SpecError(f"{where}.transport: expected ssh, local or netns:<name>, got {transport!r}")
    peers = values.get("peers", 1)
    if not isinstance(peers, int) or isinstance(peers, bool) or peers < 1:
        raise SpecError(f"{where}.peers: expected an integer >= 1, got {peers!r}")
    devices = _strings(values, "devices", where, "[cuda:0, cuda:1]")
    ssh_options = _strings(values, "ssh_options", where, "[-i, ~/.ssh/swarm_key, -p, '2222']")
    for key in ("ssh", "workdir", "python"):
        if key in values and not isinstance(values[key], str):
            raise SpecError(f"{where}.{key}: expected a string, got {values[key]!r}")
    return Host(
        address=values["address"],
        transport=transport,
        ssh=values.get("ssh"),
        peers=peers,
        devices=tuple(devices),
        ssh_options=tuple(ssh_options),
        workdir=values.get("workdir", str(_REPO)),
        python=values.get("python", ".venv/bin/python"),
    )


def inventory_from_dict(values: dict, source: str | None = None) -> Inventory:
    if not isinstance(values, dict) or set(values) - {"hosts"}:
        raise SpecError("hosts inventory: expected a mapping with one key, hosts: [...]")
    hosts = values.get("hosts")
    if not isinstance(hosts, list) or not hosts:
        raise SpecError("hosts inventory: hosts must be a non-empty list")
    return Inventory(hosts=tuple(_host(h, i) for i, h in enumerate(hosts)), source=source)


def load_inventory(path: str | Path) -> Inventory:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"hosts inventory {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"hosts inventory {path} is not valid YAML: {exc}") from None
    return inventory_from_dict(values, str(path))


def place(plan: SwarmPlan, inventory: Inventory) -> tuple[SwarmPlan, dict[str, Transport], dict[str, str]]:
    """Assign the plan's peers to hosts in order; point each peer's listen address at its host.

    Returns the adjusted plan, peer id -> transport, and peer id -> host address.
    """
    if len(plan.peers) != inventory.total_peers:
        raise SpecError(
            f"the spec plans {len(plan.peers)} peers but the inventory hosts {inventory.total_peers}"
        )
    placed, transports, where = [], {}, {}
    peers = iter(plan.peers)
    for host in inventory.hosts:
        transport = transport_for(host)
        for slot in range(host.peers):
            peer: PeerPlan = next(peers)
            train = peer.config.train
            if host.devices:
                train = dataclasses.replace(train, device=host.devices[slot % len(host.devices)])
            gossip = dataclasses.replace(peer.config.gossip, listen=f"{host.address}:0")
            config = dataclasses.replace(peer.config, train=train, gossip=gossip)
            placed.append(dataclasses.replace(peer, config=config))
            transports[peer.peer_id] = transport
            where[peer.peer_id] = host.address
    return dataclasses.replace(plan, peers=tuple(placed)), transports, where
