"""Peer-side commands of the ``dssl`` console script (dispatched from launcher/cli.py).

``dssl train --config examples/train_fmnist.yaml [--set section.key=value ...] [--resume CKPT]``
    Standalone single-peer training (the centralised / one-peer baseline). Writes a run directory
    ``runs/<timestamp>-<name>/`` (or ``train.run_dir``) with config.yaml (resolved), the partition
    report, metrics.jsonl, checkpoints/last.pt and final_eval.json.

``dssl demo --standalone``
    A short standalone run on real Fashion-MNIST that prints the kNN accuracy of the encoder at
    random initialisation and after training (plain ``dssl demo`` runs the 4-peer swarm demo).

``dssl peer`` / ``dssl join`` / ``dssl status``
    The swarm peer process, joining a running swarm from another host, and the live swarm view;
    implemented in ``peer.peer`` and dispatched from here so the launcher only imports peer.cli.

Overrides use dotted keys and YAML values: ``--set train.batch_size=64 --set objective.name=mae``.
Configuration and data problems end the command with one clear line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

from peer.config import Config, ConfigError, load_config
from peer.metrics import setup_cli_logging

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_CONFIG = EXAMPLES / "demo_fmnist.yaml"


def _parser(prog: str, description: str, config_default: Path | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, default=config_default,
                        help="YAML config file (keys: name, data, objective, train, eval, gossip)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.batch_size=64 (repeatable)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="output directory (default runs/<time>-<name>)")
    parser.add_argument("--quiet", action="store_true", help="only progress lines and the summary")
    return parser


def _run_dir(cfg: Config, given: Path | None) -> Path:
    if given is not None:
        return given
    if cfg.train.run_dir:
        return Path(cfg.train.run_dir)
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}"


def _train(cfg: Config, run_dir: Path, resume: Path | None = None) -> dict:
    """Build the trainer, install SIGINT/SIGTERM -> request_stop, run, write final_eval.json."""
    from peer.trainer import Trainer  # late: keeps `dssl --help` fast

    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, run_dir=str(run_dir)))
    trainer = Trainer.create(cfg, hook=None, run_dir=run_dir)
    if resume is not None:
        trainer.resume(resume)
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda *_: trainer.request_stop()) for s in signals}
    try:
        summary = trainer.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    (run_dir / "final_eval.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _fail(prog: str, message: object) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the user's to fix (bad config, missing data): one line, exit 2."""
    from peer.data import DataError

    return (ConfigError, DataError, FileNotFoundError)


def train_main(argv: list[str]) -> int:
    """``dssl train``: standalone single-peer training; returns the exit code."""
    parser = _parser("dssl train", "Train one peer standalone (no gossip).", None)
    parser.add_argument("--resume", type=Path, default=None, help="continue from this checkpoint")
    args = parser.parse_args(argv)
    setup_cli_logging(not args.quiet)
    try:
        cfg = load_config(args.config, args.overrides)
        run_dir = _run_dir(cfg, args.run_dir)
        summary = _train(cfg, run_dir, args.resume)
    except _user_errors() as exc:
        return _fail("dssl train", exc)
    evals = summary.get("eval", {})
    scores = " ".join(f"{k}={v:.4f}" for k, v in evals.items() if isinstance(v, float) and k != "seconds")
    print(f"dssl train: {summary['step']} steps, {summary['round']} rounds, {scores}")
    print(f"dssl train: run directory {run_dir}")
    return 0


def demo_main(argv: list[str]) -> int:
    """``dssl demo``: a few minutes of real training on Fashion-MNIST, kNN before vs after."""
    parser = _parser("dssl demo", "Short standalone run on Fashion-MNIST: kNN accuracy before/after.",
                     DEMO_CONFIG)
    args = parser.parse_args(argv)
    setup_cli_logging(not args.quiet)
    try:
        cfg = load_config(args.config, args.overrides)
        run_dir = _run_dir(cfg, args.run_dir)
        print(f"dssl demo: training {cfg.objective.name} on {cfg.data.dataset} "
              f"(budget {cfg.train.time_budget_s or '-'} s, {cfg.train.steps or '-'} steps); "
              f"run dir {run_dir}")
        summary = _train(cfg, run_dir)
    except _user_errors() as exc:
        return _fail("dssl demo", exc)
    from peer.metrics import read_metrics

    evals = {r["tag"]: r for r in read_metrics(run_dir / "metrics.jsonl", kind="eval")}
    before, after = evals.get("init", {}), evals.get("final", {})
    for name, row in (("random init", before), ("trained", after)):
        print(f"dssl demo: {name:11s}  kNN {row.get('knn', float('nan')):.4f}  "
              f"linear probe {row.get('linear', float('nan')):.4f}")
    print(f"RESULT steps={summary['step']} knn_acc={after.get('knn', float('nan')):.4f} "
          f"knn_acc_random_init={before.get('knn', float('nan')):.4f} run_dir={run_dir}")
    return 0


def peer_main(argv: list[str]) -> int:
    """``dssl peer``: one swarm peer (trainer + gossip node + discovery)."""
    from peer.peer import main

    return main(argv)


def join_main(argv: list[str]) -> int:
    """``dssl join --bootstrap MADDR --swarm-id ID``: join a running swarm from this host."""
    from peer.peer import join_main as join

    return join(argv)


def status_main(argv: list[str]) -> int:
    """``dssl status``: the live swarm as the DHT sees it."""
    from peer.peer import status_main as status

    return status(argv)


def swarm_diagnostics(run_dir: str | Path) -> dict:
    """Swarm diagnostics of a run directory (realised W per round, spectral gap, |A-bar|, consensus
    distance); writes ``diagnostics.json`` and ``rounds.csv`` into it. The launcher's entry to
    :mod:`peer.diagnostics`."""
    from peer.diagnostics import write_diagnostics

    return write_diagnostics(run_dir)


def final_consensus_distance(run_dir: str | Path) -> float | None:
    """The exact consensus distance of a run's final parameters, on its own (no metrics needed)."""
    from peer.diagnostics import exact_consensus_distance

    return exact_consensus_distance(Path(run_dir))


def credentials_line(tls_dir: str | Path | None, peer_id: str, secret_file: str | Path | None) -> bytes:
    """The line ``dssl peer --credentials-stdin`` reads: ``peer_id``'s TLS files from ``tls_dir``
    and/or the swarm secret from ``secret_file`` (the launcher's entry to gossip.security, used to
    start peers on hosts that do not share our disk)."""
    from gossip.security import encode_credentials, load_secret

    secret = load_secret(secret_file) if secret_file is not None else None
    return encode_credentials(tls_dir, peer_id, secret)
