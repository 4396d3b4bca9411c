"""The ``dssl`` console script: one entry point, sub-commands dispatched to their owners.

Peer-side commands (train, peer, join, status) live in ``peer.cli``; launcher commands (swarm,
demo) in this package (``launcher.swarm``), ``report`` in ``launcher.report``, ``sweep`` in
``launcher.sweep``.

``dssl status`` also accepts ``--run-dir RUN`` and reads the bootstrap multiaddr and swarm id from
that run's ``peers/*/ready.json`` files before asking the DHT.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

_PEER_SIDE = {"train": "train_main", "peer": "peer_main", "join": "join_main", "status": "status_main"}
_LAUNCHER = {"swarm": "swarm_main", "demo": "demo_main"}
_REPORT = "report"  # launcher.report (a run directory) or launcher.study_report (a sweep directory)
_CERTS = "certs"  # launcher.certs: a certificate for a peer joining a TLS swarm from another host
_SWEEP = "sweep"  # launcher.sweep: a grid of swarm runs, resumable, one results table


def _status_args(rest: list[str]) -> list[str] | None:
    """Turn ``--run-dir RUN`` into ``--bootstrap MADDR --swarm-id ID`` from the run's ready files."""
    if "--run-dir" not in rest:
        return rest
    i = rest.index("--run-dir")
    if i + 1 >= len(rest):
        print("dssl status: --run-dir needs a path", file=sys.stderr)
        return None
    run_dir = Path(rest[i + 1])
    others = rest[:i] + rest[i + 2:]
    for ready in sorted(run_dir.glob("peers/*/ready.json")):
        info = json.loads(ready.read_text())
        if info.get("maddrs"):
            extra = ["--swarm-id", info["swarm_id"]] if "--swarm-id" not in others else []
            return [*others, *extra, *[a for m in info["maddrs"] for a in ("--bootstrap", m)]]
    print(f"dssl status: no peer of {run_dir} has written a ready.json with multiaddrs", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = [*_PEER_SIDE, *_LAUNCHER, _REPORT, _SWEEP, _CERTS]
    if not argv or argv[0] in ("-h", "--help"):
        parser = argparse.ArgumentParser(prog="dssl", description="Decentralised SSL swarm.")
        parser.add_argument("command", choices=commands)
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in _PEER_SIDE:
        import peer.cli

        if command == "status":
            rest = _status_args(rest)
            if rest is None:
                return 2
        entry = getattr(peer.cli, _PEER_SIDE[command], None)
        if entry is None:
            print(f"dssl {command}: peer.cli has no {_PEER_SIDE[command]}() yet", file=sys.stderr)
            return 2
        return entry(rest)
    if command == "demo" and "--standalone" in rest:
        import peer.cli

        return peer.cli.demo_main([a for a in rest if a != "--standalone"])
    if command in _LAUNCHER:
        import launcher.swarm

        return getattr(launcher.swarm, _LAUNCHER[command])(rest)
    if command == _REPORT:
        if rest and not rest[0].startswith("-") and (Path(rest[0]) / "results.csv").is_file():
            import launcher.study_report  # a sweep directory

            return launcher.study_report.study_report_main(rest)
        import launcher.report

        return launcher.report.report_main(rest)
    if command == _SWEEP:
        import launcher.sweep

        return launcher.sweep.sweep_main(rest)
    if command == _CERTS:
        import launcher.certs

        return launcher.certs.certs_main(rest)
    print(f"dssl: unknown command {command!r}; choose one of: {', '.join(commands)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
