"""Peer-side commands of the ``dssl`` console script (dispatched from launcher/cli.py).

``dssl train --config examples/train_fmnist.yaml [--set section.key=value ...] [--resume CKPT]``
    Standalone single-peer training (the centralised / one-peer baseline). Writes a run directory
    ``runs/<timestamp>-<name>/`` (or ``train.run_dir``) with config.yaml (resolved), the partition
    report, metrics.jsonl, checkpoints/last.pt and final_eval.json.

``dssl demo --standalone``
    A short standalone run on real Fashion-MNIST that prints the kNN accuracy of the encoder at
    random initialisation and after training (plain ``dssl demo`` runs the 4-peer swarm demo).

``dssl peer --config peer.yaml [--bootstrap MADDR ...]``
    One swarm peer (:class:`peer.peer.Peer`): bootstraps a new swarm unless given --bootstrap/--peers.

``dssl join --bootstrap MADDR --swarm-id S [--config peer.yaml]``
    The same peer, joining a running swarm from another host (a bootstrap address is required).

``dssl status`` (the live swarm as the DHT sees it) is :mod:`peer.status`.

Overrides use dotted keys and YAML values: ``--set train.batch_size=64 --set objective.name=mae``.
Configuration and data problems end the command with one clear line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from gossip.address import host_port, is_loopback
from gossip.membership import parse_peer_list
from gossip.security import SecurityConfigError, load_secret, read_credentials
from peer.allocator import tune_malloc
from peer.atomic_file import write_json
from peer.config import Config, ConfigError, apply_overrides, config_from_dict, load_config, validate
from peer.metrics import read_metrics, setup_cli_logging
from peer.peer import Peer, PeerOptions
from peer.rundir import FINAL_EVAL_FILE, METRICS_FILE, READY_FILE

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_CONFIG = EXAMPLES / "demo_fmnist.yaml"


def _parser(prog: str, description: str, config_default: Path | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config",
        type=Path,
        default=config_default,
        help="YAML config file (keys: name, data, objective, train, eval, gossip)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.batch_size=64 (repeatable)",
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="output directory (default runs/<time>-<name>)"
    )
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
    write_json(run_dir / FINAL_EVAL_FILE, summary)
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
    tune_malloc()
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
    parser = _parser(
        "dssl demo", "Short standalone run on Fashion-MNIST: kNN accuracy before/after.", DEMO_CONFIG
    )
    args = parser.parse_args(argv)
    setup_cli_logging(not args.quiet)
    try:
        cfg = load_config(args.config, args.overrides)
        run_dir = _run_dir(cfg, args.run_dir)
        print(
            f"dssl demo: training {cfg.objective.name} on {cfg.data.dataset} "
            f"(budget {cfg.train.time_budget_s or '-'} s, {cfg.train.steps or '-'} steps); "
            f"run dir {run_dir}"
        )
        summary = _train(cfg, run_dir)
    except _user_errors() as exc:
        return _fail("dssl demo", exc)
    evals = {r["tag"]: r for r in read_metrics(run_dir / METRICS_FILE, kind="eval")}
    before, after = evals.get("init", {}), evals.get("final", {})
    for name, row in (("random init", before), ("trained", after)):
        print(
            f"dssl demo: {name:11s}  kNN {row.get('knn', float('nan')):.4f}  "
            f"linear probe {row.get('linear', float('nan')):.4f}"
        )
    print(
        f"RESULT steps={summary['step']} knn_acc={after.get('knn', float('nan')):.4f} "
        f"knn_acc_random_init={before.get('knn', float('nan')):.4f} run_dir={run_dir}"
    )
    return 0


# ---- dssl peer / dssl join ------------------------------------------------------------------------


def _peer_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    _config_args(p)
    _swarm_args(p)
    _process_args(p)
    _security_flags(p)
    p.add_argument("--quiet", action="store_true", help="only progress lines")
    return p


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default=None, help="peer config YAML (sections data, objective, train, eval, gossip)"
    )
    p.add_argument("--config-b64", default=None, help=argparse.SUPPRESS)  # remote launches: YAML, base64
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config value, e.g. --set train.steps=100 (repeatable)",
    )
    p.add_argument("--swarm-id", default=None, help="the swarm to join (gossip.swarm_id)")
    p.add_argument("--peer-id", default=None, help="this peer's id (gossip.peer_id)")
    p.add_argument("--listen", default=None, help="gRPC listen host:port (gossip.listen)")
    p.add_argument("--run-dir", default=None, help="output directory (train.run_dir)")


def _swarm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="MADDR",
        help="multiaddr of a running peer's DHT (repeatable); none = bootstrap a new swarm",
    )
    p.add_argument(
        "--bootstrap-file",
        default=None,
        metavar="READY_JSON",
        help="wait for another peer's ready.json (shared volume) and join through its multiaddrs",
    )
    p.add_argument("--peers", default=None, help="static peer list id@host:port,... (no DHT)")
    p.add_argument("--dht-port", type=int, default=0, help="DHT listen port (0 = any free port)")
    p.add_argument(
        "--dht-ttl-s", type=float, default=10.0, help="record expiry: a dead peer leaves within this"
    )
    p.add_argument(
        "--donors", type=int, default=2, help="late join: average the models of this many neighbours"
    )


def _process_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stop-deadline-s", type=float, default=30.0, help="SIGTERM -> gone within this many seconds"
    )
    p.add_argument(
        "--wait-peers", type=int, default=0, help="start barrier: train once this many peers are live"
    )
    p.add_argument("--wait-peers-timeout-s", type=float, default=300.0, help="... or after this many seconds")
    p.add_argument("--stop-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)


def _security_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tls-dir",
        default=None,
        metavar="DIR",
        help="mutual TLS on gossip: DIR holds ca.crt, <peer id>.crt, <peer id>.key (dssl swarm makes them)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gossip (debugging); without --tls-dir a non-loopback peer warns",
    )
    p.add_argument(
        "--swarm-secret-file",
        default=None,
        metavar="FILE",
        help="only peers holding this secret may pull or be pulled (or set $DSSL_SWARM_SECRET)",
    )
    p.add_argument(
        "--credentials-stdin",
        action="store_true",
        help="read this peer's TLS files and/or the swarm secret from one line on stdin "
        "(how dssl swarm --hosts ships them over ssh; kept in a private temp dir)",
    )


def _bootstrap_from_file(path: Path, timeout_s: float = 300.0) -> list[str]:
    """Multiaddrs from a bootstrap peer's ready.json on a shared volume (compose, Slurm, k8s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            maddrs = json.loads(path.read_text()).get("maddrs") or []
        except (OSError, json.JSONDecodeError):
            maddrs = []
        if maddrs:
            return list(maddrs)
        time.sleep(1.0)
    raise ConfigError(
        f"--bootstrap-file {path}: no {READY_FILE} with multiaddrs appeared within {timeout_s:.0f} s"
    )


def _load(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if args.bootstrap_file:
        args.bootstrap = [*args.bootstrap, *_bootstrap_from_file(Path(args.bootstrap_file))]
    shorthands = {
        "gossip.swarm_id": args.swarm_id,
        "gossip.peer_id": args.peer_id,
        "gossip.listen": args.listen,
        "train.run_dir": args.run_dir,
    }
    overrides += [f"{k}={json.dumps(v)}" for k, v in shorthands.items() if v is not None]
    if args.bootstrap:
        overrides.append(f"gossip.bootstrap={json.dumps(args.bootstrap)}")
    if args.peers:
        overrides.append(f"gossip.peers={json.dumps(args.peers.split(','))}")
    if args.config_b64:
        values = yaml.safe_load(base64.b64decode(args.config_b64).decode())
        cfg = config_from_dict(apply_overrides(values or {}, overrides))
        validate(cfg)
        return cfg
    return load_config(args.config, overrides)


def _check_bootstrap(maddrs: list[str]) -> None:
    """A malformed bootstrap multiaddr fails here, before the model is built or anything binds."""
    if maddrs:
        from gossip.discovery import check_initial_peer

        for maddr in maddrs:
            check_initial_peer(maddr)


def _security_args(prog: str, args: argparse.Namespace, cfg: Config, credentials_dir: Path) -> bytes | None:
    """Check the TLS / secret flags; returns the swarm secret (from its file, $DSSL_SWARM_SECRET or
    the stdin credentials line, whose TLS files land in ``credentials_dir``)."""
    if args.tls_dir and args.insecure:
        raise ConfigError("--tls-dir and --insecure contradict each other; pick one")
    if args.credentials_stdin:
        if args.tls_dir or args.swarm_secret_file:
            raise ConfigError("--credentials-stdin replaces --tls-dir and --swarm-secret-file; pass only one")
        tls_dir, secret = read_credentials(sys.stdin.buffer, credentials_dir)
        if tls_dir is not None and args.insecure:
            raise ConfigError("--credentials-stdin sent TLS files but --insecure was given; pick one")
        args.tls_dir = str(tls_dir) if tls_dir is not None else None
    else:
        secret = load_secret(args.swarm_secret_file)
    host, _ = host_port(cfg.gossip.listen)
    if not args.tls_dir and not args.insecure and not is_loopback(host):
        print(
            f"{prog}: warning: gossip on {cfg.gossip.listen} is plaintext; pass --tls-dir (certificates from "
            f"the swarm CA) or --insecure to silence this",
            file=sys.stderr,
        )
    return secret


def _options(args: argparse.Namespace, secret: bytes | None) -> PeerOptions:
    return PeerOptions(
        config_path=args.config,
        stop_deadline_s=args.stop_deadline_s,
        dht_port=args.dht_port,
        dht_ttl_s=args.dht_ttl_s,
        donors=args.donors,
        stop_on_stdin_eof=args.stop_on_stdin_eof,
        wait_peers=args.wait_peers,
        wait_peers_timeout_s=args.wait_peers_timeout_s,
        tls_dir=args.tls_dir,
        swarm_secret=secret,
    )


def _build_peer(prog: str, args: argparse.Namespace, credentials_dir: Path) -> Peer:
    """Config, bootstrap addresses and security flags checked; the peer built (nothing started)."""
    cfg = _load(args)
    if cfg.gossip.peers:
        parse_peer_list(",".join(cfg.gossip.peers))
    _check_bootstrap(cfg.gossip.bootstrap)
    secret = _security_args(prog, args, cfg, credentials_dir)
    return Peer(cfg, _options(args, secret))


def _watch_stdin(peer: Peer) -> None:
    """ssh launches: the launcher holding our stdin went away -> stop cleanly.

    It reads the raw file descriptor, never ``sys.stdin``: a thread blocked inside the buffered
    reader holds its lock, and a process forked meanwhile (hivemind's DHT) would deadlock closing
    its inherited ``sys.stdin`` at start, as would this interpreter's own shutdown."""

    def watch() -> None:
        while os.read(sys.stdin.fileno(), 4096):
            pass
        peer.request_stop("stdin closed")

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def _run(prog: str, args: argparse.Namespace) -> int:
    credentials_dir = Path(tempfile.mkdtemp(prefix="dssl-credentials-"))  # 0700; removed on the way out
    try:
        return _run_peer(prog, args, credentials_dir)
    finally:
        shutil.rmtree(credentials_dir, ignore_errors=True)


def _run_peer(prog: str, args: argparse.Namespace, credentials_dir: Path) -> int:
    setup_cli_logging(not args.quiet)
    tune_malloc()  # before the gossip threads exist: flat RSS over long runs
    try:
        peer = _build_peer(prog, args, credentials_dir)
    except (ConfigError, SecurityConfigError, ValueError, OSError, yaml.YAMLError) as exc:
        return _fail(prog, exc)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: peer.request_stop(signal.Signals(signum).name))
    if peer.options.stop_on_stdin_eof:
        _watch_stdin(peer)
    try:
        final = peer.run()
    except Exception as exc:
        from gossip.discovery import DiscoveryError
        from peer.data import DataError

        if isinstance(exc, (DiscoveryError, ConfigError, DataError, SecurityConfigError)):
            return _fail(prog, exc)
        raise
    _print_done(peer.peer_id, final)
    # Everything is written and closed. hivemind's DHT child and grpc's threads can stall interpreter
    # finalisation on a loaded machine, past the stop deadline; a peer process ends here.
    shutil.rmtree(credentials_dir, ignore_errors=True)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


def _print_done(peer_id: str, final: dict) -> None:
    knn = (final.get("eval_final") or {}).get("knn")
    print(
        f"[{peer_id}] done: {final.get('step')} steps, {final.get('round')} rounds"
        + (f", kNN {knn:.4f}" if knn is not None else "")
        + (f" (stopped by {final['stopped_by']})" if final.get("stopped_by") else ""),
        flush=True,
    )


def peer_main(argv: list[str]) -> int:
    """``dssl peer``: run one swarm peer from a config (bootstraps a swarm unless --bootstrap/--peers)."""
    parser = _peer_parser("dssl peer", "Run one peer of a gossip SSL swarm.")
    return _run("dssl peer", parser.parse_args(argv))


def join_main(argv: list[str]) -> int:
    """``dssl join --bootstrap MADDR --swarm-id S``: run a peer that joins an existing swarm."""
    parser = _peer_parser("dssl join", "Join a running swarm through one of its peers' multiaddrs.")
    args = parser.parse_args(argv)
    if not args.bootstrap and not args.peers and not args.bootstrap_file:
        parser.error("--bootstrap MADDR (printed by any running peer) is required to join")
    return _run("dssl join", args)
