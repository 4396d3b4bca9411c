"""The peer process: one trainer, one gossip node and one discovery client, from one resolved config.

``dssl peer --config peer.yaml [--bootstrap MADDR ...]`` (the launcher's way) and
``dssl join --bootstrap MADDR --swarm-id S [--config peer.yaml]`` (a human on another host) both build
one :class:`Peer` (their command lines live in :mod:`peer.cli`). Life of a peer, top to bottom
(:meth:`Peer.run`):

1. **start** — build the trainer (data, model; nothing is built in constructors), start discovery
   (hivemind DHT, or a static ``--peers`` list with no DHT), start the gossip runner (gRPC server +
   background loop) and announce ``{grpc address, round, layout fingerprint, capabilities}``. Then
   write ``ready.json`` into the run dir (the launcher polls it), print the ``dssl join`` command,
   and — for a swarm launched together — wait (bounded) until ``--wait-peers`` peers are live.
2. **catch up** — a restarted peer resumes its own checkpoint; a late joiner pulls the current model
   from several live neighbours (:mod:`gossip.state_transfer`: donors ranked by a hash of its own id,
   the answering donors' snapshots averaged), then adopts the swarm's round.
3. **train** — ``Trainer.run`` with the gossip runner as its hook (the runner re-announces our
   record with the new round to discovery after every round).
   The trainer prints one progress line per interval (peer, round, step, loss now/avg, images/s,
   neighbours answered/expected, last mix time, squared distance to the neighbours' mean).
4. **stop** — on budget, SIGINT or SIGTERM: finish the step, final checkpoint, ``final.json`` and the
   final flat parameters, leave the DHT, stop serving. A watchdog ends the process if a clean stop
   takes longer than ``--stop-deadline-s``.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gossip import topology
from gossip.adaptive_deadline import AUTO, AdaptiveDeadline
from gossip.address import WILDCARD_HOSTS, advertised_host, host_port
from gossip.membership import Membership, StaticMembership, parse_peer_list
from gossip.security import Security, SwarmAuth, TLSFiles
from gossip.state_transfer import fetch_swarm_state
from peer.atomic_file import write_json
from peer.config import Config, ConfigError, GossipConfig
from peer.metrics import read_metrics
from peer.rundir import (
    FAULT_CONTROL_FILE,
    FINAL_FILE,
    METRICS_FILE,
    PARAMS_FILE,
    READY_FILE,
    READY_MARKER,
    checkpoint_path,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
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
    tls_dir: str | None = None  # swarm CA + this peer's certificate/key: mutual TLS on gossip
    swarm_secret: bytes | None = field(default=None, repr=False)  # only holders may pull / be pulled


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
        self._stop_requested_at: float | None = None  # monotonic time of the stop request
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

        host, _ = host_port(g.listen)
        discovery = DHTDiscovery.start(
            DiscoveryConfig(
                swarm_id=g.swarm_id,
                host=host or "127.0.0.1",
                port=self.options.dht_port,
                initial_peers=list(g.bootstrap),
                ttl_s=self.options.dht_ttl_s,
            )
        )
        self.maddrs = list(discovery.visible_maddrs)
        extra = f"--config {shlex.quote(self.options.config_path)}" if self.options.config_path else ""
        self.join_command = discovery.join_command(extra)
        return discovery

    def _advertised_address(self, listen: str) -> str | None:
        """The address neighbours dial when we listen on a wildcard host (None: the bound one)."""
        listen_host, listen_port = host_port(listen)
        if listen_host not in WILDCARD_HOSTS:
            return None
        if listen_port == 0:
            raise ConfigError(
                "gossip.listen: a wildcard host needs a fixed port (e.g. 0.0.0.0:7000) so the "
                "advertised address is known before binding"
            )
        return f"{advertised_host(listen_host, self.maddrs)}:{listen_port}"

    def _start_runner(self) -> Any:
        from gossip.node import NodeConfig
        from gossip.runner import GossipRunner

        g = self.cfg.gossip
        advertise = self._advertised_address(g.listen)
        node_config = NodeConfig(
            swarm_id=g.swarm_id,
            peer_id=self.peer_id,
            layout_fingerprint=self.trainer.layout.fingerprint,
            listen=g.listen,
            advertise_address=advertise,
            mode=g.mode,
            pull_deadline_s=g.pull_deadline_s,  # with deadline_s: auto, the ceiling of the adaptive ones
            adaptive_deadline=_adaptive_deadline(g),
            wire_dtype=g.wire_dtype,
            tls=self.security.tls,
            swarm_secret=self.options.swarm_secret,
            aggregation=g.aggregation,
            trim_fraction=g.trim_fraction,
            max_norm_ratio=g.max_norm_ratio,
            max_distance_ratio=g.max_distance_ratio,
            fault_control=str(self.run_dir / FAULT_CONTROL_FILE) if g.fault_injection else None,
            compression=g.compression,
            topk_fraction=g.topk_fraction,
            choco_gamma=g.choco_gamma,
        )
        return GossipRunner.start(
            node_config,
            self.membership,
            topology.parse(g.topology),
            rule=g.mixing,
            seed=self.cfg.train.seed,
        )

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
        self.runner.announce(self.trainer.round)

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
            log.warning(
                "%s: only %d of %d peers live after %.0f s; training with them",
                self.peer_id,
                len(live),
                want,
                self.options.wait_peers_timeout_s,
            )
        else:
            print(
                f"[{self.peer_id}] {len(live)} peers live: {', '.join(r.peer_id for r in live)}", flush=True
            )

    def _catch_up(self) -> None:
        """Resume our own checkpoint, else pull the swarm's model from several neighbours."""
        checkpoint = checkpoint_path(self.run_dir)
        live = self.membership.live_peers()
        swarm_round = max((r.round for r in live if r.peer_id != self.peer_id), default=0)
        if checkpoint.is_file():
            self.trainer.resume(checkpoint)
            self.caught_up = {"how": "checkpoint", "step": self.trainer.step, "round": self.trainer.round}
        else:
            fetched = fetch_swarm_state(
                live,
                swarm_id=self.cfg.gossip.swarm_id,
                peer_id=self.peer_id,
                fingerprint=self.trainer.layout.fingerprint,
                donors=self.options.donors,
                timeout=max(5.0, self.cfg.gossip.pull_deadline_s * 3),
                security=self.security,
            )
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
        info = {
            "peer_id": self.peer_id,
            "swarm_id": self.cfg.gossip.swarm_id,
            "address": self.runner.address,
            "maddrs": self.maddrs,
            "join_command": self.join_command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "round": self.trainer.round,
            "caught_up": self.caught_up,
            "layout_fingerprint": self.trainer.layout.fingerprint,
            "security": self.security.description,
            "time": time.time(),
        }
        write_json(self.run_dir / READY_FILE, info)
        if self.join_command:
            print(
                f"[{self.peer_id}] serving gossip on {self.runner.address}; another host joins with:\n"
                f"  {self.join_command}",
                flush=True,
            )
        else:
            print(f"[{self.peer_id}] serving gossip on {self.runner.address} (static peer list)", flush=True)
        print(READY_MARKER + json.dumps(info, default=str), flush=True)

    # -- stop -------------------------------------------------------------------------------------

    def _stop_budget_left(self) -> float | None:
        """Seconds left of the stop deadline, less 2 s for the exit (None when no stop was asked)."""
        if self._stop_requested_at is None:
            return None
        return max(0.5, self.options.stop_deadline_s - (time.monotonic() - self._stop_requested_at) - 2.0)

    def request_stop(self, reason: str) -> None:
        """Ask for a clean stop (signal-handler safe); a watchdog enforces the deadline."""
        if self._signal is not None:
            return
        self._stop_requested_at = time.monotonic()
        self._signal = reason
        if self.trainer is not None:
            self.trainer.request_stop()
        self._watchdog = threading.Thread(target=self._enforce_deadline, name="stop-watchdog", daemon=True)
        self._watchdog.start()

    def _enforce_deadline(self) -> None:
        time.sleep(self.options.stop_deadline_s)
        print(
            f"[{self.peer_id}] clean stop took longer than {self.options.stop_deadline_s:g} s: exiting now",
            file=sys.stderr,
            flush=True,
        )
        os._exit(3)

    def close(self) -> None:
        """Leave the DHT and stop serving. After a stop request both fit in what is left of the stop
        deadline (less a margin for the exit), else each step has its own timeout. Idempotent."""
        runner, self.runner = self.runner, None
        membership, self.membership = self.membership, None
        left = self._stop_budget_left()
        if membership is not None:
            try:  # leave first, so nobody picks us as a neighbour any more
                membership.close(None if left is None else 0.7 * left)
            except Exception:
                log.warning("closing discovery failed", exc_info=True)
        if runner is not None:
            try:
                if left is None:
                    runner.close()
                else:  # what the leave left over
                    runner.close(max(0.5, self._stop_budget_left()))
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
                summary = {
                    "peer": self.peer_id,
                    "step": self.trainer.step,
                    "round": self.trainer.round,
                    "checkpoint": str(self.trainer.save_checkpoint()),
                }
            return self._write_final(summary)
        finally:
            self.close()

    def _write_final(self, summary: dict) -> dict:
        params = self.trainer.flat_params()
        torch.save(
            {"params": params, "fingerprint": self.trainer.layout.fingerprint}, self.run_dir / PARAMS_FILE
        )
        evals = {}
        metrics = self.run_dir / METRICS_FILE
        if metrics.is_file():
            evals = {r.get("tag"): r for r in read_metrics(metrics, kind="eval")}
        final = {
            **summary,
            "peer_id": self.peer_id,
            "stopped_by": self._signal,
            "caught_up": self.caught_up,
            "eval_init": evals.get("init"),
            "eval_final": evals.get("final"),
            "params": str(self.run_dir / PARAMS_FILE),
        }
        write_json(self.run_dir / FINAL_FILE, final)
        return final


def _adaptive_deadline(g: GossipConfig) -> AdaptiveDeadline | None:
    """The per-neighbour deadline rule of ``gossip.deadline_s: auto`` (None for a fixed deadline)."""
    if g.deadline_s != AUTO:
        return None
    return AdaptiveDeadline(
        floor_s=g.deadline_min_s, percentile=g.deadline_percentile, margin=g.deadline_margin
    )
