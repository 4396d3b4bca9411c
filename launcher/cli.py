"""The ``dssl`` console script: one entry point, sub-commands dispatched to their owners.

Peer-side commands (train, peer, join, status) live in ``peer.cli``; swarm, demo and consensus in
``launcher.swarm``, sweep in ``launcher.sweep``, certs in ``launcher.certs``, report (a run or a
sweep directory) and the claims ledger in ``analysis``. ``dssl --help`` lists them with one line each.

``dssl status`` also accepts ``--run-dir RUN`` and reads the bootstrap multiaddr and swarm id from
that run's ``peers/*/ready.json`` files before asking the DHT.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from peer.rundir import PEERS_DIR, READY_FILE


@dataclass(frozen=True)
class Command:
    """A sub-command: its one-line description and the ``module:function(argv) -> int`` it runs."""

    help: str
    entry: str


COMMANDS = {
    "train": Command("train one model alone (no gossip): the single-peer baseline", "peer.cli:train_main"),
    "peer": Command("run one swarm peer: train + gossip with its neighbours", "peer.cli:peer_main"),
    "join": Command("join a running swarm from this host through a bootstrap peer", "peer.cli:join_main"),
    "status": Command(
        "list the peers of a running swarm (from its DHT, or --run-dir RUN)", "peer.status:status_main"
    ),
    "swarm": Command(
        "start a swarm on this host or on the hosts of an inventory", "launcher.swarm:swarm_main"
    ),
    "demo": Command(
        "the 8-peer Fashion-MNIST demo swarm (--standalone: one process)", "launcher.demo:demo_main"
    ),
    "report": Command(
        "Markdown report with plots of a run directory or a sweep directory", "analysis.cli:report_main"
    ),
    "claims": Command(
        "stack several study reports' claims.csv into one ledger of the paper's claims",
        "analysis.ledger:ledger_main",
    ),
    "consensus": Command(
        "evaluate the consensus model of a swarm run (kNN, linear, fine-tune)",
        "launcher.swarm:consensus_main",
    ),
    "baselines": Command(
        "train a swarm run's peers alone and one centralised model, and compare with the swarm",
        "launcher.baselines:baselines_main",
    ),
    "sweep": Command(
        "run a grid of swarm runs, resumable, into one results table", "launcher.sweep:sweep_main"
    ),
    "certs": Command(
        "issue a TLS certificate for a peer joining a TLS swarm later", "launcher.certs:certs_main"
    ),
}


def _status_args(rest: list[str]) -> list[str] | None:
    """Turn ``--run-dir RUN`` into ``--bootstrap MADDR --swarm-id ID`` from the run's ready files."""
    if "--run-dir" not in rest:
        return rest
    i = rest.index("--run-dir")
    if i + 1 >= len(rest):
        print("dssl status: --run-dir needs a path", file=sys.stderr)
        return None
    run_dir = Path(rest[i + 1])
    others = rest[:i] + rest[i + 2 :]
    for ready in sorted(run_dir.glob(f"{PEERS_DIR}/*/{READY_FILE}")):
        info = json.loads(ready.read_text())
        if info.get("maddrs"):
            extra = ["--swarm-id", info["swarm_id"]] if "--swarm-id" not in others else []
            return [*others, *extra, *[a for m in info["maddrs"] for a in ("--bootstrap", m)]]
    print(f"dssl status: no peer of {run_dir} has written a {READY_FILE} with multiaddrs", file=sys.stderr)
    return None


def _help_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dssl",
        description="Decentralised self-supervised learning: a swarm of peers that train and gossip.",
        epilog="`dssl COMMAND --help` describes each command's options.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, command in COMMANDS.items():
        commands.add_parser(name, help=command.help)
    return parser


def _entry(command: str, rest: list[str]):
    """The function that runs ``command`` and the arguments it gets (None: refused, already said)."""
    if command == "demo" and "--standalone" in rest:
        return _entry_of("peer.cli:demo_main"), [a for a in rest if a != "--standalone"]
    if command == "status" and (rest := _status_args(rest)) is None:
        return None, rest
    return _entry_of(COMMANDS[command].entry), rest


def _entry_of(entry: str):
    module, _, function = entry.partition(":")
    return getattr(importlib.import_module(module), function)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        _help_parser().print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"dssl: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    entry, rest = _entry(command, rest)
    try:
        return 2 if entry is None else entry(rest)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM / SIGHUP where a command turns them into one
        print(f"dssl {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
