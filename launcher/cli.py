"""The ``dssl`` console script: one entry point, sub-commands dispatched to their owners.

Peer-side commands (train, peer, join) live in ``peer.cli``; launcher commands (swarm, status,
demo, sweep, report) in this package. Sub-commands whose issue has not landed yet say so and exit 2.
"""

from __future__ import annotations

import argparse
import sys

_NOT_YET = {
    "peer": "the swarm issue (peer process with gossip and discovery)",
    "join": "the swarm issue (join a running swarm from another host)",
    "swarm": "the swarm issue (launcher for local and multi-host swarms)",
    "status": "the swarm issue (live swarm view from the DHT)",
    "sweep": "the robustness-study issue (sweep runner)",
    "report": "the robustness-study issue (Markdown + plots report)",
}


def _not_yet(name: str) -> int:
    print(f"dssl {name}: not yet available - it arrives with {_NOT_YET[name]}.", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ["train", "demo", *_NOT_YET]
    if not argv or argv[0] in ("-h", "--help"):
        parser = argparse.ArgumentParser(prog="dssl", description="Decentralised SSL swarm.")
        parser.add_argument("command", choices=commands)
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from peer.cli import train_main

        return train_main(rest)
    if command == "demo":
        from peer.cli import demo_main

        return demo_main(rest)
    if command in _NOT_YET:
        return _not_yet(command)
    print(f"dssl: unknown command {command!r}; choose one of: {', '.join(commands)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
