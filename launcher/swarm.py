"""``dssl swarm`` and ``dssl demo``: plan -> run directory -> start peers -> supervise -> collect.

``dssl swarm --config examples/swarm.yaml`` (or ``--peers N``) runs a swarm on this host;
``dssl swarm --hosts examples/hosts.yaml`` spreads it over the hosts of an inventory
(:mod:`launcher.hosts`). ``dssl demo`` is the 4-peer Fashion-MNIST swarm of ``make demo``; its last
line is ``RESULT peers=... min_rounds=... knn_acc_mean=... knn_acc_random_init=...
consensus_distance=... run_dir=...``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from launcher.certs import default_hosts, write_swarm_tls
from launcher.collect import collect, format_table
from launcher.faults import FaultSchedule, ScheduleError, load_schedule, start_and_supervise
from launcher.local import PEER_COMMAND, LocalSwarm, PeerStartError, SignalForwarder, tail
from launcher.rundir import RunDir, Timeline, create_run_dir, write_manifest, write_peer_configs
from launcher.spec import SpecError, SwarmPlan, load_plan
from peer.config import ConfigError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DEMO_SPEC = EXAMPLES / "demo_swarm.yaml"


def prepare_run(plan: SwarmPlan, argv: list[str], run_root: str | None = None,
                extra_manifest: dict | None = None) -> tuple[RunDir, dict[str, Path]]:
    """Create the run directory with every peer's resolved config and the manifest."""
    first = plan.peers[0].config
    run = create_run_dir(run_root or plan.settings.run_root, first.name or plan.settings.swarm_id)
    config_paths = write_peer_configs(run, plan)
    write_manifest(run, plan, argv, extra_manifest)
    return run, config_paths


def copy_partition_report(run: RunDir, peer_id: str) -> None:
    """The bootstrap peer writes the swarm's partition report; keep a copy at the top."""
    for name in ("partition.json", "partition.txt"):
        source = run.peer_dir(peer_id) / name
        if source.is_file():
            shutil.copyfile(source, run.path / name)


def run_local(plan: SwarmPlan, argv: list[str], *, run_root: str | None = None, duration_s: float | None = None,
              peer_command: tuple[str, ...] = PEER_COMMAND,
              faults: FaultSchedule | None = None, insecure: bool = False,
              secret_file: Path | None = None) -> tuple[RunDir, dict[str, int | None]]:
    """Start the swarm on this host and supervise it until the peers finish (or duration / Ctrl-C),
    applying the fault schedule ``faults`` (``launcher.faults``) when given. Gossip is mutual TLS
    with a fresh swarm CA in ``<run>/tls`` unless ``insecure``; ``secret_file`` adds the swarm secret."""
    run, config_paths = prepare_run(plan, argv, run_root)
    print(f"dssl swarm: {len(plan.peers)} peers of swarm {plan.settings.swarm_id!r}; run dir {run.path}", flush=True)
    swarm = LocalSwarm(plan, run, config_paths=config_paths, peer_command=peer_command,
                       timeline=Timeline(run.timeline_path), peer_args=security_args(plan, run, insecure, secret_file))

    def announce_ready() -> None:
        copy_partition_report(run, plan.peers[0].peer_id)
        ready = swarm.processes[plan.peers[0].peer_id].ready() or {}
        if ready.get("join_command"):
            hint = join_hint(ready["join_command"], run, insecure)
            print(f"dssl swarm: all peers ready; another host joins with:\n  {hint}", flush=True)

    with SignalForwarder() as forwarder:
        until = time.monotonic() + duration_s if duration_s else None
        try:
            codes = start_and_supervise(swarm, faults, forwarder, until, on_ready=announce_ready)
        except PeerStartError as exc:
            print(f"dssl swarm: {exc}", file=sys.stderr)
            return run, swarm.stop()
    for peer_id, code in codes.items():
        if code not in (0, None):
            print(f"dssl swarm: peer {peer_id} exited with code {code}; last log lines:\n"
                  f"{tail(run.log_path(peer_id), 8)}", file=sys.stderr)
    return run, codes


def join_hint(join_command: str, run: RunDir, insecure: bool) -> str:
    """The join command, and in a TLS swarm the step before it: a certificate from the swarm's CA."""
    if insecure:
        return f"{join_command} --insecure"
    tls = run.path / "tls"
    return (f"dssl certs --ca-dir {tls} --peer-id NEW_ID --host NEW_HOST_ADDRESS --out NEW_ID-tls\n"
            f"  (copy NEW_ID-tls to the new host, then:)\n  {join_command} --peer-id NEW_ID --tls-dir NEW_ID-tls")


def security_args(plan: SwarmPlan, run: RunDir, insecure: bool, secret_file: Path | None) -> list[str]:
    """``dssl peer`` flags for the swarm's gossip security; makes the CA and certificates (``<run>/tls``)."""
    args = ["--swarm-secret-file", str(secret_file.resolve())] if secret_file is not None else []
    if insecure:
        return [*args, "--insecure"]
    listen_hosts = {p.config.gossip.listen.rpartition(":")[0].strip("[]") for p in plan.peers}
    hosts = default_hosts(h for h in listen_hosts if h not in ("", "0.0.0.0", "::"))
    tls_dir = write_swarm_tls(run.path / "tls", plan.settings.swarm_id, [p.peer_id for p in plan.peers], hosts)
    return [*args, "--tls-dir", str(tls_dir)]


def check_local_data(plan: SwarmPlan) -> None:
    """A data directory that does not exist on this host fails here, before any peer is spawned
    (otherwise every peer would start, load its model and die with the same error)."""
    for peer in plan.peers:
        root = peer.config.data.root
        if root is not None and not Path(root).expanduser().exists():
            raise SpecError(f"peer {peer.peer_id}: data.root {root} does not exist on this host")


def check_secret_file(path: Path | None) -> None:
    """Fail before anything starts when the secret file is unusable (peers would all fail later)."""
    if path is None:
        return
    try:
        size = len(path.read_bytes().strip())
    except OSError as exc:
        raise SpecError(f"--swarm-secret-file: {exc}") from None
    if size < 16:
        raise SpecError(f"--swarm-secret-file {path}: the secret is {size} bytes; use at least 16 "
                        f"(e.g. `openssl rand -hex 32 > {path}`)")


def _parser(prog: str, description: str, default_spec: Path | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", type=Path, default=default_spec, help="swarm spec YAML (see examples/swarm.yaml)")
    p.add_argument("--peers", type=int, default=None, help="number of peers (overrides swarm.size)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value of every peer, e.g. --set train.steps=50 (repeatable)")
    p.add_argument("--run-root", default=None, help="parent of the run directory (overrides swarm.run_root)")
    p.add_argument("--duration-s", type=float, default=None, help="stop the swarm after this many seconds")
    p.add_argument("--insecure", action="store_true",
                   help="plaintext gossip (debugging); default: mutual TLS with a fresh swarm CA in <run>/tls")
    p.add_argument("--swarm-secret-file", type=Path, default=None, metavar="FILE",
                   help="also require this shared secret for every pull (never put the secret itself on the command line)")
    return p


def _report(run: RunDir, codes: dict[str, int | None]) -> int:
    swarm = collect(run)
    print(format_table(swarm))
    if swarm.consensus_distance is not None:
        print(f"consensus distance (1/N) sum ||theta_i - mean||^2 = {swarm.consensus_distance:.6g}")
    print(f"run directory: {run.path}")
    print(swarm.result_line(), flush=True)
    crashed = [p for p, code in codes.items() if code not in (0, None)]
    return 1 if crashed or not swarm.peers else 0


def swarm_main(argv: list[str]) -> int:
    """``dssl swarm``: a local swarm from a spec, or a multi-host swarm from a hosts inventory."""
    p = _parser("dssl swarm", "Start a gossip SSL swarm on this host (or on the hosts of an inventory).", None)
    p.add_argument("--hosts", type=Path, default=None, help="hosts inventory YAML (see examples/hosts.yaml)")
    p.add_argument("--faults", type=Path, default=None,
                   help="fault schedule YAML applied to the running swarm (see examples/faults.yaml)")
    args = p.parse_args(argv)
    try:
        if args.hosts is not None:
            from launcher.hosts import load_inventory, run_hosts

            inventory = load_inventory(args.hosts)
            plan = load_plan(args.config, size=inventory.total_peers, overrides=args.overrides)
            faults = load_schedule(args.faults, [p.peer_id for p in plan.peers]) if args.faults else None
            check_secret_file(args.swarm_secret_file)
            run, codes = run_hosts(plan, inventory, argv, run_root=args.run_root, duration_s=args.duration_s,
                                   faults=faults, insecure=args.insecure, secret_file=args.swarm_secret_file)
        else:
            plan = load_plan(args.config, size=args.peers, overrides=args.overrides)
            faults = load_schedule(args.faults, [p.peer_id for p in plan.peers]) if args.faults else None
            check_secret_file(args.swarm_secret_file)
            check_local_data(plan)
            run, codes = run_local(plan, argv, run_root=args.run_root, duration_s=args.duration_s, faults=faults,
                                   insecure=args.insecure, secret_file=args.swarm_secret_file)
    except (SpecError, ConfigError, ScheduleError) as exc:
        print(f"dssl swarm: error: {exc}", file=sys.stderr)
        return 2
    return _report(run, codes)


def demo_main(argv: list[str]) -> int:
    """``dssl demo``: the 4-peer Fashion-MNIST swarm of ``make demo``; last line is the RESULT line."""
    p = _parser("dssl demo", "4-peer swarm on Fashion-MNIST (Dirichlet 0.1, ring): kNN before/after, consensus.",
                DEMO_SPEC)
    args = p.parse_args(argv)
    try:
        plan = load_plan(args.config, size=args.peers, overrides=args.overrides)
        check_secret_file(args.swarm_secret_file)
        check_local_data(plan)
    except (SpecError, ConfigError) as exc:
        print(f"dssl demo: error: {exc}", file=sys.stderr)
        return 2
    c = plan.peers[0].config
    encoder = (f"ViT width {c.objective.embed_dim} depth {c.objective.depth}" if c.objective.name in ("mae", "mar")
               else c.objective.backbone)
    print(f"dssl demo: {len(plan.peers)} peers, {c.objective.name} on {encoder}, "
          f"{c.data.dataset} split {c.data.partition}, topology {c.gossip.topology}, "
          f"{c.train.steps} steps x batch {c.train.batch_size}, a gossip round every {c.train.period} steps",
          flush=True)
    started = time.monotonic()
    run, codes = run_local(plan, ["demo", *argv], run_root=args.run_root, duration_s=args.duration_s,
                           insecure=args.insecure, secret_file=args.swarm_secret_file)
    print(f"dssl demo: swarm finished in {time.monotonic() - started:.0f} s")
    return _report(run, codes)
