"""The peer process: one trainer, one gossip node and one discovery client, from one resolved config.

``dssl peer --config peer.yaml [--bootstrap MADDR ...]`` (the launcher's way) and
``dssl join --bootstrap MADDR --swarm-id S [--config peer.yaml]`` (a human on another host) both end in
:func:`main`. Life of a peer, top to bottom (:meth:`Peer.run`):

1. **start** — build the trainer (data, model; nothing is built in constructors), start discovery
   (hivemind DHT, or a static ``--peers`` list with no DHT), start the gossip runner (gRPC server +
   background loop) and announce ``{grpc address, round, layout fingerprint, capabilities}``. Then
   write ``ready.json`` into the run dir (the launcher polls it), print the ``dssl join`` command,
   and — for a swarm launched together — wait (bounded) until ``--wait-peers`` peers are live.
2. **catch up** — a restarted peer resumes its own checkpoint; a late joiner pulls the current model
   from several live neighbours (donors ranked by a hash of its own id, so different joiners load
   different donors, and the answering donors' snapshots are averaged), then adopts the swarm's round.
3. **train** — ``Trainer.run`` with the gossip runner as its hook (the runner re-announces our
   record with the new round to discovery after every round).
   The trainer prints one progress line per interval (peer, round, step, loss now/avg, images/s,
   neighbours answered/expected, last mix time, squared distance to the neighbours' mean).
4. **stop** — on budget, SIGINT or SIGTERM: finish the step, final checkpoint, ``final.json`` and the
   final flat parameters, leave the DHT, stop serving. A watchdog ends the process if a clean stop
   takes longer than ``--stop-deadline-s``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from gossip import topology
from gossip.client import call_pull, open_channel
from gossip.faults import CONTROL_FILE as FAULT_CONTROL_FILE
from gossip.membership import Membership, StaticMembership, parse_peer_list
from gossip.security import Security, SecurityConfigError, SwarmAuth, TLSFiles, load_secret, read_credentials
from peer.config import Config, ConfigError, apply_overrides, config_from_dict, load_config, validate
from peer.metrics import read_metrics, setup_cli_logging
from protocol import serde
from protocol.serde import PeerRecord

log = logging.getLogger(__name__)

READY_FILE = "ready.json"  # written once the peer serves; the launcher polls for it
FINAL_FILE = "final.json"  # summary written at the end (rounds, steps, evaluations)
PARAMS_FILE = "final_params.pt"  # final flat parameters (the launcher's consensus distance)
READY_MARKER = "DSSL-READY "  # the same content on stdout, for launchers that cannot read our disk
CAPABILITIES = ("fp16", "bf16", "embedding")
_WIRE = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
_RULES = {"metropolis": "metropolis_hastings", "uniform": "uniform"}
_WILDCARD = {"0.0.0.0", "::", "[::]", ""}


@dataclass(frozen=True)
class PeerOptions:
    """Process-level settings that are not part of the training config."""

    config_path: str | None = None  # where the config came from (printed in the join command)
    stop_deadline_s: float = 30.0  # a signalled peer must be gone within this (else hard exit)
    dht_port: int = 0  # DHT listen port (0 = any; fix it when a firewall needs a known port)
    dht_ttl_s: float = 10.0  # a silent peer leaves everyone's live set within this
    donors: int = 2  # a late joiner averages the model of up to this many neighbours
    stop_on_stdin_eof: bool = False  # stop when stdin closes (ssh launches: the launcher went away)
    wait_peers: int = 0  # start barrier: train only once this many peers are live (0 = at once)
    wait_peers_timeout_s: float = 300.0  # ... or after this long (then train with whoever is there)
    tls_dir: str | None = None  # swarm CA + this peer's certificate/key (launcher.certs): mutual TLS on gossip
    swarm_secret: bytes | None = field(default=None, repr=False)  # only holders may pull / be pulled


# ----------------------------------------------------------------------------------------------
# small helpers


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _maddr_host(maddr: str) -> str | None:
    parts = maddr.split("/")
    for family in ("ip4", "ip6"):
        if family in parts and parts.index(family) + 1 < len(parts):
            return parts[parts.index(family) + 1]
    return None


def _advertised_host(listen_host: str, maddrs: list[str]) -> str:
    """The address others dial: the listen host, or for a wildcard our first non-loopback address."""
    if listen_host not in _WILDCARD:
        return listen_host
    for maddr in maddrs:
        host = _maddr_host(maddr)
        if host and not host.startswith("127.") and host != "::1":
            return host
    return socket.gethostbyname(socket.gethostname())


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def donor_order(own_id: str, candidates: list[str], salt: int = 0) -> list[str]:
    """Candidates ranked by sha256(own id, candidate, salt): every joiner gets its own order, so
    state transfer spreads over the swarm instead of always hitting the lowest id."""
    def rank(candidate: str) -> str:
        return hashlib.sha256(f"{own_id}|{candidate}|{salt}".encode()).hexdigest()

    return sorted(candidates, key=rank)


# ----------------------------------------------------------------------------------------------
# state transfer for late joiners


async def _pull_newest(record: PeerRecord, cfg: Config, peer_id: str, fingerprint: str,
                       timeout: float, security: Security) -> serde.ReceivedSnapshot:
    request = serde.PullRequest(swarm_id=cfg.gossip.swarm_id, peer_id=peer_id, round=0, newest=True,
                                layout_fingerprint=fingerprint)
    expect = serde.Expectation(swarm_id=cfg.gossip.swarm_id, layout_fingerprint=fingerprint,
                               peer_id=record.peer_id)
    channel = open_channel(record.address, security.tls)
    try:
        snapshot, _ = await call_pull(channel, request, serde.SnapshotAssembler(expect), timeout, security.auth)
        return snapshot
    finally:
        await channel.close()


async def _pull_donors(donors: list[PeerRecord], cfg: Config, peer_id: str, fingerprint: str,
                       timeout: float, security: Security) -> list[tuple[PeerRecord, serde.ReceivedSnapshot]]:
    results = await asyncio.gather(*(_pull_newest(d, cfg, peer_id, fingerprint, timeout, security)
                                     for d in donors), return_exceptions=True)
    got = []
    for donor, result in zip(donors, results):
        if isinstance(result, BaseException):
            log.warning("state transfer from %s failed: %s", donor.peer_id, result)
        else:
            got.append((donor, result))
    return got


def fetch_swarm_state(live: list[PeerRecord], cfg: Config, peer_id: str, fingerprint: str,
                      donors: int, timeout: float,
                      security: Security = Security()) -> tuple[torch.Tensor, int, list[str]] | None:
    """Average the newest snapshots of up to ``donors`` live neighbours that have trained.

    Returns (flat params, the swarm's round, donor ids) or None when nobody has a model to give.
    Donors are tried in :func:`donor_order`; if all chosen donors fail, the next ones are tried.
    """
    others = {r.peer_id: r for r in live if r.peer_id != peer_id and r.round > 0
              and r.layout_fingerprint in ("", fingerprint)}
    if not others:
        return None
    swarm_round = max(r.round for r in others.values())
    order = [others[i] for i in donor_order(peer_id, list(others), salt=swarm_round)]
    for start in range(0, len(order), max(1, donors)):
        chosen = order[start:start + max(1, donors)]
        got = asyncio.run(_pull_donors(chosen, cfg, peer_id, fingerprint, timeout, security))
        if got:
            params = torch.stack([snap.params.float() for _, snap in got]).mean(dim=0)
            rounds = [snap.header.round for _, snap in got]
            return params, max(rounds), [d.peer_id for d, _ in got]
    return None


# ----------------------------------------------------------------------------------------------
# the peer


class Peer:
    """One swarm member. The constructor only stores; :meth:`run` does everything."""

    def __init__(self, cfg: Config, options: PeerOptions = PeerOptions()):
        self.cfg = cfg
        self.options = options
        self.peer_id = cfg.gossip.peer_id or f"peer-{cfg.data.peer_index}"
        self.run_dir = Path(cfg.train.run_dir) if cfg.train.run_dir else Path("runs") / self.peer_id
        self.trainer: Any = None
        self.membership: Membership | None = None
        self.runner: Any = None
        self.maddrs: list[str] = []
        self.join_command: str | None = None
        self.caught_up: dict[str, Any] = {"how": "fresh"}
        self._signal: str | None = None
        self._watchdog: threading.Thread | None = None
        self.security = self._security()

    def _security(self) -> Security:
        """Mutual TLS and/or the swarm secret, from the options (files checked now: fail before start)."""
        o = self.options
        tls = TLSFiles.from_dir(o.tls_dir, self.peer_id) if o.tls_dir else None
        auth = SwarmAuth(o.swarm_secret, self.cfg.gossip.swarm_id) if o.swarm_secret else None
        return Security(tls=tls, auth=auth)

    # -- start ------------------------------------------------------------------------------------

    def _start_membership(self) -> Membership:
        g = self.cfg.gossip
        if g.peers:
            return StaticMembership(parse_peer_list(",".join(g.peers)))
        from gossip.discovery import DHTDiscovery, DiscoveryConfig

        host, _ = _host_port(g.listen)
        discovery = DHTDiscovery.start(DiscoveryConfig(
            swarm_id=g.swarm_id, host=host or "127.0.0.1", port=self.options.dht_port,
            initial_peers=list(g.bootstrap), ttl_s=self.options.dht_ttl_s))
        self.maddrs = list(discovery.visible_maddrs)
        extra = f"--config {shlex.quote(self.options.config_path)}" if self.options.config_path else ""
        self.join_command = discovery.join_command(extra)
        return discovery

    def _start_runner(self) -> Any:
        from gossip.node import NodeConfig
        from gossip.runner import GossipRunner

        g = self.cfg.gossip
        listen_host, listen_port = _host_port(g.listen)
        advertise = None
        if listen_host in _WILDCARD:
            if listen_port == 0:
                raise ConfigError("gossip.listen: a wildcard host needs a fixed port (e.g. 0.0.0.0:7000) so the "
                                  "advertised address is known before binding")
            advertise = f"{_advertised_host(listen_host, self.maddrs)}:{listen_port}"
        node_config = NodeConfig(swarm_id=g.swarm_id, peer_id=self.peer_id,
                                 layout_fingerprint=self.trainer.layout.fingerprint, listen=g.listen,
                                 advertise_address=advertise, mode=g.mode, pull_deadline_s=g.deadline_s,
                                 wire_dtype=_WIRE[g.wire_dtype], tls=self.security.tls,
                                 swarm_secret=self.options.swarm_secret, aggregation=g.aggregation,
                                 trim_fraction=g.trim_fraction, max_norm_ratio=g.max_norm_ratio,
                                 max_distance_ratio=g.max_distance_ratio,
                                 fault_control=str(self.run_dir / FAULT_CONTROL_FILE))  # launcher-injected faults
        return GossipRunner.start(node_config, self.membership, topology.parse(g.topology),
                                  rule=_RULES.get(g.mixing, g.mixing), seed=self.cfg.train.seed)

    def start(self) -> None:
        """Build everything, serve, announce, write ready.json; then catch up with the swarm."""
        from peer.trainer import Trainer  # late: `dssl --help` stays fast

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.trainer = Trainer.create(self.cfg, hook=None, run_dir=self.run_dir, peer_id=self.peer_id)
        self.membership = self._start_membership()
        self.runner = self._start_runner()
        self.trainer.hook = self.runner  # it re-announces our record with the new round every round
        self._write_ready()
        self._wait_for_peers()
        self._catch_up()
        self.membership.announce(PeerRecord(peer_id=self.peer_id, address=self.runner.address,
                                            round=self.trainer.round, capabilities=CAPABILITIES,
                                            layout_fingerprint=self.trainer.layout.fingerprint))

    def _wait_for_peers(self) -> None:
        """Start barrier of a freshly launched swarm: wait (bounded) until ``wait_peers`` are live."""
        want = self.options.wait_peers
        if want <= 1:
            return
        deadline = time.monotonic() + self.options.wait_peers_timeout_s
        live = self.membership.live_peers()
        while len(live) < want and self._signal is None and time.monotonic() < deadline:
            time.sleep(0.5)
            live = self.membership.live_peers()
        if len(live) < want:
            log.warning("%s: only %d of %d peers live after %.0f s; training with them", self.peer_id, len(live),
                        want, self.options.wait_peers_timeout_s)
        else:
            print(f"[{self.peer_id}] {len(live)} peers live: {', '.join(r.peer_id for r in live)}", flush=True)

    def _catch_up(self) -> None:
        """Resume our own checkpoint, else pull the swarm's model from several neighbours."""
        checkpoint = self.run_dir / "checkpoints" / "last.pt"
        live = self.membership.live_peers()
        swarm_round = max((r.round for r in live if r.peer_id != self.peer_id), default=0)
        if checkpoint.is_file():
            self.trainer.resume(checkpoint)
            self.caught_up = {"how": "checkpoint", "step": self.trainer.step, "round": self.trainer.round}
        else:
            fetched = fetch_swarm_state(live, self.cfg, self.peer_id, self.trainer.layout.fingerprint,
                                        self.options.donors, timeout=max(5.0, self.cfg.gossip.deadline_s * 3),
                                        security=self.security)
            if fetched is not None:
                params, donor_round, donors = fetched
                self.trainer.load_flat_params(params)
                swarm_round = max(swarm_round, donor_round)
                self.caught_up = {"how": "pulled", "donors": donors, "round": donor_round}
        if swarm_round > self.trainer.round:
            self.trainer.set_round(swarm_round)
            self.caught_up["joined_round"] = swarm_round
        if self.caught_up["how"] != "fresh" or swarm_round:
            print(f"[{self.peer_id}] caught up: {json.dumps(self.caught_up)}", flush=True)

    def _write_ready(self) -> None:
        info = {"peer_id": self.peer_id, "swarm_id": self.cfg.gossip.swarm_id, "address": self.runner.address,
                "maddrs": self.maddrs, "join_command": self.join_command, "pid": os.getpid(),
                "host": socket.gethostname(), "round": self.trainer.round, "caught_up": self.caught_up,
                "layout_fingerprint": self.trainer.layout.fingerprint, "security": self.security.description,
                "time": time.time()}
        _write_json_atomic(self.run_dir / READY_FILE, info)
        if self.join_command:
            print(f"[{self.peer_id}] serving gossip on {self.runner.address}; another host joins with:\n"
                  f"  {self.join_command}", flush=True)
        else:
            print(f"[{self.peer_id}] serving gossip on {self.runner.address} (static peer list)", flush=True)
        print(READY_MARKER + json.dumps(info, default=str), flush=True)

    # -- stop -------------------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Ask for a clean stop (signal-handler safe); a watchdog enforces the deadline."""
        if self._signal is not None:
            return
        self._signal = reason
        if self.trainer is not None:
            self.trainer.request_stop()
        self._watchdog = threading.Thread(target=self._enforce_deadline, name="stop-watchdog", daemon=True)
        self._watchdog.start()

    def _enforce_deadline(self) -> None:
        time.sleep(self.options.stop_deadline_s)
        print(f"[{self.peer_id}] clean stop took longer than {self.options.stop_deadline_s:g} s: exiting now",
              file=sys.stderr, flush=True)
        os._exit(3)

    def close(self) -> None:
        """Leave the DHT and stop serving (each step bounded by its own timeout). Idempotent."""
        runner, self.runner = self.runner, None
        membership, self.membership = self.membership, None
        if membership is not None:
            try:
                membership.close()  # leave first, so nobody picks us as a neighbour any more
            except Exception:
                log.warning("closing discovery failed", exc_info=True)
        if runner is not None:
            try:
                runner.close()
            except Exception:
                log.warning("closing the gossip runner failed", exc_info=True)

    # -- the whole life ---------------------------------------------------------------------------

    def run(self) -> dict:
        """start -> catch up -> train -> final outputs -> close. Returns the final summary."""
        try:
            self.start()
            if self._signal is None:
                summary = self.trainer.run(final_eval=False)  # ends with the final checkpoint
                if self._signal is None and self.trainer.data.bank is not None:
                    summary["eval"] = self.trainer.evaluate(tag="final")
            else:  # signalled while starting: keep what we have
                summary = {"peer": self.peer_id, "step": self.trainer.step, "round": self.trainer.round,
                           "checkpoint": str(self.trainer.save_checkpoint())}
            return self._write_final(summary)
        finally:
            self.close()

    def _write_final(self, summary: dict) -> dict:
        params = self.trainer.flat_params()
        torch.save({"params": params, "fingerprint": self.trainer.layout.fingerprint},
                   self.run_dir / PARAMS_FILE)
        evals = {}
        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file():
            evals = {r.get("tag"): r for r in read_metrics(metrics, kind="eval")}
        final = {**summary, "peer_id": self.peer_id, "stopped_by": self._signal, "caught_up": self.caught_up,
                 "eval_init": evals.get("init"), "eval_final": evals.get("final"),
                 "params": str(self.run_dir / PARAMS_FILE)}
        _write_json_atomic(self.run_dir / FINAL_FILE, final)
        return final


# ----------------------------------------------------------------------------------------------
# command line


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", default=None, help="peer config YAML (sections data, objective, train, eval, gossip)")
    p.add_argument("--config-b64", default=None, help=argparse.SUPPRESS)  # remote launches: YAML, base64
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--bootstrap", action="append", default=[], metavar="MADDR",
                   help="multiaddr of a running peer's DHT (repeatable); none = bootstrap a new swarm")
    p.add_argument("--bootstrap-file", default=None, metavar="READY_JSON",
                   help="wait for another peer's ready.json (shared volume) and join through its multiaddrs")
    p.add_argument("--peers", default=None, help="static peer list id@host:port,... (no DHT)")
    p.add_argument("--swarm-id", default=None, help="the swarm to join (gossip.swarm_id)")
    p.add_argument("--peer-id", default=None, help="this peer's id (gossip.peer_id)")
    p.add_argument("--listen", default=None, help="gRPC listen host:port (gossip.listen)")
    p.add_argument("--run-dir", default=None, help="output directory (train.run_dir)")
    p.add_argument("--dht-port", type=int, default=0, help="DHT listen port (0 = any free port)")
    p.add_argument("--dht-ttl-s", type=float, default=10.0, help="record expiry: a dead peer leaves within this")
    p.add_argument("--stop-deadline-s", type=float, default=30.0, help="SIGTERM -> gone within this many seconds")
    p.add_argument("--donors", type=int, default=2, help="late join: average the models of this many neighbours")
    p.add_argument("--wait-peers", type=int, default=0, help="start barrier: train once this many peers are live")
    p.add_argument("--wait-peers-timeout-s", type=float, default=300.0, help="... or after this many seconds")
    p.add_argument("--stop-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tls-dir", default=None, metavar="DIR",
                   help="mutual TLS on gossip: DIR holds ca.crt, <peer id>.crt, <peer id>.key (dssl swarm makes them)")
    p.add_argument("--insecure", action="store_true",
                   help="plaintext gossip (debugging); without --tls-dir a non-loopback peer warns")
    p.add_argument("--swarm-secret-file", default=None, metavar="FILE",
                   help="only peers holding this secret may pull or be pulled (or set $DSSL_SWARM_SECRET)")
    p.add_argument("--credentials-stdin", action="store_true",
                   help="read this peer's TLS files and/or the swarm secret from one line on stdin "
                        "(how dssl swarm --hosts ships them over ssh; kept in a private temp dir)")
    p.add_argument("--quiet", action="store_true", help="only progress lines")
    return p


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
    raise ConfigError(f"--bootstrap-file {path}: no ready.json with multiaddrs appeared within {timeout_s:.0f} s")


def _load(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    if args.bootstrap_file:
        args.bootstrap = [*args.bootstrap, *_bootstrap_from_file(Path(args.bootstrap_file))]
    shorthands = {"gossip.swarm_id": args.swarm_id, "gossip.peer_id": args.peer_id,
                  "gossip.listen": args.listen, "train.run_dir": args.run_dir}
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
    host, _ = _host_port(cfg.gossip.listen)
    if not args.tls_dir and not args.insecure and not (host.startswith("127.") or host in ("::1", "localhost")):
        print(f"{prog}: warning: gossip on {cfg.gossip.listen} is plaintext; pass --tls-dir (certificates from "
              f"the swarm CA) or --insecure to silence this", file=sys.stderr)
    return secret


def _watch_stdin(peer: Peer) -> None:
    """ssh launches: the launcher holding our stdin went away -> stop cleanly."""
    def watch() -> None:
        while sys.stdin.buffer.read(4096):
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
    try:
        cfg = _load(args)
        if cfg.gossip.peers:
            parse_peer_list(",".join(cfg.gossip.peers))
        _check_bootstrap(cfg.gossip.bootstrap)
        secret = _security_args(prog, args, cfg, credentials_dir)
        options = PeerOptions(config_path=args.config, stop_deadline_s=args.stop_deadline_s, dht_port=args.dht_port,
                              dht_ttl_s=args.dht_ttl_s, donors=args.donors, stop_on_stdin_eof=args.stop_on_stdin_eof,
                              wait_peers=args.wait_peers, wait_peers_timeout_s=args.wait_peers_timeout_s,
                              tls_dir=args.tls_dir, swarm_secret=secret)
        peer = Peer(cfg, options)
    except (ConfigError, SecurityConfigError, ValueError, OSError, yaml.YAMLError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: peer.request_stop(signal.Signals(signum).name))
    if options.stop_on_stdin_eof:
        _watch_stdin(peer)
    try:
        final = peer.run()
    except Exception as exc:
        from gossip.discovery import DiscoveryError
        from peer.data import DataError

        if isinstance(exc, (DiscoveryError, ConfigError, DataError, SecurityConfigError)):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        raise
    knn = (final.get("eval_final") or {}).get("knn")
    print(f"[{peer.peer_id}] done: {final.get('step')} steps, {final.get('round')} rounds"
          + (f", kNN {knn:.4f}" if knn is not None else "")
          + (f" (stopped by {final['stopped_by']})" if final.get("stopped_by") else ""), flush=True)
    # Everything is written and closed. hivemind's DHT child and grpc's threads can stall interpreter
    # finalisation on a loaded machine, past the stop deadline; a peer process ends here.
    shutil.rmtree(credentials_dir, ignore_errors=True)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


def main(argv: list[str]) -> int:
    """``dssl peer``: run one swarm peer from a config (bootstraps a swarm unless --bootstrap/--peers)."""
    parser = _parser("dssl peer", "Run one peer of a gossip SSL swarm.")
    return _run("dssl peer", parser.parse_args(argv))


def join_main(argv: list[str]) -> int:
    """``dssl join --bootstrap MADDR --swarm-id S``: run a peer that joins an existing swarm."""
    parser = _parser("dssl join", "Join a running swarm through one of its peers' multiaddrs.")
    args = parser.parse_args(argv)
    if not args.bootstrap and not args.peers and not args.bootstrap_file:
        parser.error("--bootstrap MADDR (printed by any running peer) is required to join")
    return _run("dssl join", args)


def status_main(argv: list[str]) -> int:
    """``dssl status --bootstrap MADDR --swarm-id S``: the live swarm as the DHT sees it."""
    from gossip.discovery import DHTDiscovery, DiscoveryConfig, DiscoveryError, quiet_hivemind

    p = argparse.ArgumentParser(prog="dssl status", description="Show the live peers of a swarm (from the DHT).")
    p.add_argument("--bootstrap", action="append", required=True, metavar="MADDR", help="any peer's multiaddr")
    p.add_argument("--swarm-id", required=True, help="the swarm's id")
    p.add_argument("--host", default=None, help="local address for our DHT client (default: from the multiaddr)")
    p.add_argument("--ttl-s", type=float, default=10.0, help="the swarm's record ttl (for the heartbeat age)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    quiet_hivemind(logging.ERROR)
    host = args.host or _maddr_host(args.bootstrap[0]) or "127.0.0.1"
    if not host.startswith("127.") and host != "::1" and args.host is None:
        host = "0.0.0.0"
    try:
        discovery = DHTDiscovery.start(DiscoveryConfig(swarm_id=args.swarm_id, host=host,
                                                       initial_peers=args.bootstrap, client_mode=True,
                                                       ttl_s=args.ttl_s))
    except (DiscoveryError, ValueError) as exc:
        print(f"dssl status: error: {exc}", file=sys.stderr)
        return 2
    try:
        rows = discovery.status()
    finally:
        discovery.close()
    now = time.time()
    peers = [{"peer_id": r.peer_id, "round": r.round, "address": r.address,
              "fingerprint": r.layout_fingerprint[:12], "capabilities": list(r.capabilities),
              "last_heartbeat_s_ago": round(max(0.0, now - (expiration - args.ttl_s)), 1)} for r, expiration in rows]
    if args.json:
        print(json.dumps({"swarm_id": args.swarm_id, "peers": peers}, indent=2))
        return 0
    print(f"swarm {args.swarm_id}: {len(peers)} live peer(s)")
    print(f"{'peer':16s} {'round':>6s} {'address':22s} {'layout':12s} {'heartbeat':>10s}")
    for row in peers:
        print(f"{row['peer_id']:16s} {row['round']:6d} {row['address']:22s} {row['fingerprint']:12s} "
              f"{row['last_heartbeat_s_ago']:8.1f}s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
