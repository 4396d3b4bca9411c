"""``dssl swarm`` (and the swarm of ``dssl demo``): plan -> run dir -> start peers -> supervise -> collect.

``dssl swarm --config examples/swarm.yaml`` (or ``--peers N``) runs a swarm on this host;
``dssl swarm --hosts examples/hosts.yaml`` spreads it over the hosts of an inventory
(:mod:`launcher.hosts`). Both go through :func:`run_swarm`, as does ``dssl demo``
(:mod:`launcher.demo`); the last line is ``RESULT peers=... min_rounds=... knn_acc_mean=...
knn_acc_random_init=... consensus_distance=... run_dir=...``. Ctrl-C (or SIGTERM) stops the swarm
cleanly; the table and RESULT line of what it reached still print, and the command exits 130.

After the peers exit, both evaluate the consensus model θ̄ of the peers live at the end
(:mod:`peer.consensus`: data-size-weighted mean of their final models; kNN, linear probe and
fine-tuning) into ``<run>/consensus.json``, unless ``--no-consensus``; ``dssl consensus RUN``
(re)computes it for an existing run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from analysis.collect import collect, format_table
from gossip.security import SecurityConfigError, load_secret
from launcher.baselines import train_baselines
from launcher.certs import default_hosts, write_swarm_tls
from launcher.fault_control import with_fault_injection
from launcher.fault_runner import FaultRunner
from launcher.fault_schedule import FaultSchedule, ScheduleError, load_schedule
from launcher.hosts import Inventory, load_inventory, place
from launcher.processes import (
    PEER_COMMAND,
    PeerStartError,
    SignalForwarder,
    StartInterrupted,
    SwarmProcesses,
    Transport,
    stop_as_requested,
    supervise,
    tail,
)
from launcher.progress_printer import DEFAULT_INTERVAL_S, ProgressPrinter
from launcher.run_setup import Timeline, create_run_dir, write_manifest, write_peer_configs
from launcher.signal_watch import INTERRUPTED_EXIT, SignalWatch
from launcher.spec import SpecError, SwarmPlan, load_plan
from launcher.zygote_client import Zygote, ZygoteError
from peer.config import ConfigError
from peer.consensus import write_consensus
from peer.rundir import PARTITION_FILES, RunDir

log = logging.getLogger(__name__)


def prepare_run(
    plan: SwarmPlan, argv: list[str], run_root: str | None = None, extra_manifest: dict | None = None
) -> tuple[RunDir, dict[str, Path]]:
    """Create the run directory with every peer's resolved config and the manifest."""
    first = plan.peers[0].config
    run = create_run_dir(run_root or plan.settings.run_root, first.name or plan.settings.swarm_id)
    config_paths = write_peer_configs(run, plan)
    write_manifest(run, plan, argv, extra_manifest)
    return run, config_paths


def copy_partition_report(run: RunDir, peer_id: str) -> None:
    """The bootstrap peer writes the swarm's partition report; keep a copy at the top."""
    for name in PARTITION_FILES:
        source = run.peer_dir(peer_id) / name
        if source.is_file():
            shutil.copyfile(source, run.path / name)


def _placed(
    plan: SwarmPlan, inventory: Inventory | None, faults: FaultSchedule | None
) -> tuple[SwarmPlan, dict[str, Transport], dict[str, str], dict | None]:
    """The plan on the inventory's hosts (peer id -> transport and host address, the manifest's
    hosts entry); on this host when there is no inventory. Refuses a fault schedule for peers whose
    run directories are not on this machine."""
    if inventory is None:
        return plan, {}, {}, None
    plan, transports, where = place(plan, inventory)
    remote = sorted({t.name for t in transports.values() if t.remote})
    if faults is not None and remote:
        raise SpecError(
            f"a fault schedule needs every peer's run directory on this machine; "
            f"{', '.join(remote)} cannot take one (use local or netns hosts)"
        )
    return (
        plan,
        transports,
        where,
        {"hosts": [dataclasses.asdict(h) for h in inventory.hosts], "placement": where},
    )


def run_swarm(
    plan: SwarmPlan,
    argv: list[str],
    *,
    inventory: Inventory | None = None,
    run_root: str | None = None,
    duration_s: float | None = None,
    peer_command: tuple[str, ...] = PEER_COMMAND,
    faults: FaultSchedule | None = None,
    insecure: bool = False,
    secret_file: Path | None = None,
    progress_s: float = DEFAULT_INTERVAL_S,
) -> tuple[RunDir, dict[str, int | None]]:
    """Start the swarm (on this host, or on the hosts of ``inventory``: local, netns or ssh) and
    supervise it until the peers finish (or duration / Ctrl-C), applying the fault schedule
    ``faults`` when given. Gossip is mutual TLS with a fresh swarm CA in ``<run>/tls`` whose
    certificates name every host's address, unless ``insecure``; ``secret_file`` adds the swarm
    secret. A progress line is printed every ``progress_s`` seconds (0: none). Raises SpecError
    (before anything starts) for a schedule ssh hosts cannot take."""
    plan, transports, where, hosts = _placed(plan, inventory, faults)
    if faults is not None:
        plan = with_fault_injection(plan)
    run, config_paths = prepare_run(plan, argv, run_root, hosts)
    _announce_start(plan, inventory, run)
    zygote = _zygote(plan, transports, peer_command)
    swarm = SwarmProcesses(
        plan,
        run,
        config_paths=config_paths,
        peer_command=peer_command,
        timeline=Timeline(run.timeline_path),
        transports=transports,
        peer_args=security_args(plan, run, insecure, secret_file),
        zygote=zygote,
    )
    on_ready = lambda: _announce_ready(swarm, insecure)  # noqa: E731
    try:
        codes = _run_until_done(swarm, faults, duration_s, on_ready, ProgressPrinter(swarm, progress_s))
    finally:
        if zygote is not None:
            zygote.close()
    _report_crashes(run, codes, where, {p for p, proc in swarm.processes.items() if proc.expected_exit})
    return run, codes


def _zygote(plan: SwarmPlan, transports: dict, peer_command: tuple[str, ...]) -> Zygote | None:
    """A started zygote when ``swarm.zygote`` asks for one and some peer runs on this host; None
    otherwise, or (with a warning) when it cannot start: the peers then start as fresh processes."""
    local = [p for p in plan.peers if type(transports.get(p.peer_id, Transport())) is Transport]
    if not plan.settings.zygote or not local or peer_command != PEER_COMMAND:
        return None
    try:
        return Zygote().start()
    except (ZygoteError, OSError) as exc:
        log.warning("swarm.zygote: %s; peers start as fresh processes", exc)
        return None


def _report_crashes(run: RunDir, codes: dict[str, int | None], where: dict[str, str], stopped: set) -> None:
    """The last log lines of every peer that ended with an error, on stderr; not of a ``stopped``
    peer that a signal ended (a Ctrl-C while a peer loads ends it with -SIGTERM)."""
    for peer_id, code in codes.items():
        if code not in (0, None) and not (peer_id in stopped and code < 0):
            host = f" on {where[peer_id]}" if peer_id in where else ""
            print(
                f"dssl swarm: peer {peer_id}{host} exited with code {code}; last log lines:\n"
                f"{tail(run.log_path(peer_id), 8)}",
                file=sys.stderr,
            )


def _announce_start(plan: SwarmPlan, inventory: Inventory | None, run: RunDir) -> None:
    on_hosts = f" on {len(inventory.hosts)} hosts" if inventory is not None else ""
    print(
        f"dssl swarm: {len(plan.peers)} peers of swarm {plan.settings.swarm_id!r}{on_hosts}; "
        f"run dir {run.path}",
        flush=True,
    )


def _announce_ready(swarm: SwarmProcesses, insecure: bool) -> None:
    """Once every peer serves: the partition report at the top, and how another host joins."""
    first = swarm.plan.peers[0].peer_id
    copy_partition_report(swarm.run, first)
    ready = swarm.processes[first].ready() or {}
    if ready.get("join_command"):
        hint = join_hint(ready["join_command"], swarm.run, insecure)
        print(f"dssl swarm: all peers ready; another host joins with:\n  {hint}", flush=True)


def _run_until_done(
    swarm: SwarmProcesses,
    faults: FaultSchedule | None,
    duration_s: float | None,
    on_ready: Callable[[], None],
    on_tick: Callable[[], None] | None = None,
) -> dict[str, int | None]:
    """Start and supervise with Ctrl-C turned into a graceful stop; a peer that does not start
    stops the swarm."""
    with SignalForwarder() as forwarder:
        until = time.monotonic() + duration_s if duration_s else None
        try:
            return start_and_supervise(swarm, faults, forwarder, until, on_ready=on_ready, on_tick=on_tick)
        except PeerStartError as exc:
            print(f"dssl swarm: {exc}", file=sys.stderr)
            return swarm.stop()


def start_and_supervise(
    swarm: SwarmProcesses,
    schedule: FaultSchedule | None,
    forwarder: SignalForwarder,
    until: float | None = None,
    on_ready: Callable[[], None] | None = None,
    on_tick: Callable[[], None] | None = None,
) -> dict[str, int | None]:
    """Start ``swarm`` (holding back the schedule's late joiners), call ``on_ready``, apply
    ``schedule`` while supervising it (``on_tick`` on every poll), undo process faults, then stop.

    Raises ``PeerStartError`` like :meth:`SwarmProcesses.start`. A stop requested while the peers
    are still starting stops the ones started so far at once.
    """
    hold = schedule.late_joiners() if schedule else frozenset()
    try:
        swarm.start(wait_all=True, hold=hold, stop_requested=lambda: forwarder.requested > 0)
    except StartInterrupted as exc:
        log.warning("%s: stopping the %d peer(s) started so far", exc, len(swarm.processes))
        return stop_as_requested(swarm, forwarder)
    if on_ready is not None:
        on_ready()
    if schedule is None:
        return supervise(swarm, forwarder, until, on_tick=on_tick)
    runner = FaultRunner(swarm, schedule).start()
    try:
        return supervise(swarm, forwarder, until, before_stop=runner.close, on_tick=on_tick)
    finally:
        runner.close()


def join_hint(join_command: str, run: RunDir, insecure: bool) -> str:
    """The join command, and in a TLS swarm the step before it: a certificate from the swarm's CA."""
    if insecure:
        return f"{join_command} --insecure"
    tls = run.path / "tls"
    return (
        f"dssl certs --ca-dir {tls} --peer-id NEW_ID --host NEW_HOST_ADDRESS --out NEW_ID-tls\n"
        f"  (copy NEW_ID-tls to the new host, then:)\n  {join_command} --peer-id NEW_ID --tls-dir NEW_ID-tls"
    )


def security_args(plan: SwarmPlan, run: RunDir, insecure: bool, secret_file: Path | None) -> list[str]:
    """``dssl peer`` flags for the swarm's gossip security; makes the CA and certificates (``<run>/tls``)."""
    args = ["--swarm-secret-file", str(secret_file.resolve())] if secret_file is not None else []
    if insecure:
        return [*args, "--insecure"]
    listen_hosts = {p.config.gossip.listen.rpartition(":")[0].strip("[]") for p in plan.peers}
    hosts = default_hosts(h for h in listen_hosts if h not in ("", "0.0.0.0", "::"))
    tls_dir = write_swarm_tls(
        run.path / "tls", plan.settings.swarm_id, [p.peer_id for p in plan.peers], hosts
    )
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
        load_secret(path)
    except SecurityConfigError as exc:
        raise SpecError(f"--swarm-secret-file: {exc}") from None


def command_parser(
    prog: str, description: str, default_spec: Path | None, baselines: bool = False
) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--config", type=Path, default=default_spec, help="swarm spec YAML (see examples/swarm.yaml)"
    )
    p.add_argument("--peers", type=int, default=None, help="number of peers (overrides swarm.size)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value of every peer, e.g. --set train.steps=50 (repeatable)",
    )
    p.add_argument("--run-root", default=None, help="parent of the run directory (overrides swarm.run_root)")
    p.add_argument("--duration-s", type=float, default=None, help="stop the swarm after this many seconds")
    p.add_argument(
        "--progress-s",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help="print a swarm progress line this often (0: never)",
    )
    p.add_argument(
        "--no-consensus",
        dest="consensus",
        action="store_false",
        help="skip evaluating the consensus model (mean of the live peers' final models) afterwards",
    )
    p.add_argument(
        "--baselines",
        action=argparse.BooleanOptionalAction,
        default=baselines,
        help="afterwards, train every peer alone (local-only) and one centralised model on the union "
        "of their shares, and compare (dssl baselines RUN does it for a finished run)",
    )
    _security_options(p)
    return p


def _security_options(p: argparse.ArgumentParser) -> None:
    """The gossip security flags of ``dssl swarm`` / ``dssl demo``."""
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gossip (debugging); default: mutual TLS with a fresh swarm CA in <run>/tls",
    )
    p.add_argument(
        "--swarm-secret-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="also require this shared secret for every pull "
        "(never put the secret itself on the command line)",
    )


def report_swarm(
    run: RunDir, codes: dict[str, int | None], args: argparse.Namespace, interrupted: bool = False
) -> int:
    """The per-peer table, the consensus model θ̄ and the baselines (when asked, a peer finished
    and the swarm was not interrupted), the RESULT line last. Non-zero when a peer crashed, none
    finished or θ̄ / the baselines could not be evaluated; 130 when the swarm was interrupted."""
    swarm = collect(run.path)
    print(format_table(swarm))
    if swarm.consensus_distance is not None:
        print(f"consensus distance (1/N) sum ||theta_i - mean||^2 = {swarm.consensus_distance:.6g}")
    follow_up = swarm.finished and not interrupted
    consensus_ok = not (args.consensus and follow_up) or evaluate_consensus_model(run.path, "dssl")
    fields = train_baselines(run.path, "dssl") if args.baselines and follow_up else ""
    print(f"run directory: {run.path}")
    result = swarm.result_line()
    print(result.replace(" run_dir=", f" {fields} run_dir=") if fields else result, flush=True)
    if interrupted:
        return INTERRUPTED_EXIT
    crashed = [p for p, code in codes.items() if code not in (0, None)]
    return 1 if crashed or not swarm.finished or not consensus_ok or fields is None else 0


def evaluate_consensus_model(run_dir: Path, prog: str, overrides: list[str] | None = None) -> bool:
    """Write ``consensus.json`` for ``run_dir`` and print θ̄'s line; False (said on stderr) on failure."""
    print(f"{prog}: evaluating the consensus model of the live peers ...", flush=True)
    try:
        path = write_consensus(run_dir, overrides)
    except (OSError, ValueError, RuntimeError) as exc:  # ConsensusError is a ValueError
        print(f"{prog}: consensus model not evaluated: {exc}", file=sys.stderr)
        return False
    print(consensus_line(json.loads(path.read_text())), flush=True)
    return True


def consensus_line(result: dict) -> str:
    """One line for θ̄: how many peers, kNN, linear probe and fine-tuning accuracy."""
    ft = result.get("fine_tune")
    fine = "fine-tune off"
    if ft:
        fine = f"fine-tune {ft['accuracy']:.4f} ({ft['images']} images, {ft['epochs']} epochs)"
    return (
        f"consensus model (data-weighted mean of {len(result['peers'])} peers, test {result['test_size']} "
        f"images): kNN {result['knn']:.4f} linear {result['linear']:.4f} {fine}"
    )


def consensus_main(argv: list[str]) -> int:
    """``dssl consensus RUN_DIR``: (re)compute ``consensus.json`` for an existing swarm run."""
    p = argparse.ArgumentParser(
        prog="dssl consensus",
        description="Evaluate the consensus model (data-size-weighted mean of the live peers' final "
        "models) of a swarm run: kNN, linear probe, fine-tuning; writes RUN_DIR/consensus.json.",
    )
    p.add_argument("run_dir", type=Path, help="a swarm run directory")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the evaluation config (the first live peer's), e.g. --set data.test_limit=null "
        "--set eval.finetune_images=2000",
    )
    args = p.parse_args(argv)
    if not args.run_dir.is_dir():
        print(f"dssl consensus: error: {args.run_dir} is not a directory", file=sys.stderr)
        return 2
    return 0 if evaluate_consensus_model(args.run_dir, "dssl consensus", args.overrides) else 1


def _swarm_parser() -> argparse.ArgumentParser:
    p = command_parser(
        "dssl swarm", "Start a gossip SSL swarm on this host (or on the hosts of an inventory).", None
    )
    p.add_argument("--hosts", type=Path, default=None, help="hosts inventory YAML (see examples/hosts.yaml)")
    p.add_argument(
        "--faults",
        type=Path,
        default=None,
        help="fault schedule YAML applied to the running swarm (see examples/faults.yaml)",
    )
    return p


def _load_swarm(args: argparse.Namespace) -> tuple[SwarmPlan, Inventory | None, FaultSchedule | None]:
    """The plan (sized by the inventory when there is one), the inventory and the fault schedule,
    all checked before anything starts."""
    inventory = load_inventory(args.hosts) if args.hosts is not None else None
    size = inventory.total_peers if inventory is not None else args.peers
    plan = load_plan(args.config, size=size, overrides=args.overrides)
    faults = load_schedule(args.faults, [p.peer_id for p in plan.peers]) if args.faults else None
    check_secret_file(args.swarm_secret_file)
    if inventory is None:
        check_local_data(plan)
    return plan, inventory, faults


def swarm_main(argv: list[str]) -> int:
    """``dssl swarm``: a local swarm from a spec, or a multi-host swarm from a hosts inventory."""
    args = _swarm_parser().parse_args(argv)
    try:
        plan, inventory, faults = _load_swarm(args)
        with SignalWatch() as watch:
            run, codes = run_swarm(
                plan,
                argv,
                inventory=inventory,
                run_root=args.run_root,
                duration_s=args.duration_s,
                faults=faults,
                insecure=args.insecure,
                secret_file=args.swarm_secret_file,
                progress_s=args.progress_s,
            )
    except (SpecError, ConfigError, ScheduleError) as exc:
        print(f"dssl swarm: error: {exc}", file=sys.stderr)
        return 2
    return report_swarm(run, codes, args, watch.interrupted)
