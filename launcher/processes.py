"""A swarm's peer processes: start them (here, in a network namespace or over ssh), watch them,
signal them, stop them.

* Every peer runs in its own session / process group (``start_new_session=True``), so a signal
  for one peer reaches its whole group and nothing else; we never use broad ``pkill``.
* The bootstrap peer starts first; once it has written ``ready.json`` (it serves gRPC and its DHT
  is up) the others start with ``--bootstrap <its multiaddrs>``.
* A peer that crashes is reported with the last lines of its log and recorded on the timeline;
  the others keep running.
* Stopping is graceful with a deadline: SIGTERM to each group, wait, then SIGKILL what is left.

How a command reaches a peer's host is its :class:`Transport` (this host by default;
``launcher.hosts`` adds network namespaces and ssh). The fault runner (``launcher.fault_runner``)
drives a running swarm through :meth:`SwarmProcesses.send_signal`, :meth:`SwarmProcesses.start_peer`
(late join / restart with the same id) and :attr:`SwarmProcesses.timeline`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from launcher.run_setup import Timeline
from launcher.spec import PeerPlan, SwarmPlan
from launcher.zygote_client import Zygote, ZygoteError
from peer.rundir import READY_MARKER, RunDir

log = logging.getLogger(__name__)

# How a peer process is started: dssl's own entry point, run by this interpreter.
PEER_COMMAND = (sys.executable, "-m", "launcher.cli", "peer")
POLL_S = 0.2  # how often readiness and exits are polled


class Transport:
    """How a peer command reaches its host. Here: this host, directly. ``launcher.hosts`` adds
    network namespaces and ssh by overriding :meth:`wrap` (and :attr:`remote` when the peer's
    files live on another machine's disk, so readiness is read from its stdout instead)."""

    name = "local"
    remote = False  # the peer's run dir is not on our disk
    keep_stdin_open = False  # ssh: the remote peer stops when our end of its stdin closes

    def wrap(self, argv: list[str]) -> list[str]:
        return argv

    def stdin_preamble(self, peer_id: str, argv: list[str]) -> bytes | None:
        """Bytes written to the peer's stdin right after it starts (``argv`` before :meth:`wrap`);
        transports to hosts without our disk send the peer's credentials this way."""
        return None


class StartInterrupted(RuntimeError):
    """A stop (Ctrl-C, SIGTERM) was requested while the swarm was still starting its peers."""


class PeerStartError(RuntimeError):
    """A peer exited or did not become ready in time (the message carries its last log lines)."""


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(deque(text.splitlines(), maxlen=lines))


@dataclass(kw_only=True)
class PeerProcess:
    """One running (or finished) peer process."""

    plan: PeerPlan
    popen: subprocess.Popen
    log_path: Path
    ready_path: Path
    started: float
    log_offset: int = 0  # size of the (appended) log before this process started
    expected_exit: bool = False  # we asked it to stop (a non-zero exit is then not a crash)
    reported: bool = False  # its exit was already recorded
    ready_recorded: bool = False  # its readiness was already put on the timeline
    ready_info: dict | None = field(default=None)

    @property
    def peer_id(self) -> str:
        return self.plan.peer_id

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def ready(self) -> dict | None:
        """What the peer announced once serving: its ``ready.json`` when this very process wrote it,
        or the ``DSSL-READY`` line it printed since it started (remote hosts); else None."""
        if self.ready_info is None and self.ready_path.is_file():
            try:
                info = json.loads(self.ready_path.read_text())
            except (OSError, json.JSONDecodeError):  # being written right now
                info = {}
            if info.get("pid") == self.pid:
                self.ready_info = info
        if self.ready_info is None:
            self.ready_info = self._ready_line()
        return self.ready_info

    def _ready_line(self) -> dict | None:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(self.log_offset)
                text = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(READY_MARKER):
                try:
                    return json.loads(line[len(READY_MARKER) :])
                except json.JSONDecodeError:
                    return None
        return None


class SwarmProcesses:
    """The peer processes of one swarm, wherever their transports run them. No work in the
    constructor; call :meth:`start`."""

    def __init__(
        self,
        plan: SwarmPlan,
        run: RunDir,
        *,
        config_paths: dict[str, Path],
        peer_command: tuple[str, ...] = PEER_COMMAND,
        env: dict[str, str] | None = None,
        timeline: Timeline | None = None,
        transports: dict[str, Transport] | None = None,
        peer_args: list[str] | None = None,
        zygote: Zygote | None = None,
    ):
        self.plan = plan
        self.run = run
        self.config_paths = config_paths
        self.peer_command = tuple(peer_command)
        self.env = env
        self.timeline = timeline or Timeline(run.timeline_path)
        self.peer_args = list(peer_args or [])  # extra `dssl peer` flags for every peer (e.g. --dht-ttl-s)
        self.transports = transports or {}  # peer id -> how to reach its host (default: this host)
        self.processes: dict[str, PeerProcess] = {}
        self.bootstrap: list[str] = []  # multiaddrs of the bootstrap peer, once it is ready
        self.zygote = zygote  # forks local peers, stack imported (launcher.zygote); the caller closes it

    # -- starting -------------------------------------------------------------------------------

    def _plan(self, peer_id: str) -> PeerPlan:
        for peer in self.plan.peers:
            if peer.peer_id == peer_id:
                return peer
        raise KeyError(f"no peer {peer_id!r} in this swarm")

    def start_peer(
        self, peer_id: str, bootstrap: list[str] | None = None, extra_args: list[str] | None = None
    ) -> PeerProcess:
        """Spawn one peer (also used for late joins and restarts with the same id)."""
        plan = self._plan(peer_id)
        old = self.processes.get(peer_id)
        if old is not None and old.alive():
            raise RuntimeError(f"peer {peer_id} is still running (pid {old.pid})")
        ready_path = self.run.ready_path(peer_id)
        ready_path.unlink(missing_ok=True)
        argv = [*self.peer_command, "--config", str(self.config_paths[peer_id])]
        for maddr in bootstrap or []:
            argv += ["--bootstrap", maddr]
        argv += [*self.peer_args, *(extra_args or [])]
        log_path = self.run.log_path(peer_id)
        popen, offset = self._spawn(plan, argv, log_path)
        proc = PeerProcess(
            plan=plan,
            popen=popen,
            log_path=log_path,
            ready_path=ready_path,
            started=time.time(),
            log_offset=offset,
        )
        self.processes[peer_id] = proc
        self.timeline.record("spawned", peer_id, pid=popen.pid, bootstrap=list(bootstrap or []))
        log.info("started peer %s (pid %d), log %s", peer_id, popen.pid, log_path)
        return proc

    def _env(self, plan: PeerPlan) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONUNBUFFERED"] = "1"
        if plan.config.train.threads > 0:
            env["OMP_NUM_THREADS"] = str(plan.config.train.threads)
        return env

    def _spawn(self, plan: PeerPlan, argv: list[str], log_path: Path) -> tuple[subprocess.Popen, int]:
        """Start ``argv`` through the peer's transport in its own session, appending to its log;
        returns the process and the log's size before it started. A local peer is forked from the
        zygote when there is one (a fresh process if the zygote cannot)."""
        transport = self.transports.get(plan.peer_id, Transport())
        preamble = transport.stdin_preamble(plan.peer_id, argv)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.zygote is not None and type(transport) is Transport and self.zygote.can_run(argv):
            offset = log_path.stat().st_size if log_path.exists() else 0
            try:
                return self.zygote.spawn(argv, self._env(plan), log_path), offset
            except ZygoteError as exc:
                log.warning("peer %s: %s; starting it as a fresh process", plan.peer_id, exc)
        with log_path.open("ab") as log_fh:
            offset = log_fh.tell()
            piped = transport.keep_stdin_open or preamble is not None
            popen = subprocess.Popen(
                transport.wrap(argv),
                stdin=subprocess.PIPE if piped else subprocess.DEVNULL,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                env=self._env(plan),
                start_new_session=True,
            )
        if preamble is not None:
            try:
                popen.stdin.write(preamble)
                popen.stdin.flush()
                if not transport.keep_stdin_open:
                    popen.stdin.close()
            except OSError as exc:  # the peer died at once: wait_ready reports it with its log
                log.warning("peer %s: could not send its credentials on stdin: %s", plan.peer_id, exc)
        return popen, offset

    def wait_ready(
        self,
        peer_ids: list[str] | None = None,
        timeout: float = 180.0,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> dict[str, dict]:
        """Poll until the given peers (default: all started) have written ``ready.json``.

        Raises PeerStartError naming a peer that exited first or was not ready in time, and
        StartInterrupted as soon as ``stop_requested()`` is true.
        """
        ids = list(peer_ids if peer_ids is not None else self.processes)
        deadline = time.monotonic() + timeout
        ready: dict[str, dict] = {}
        while True:
            _check_stop(stop_requested, ids, ready)
            for peer_id in ids:
                if peer_id not in ready and (info := self._check_ready(peer_id)) is not None:
                    ready[peer_id] = info
            if len(ready) == len(ids):
                return ready
            if time.monotonic() > deadline:
                late = [i for i in ids if i not in ready]
                raise PeerStartError(
                    f"peer(s) {', '.join(late)} not ready after {timeout:.0f} s; last log lines of "
                    f"{late[0]}:\n{tail(self.processes[late[0]].log_path)}"
                )
            time.sleep(POLL_S)

    def _check_ready(self, peer_id: str) -> dict | None:
        """The peer's ready info (recorded on the timeline the first time), None while starting;
        raises PeerStartError when it exited first."""
        proc = self.processes[peer_id]
        info = proc.ready()
        if info is not None:
            if not proc.ready_recorded:
                proc.ready_recorded = True
                seconds = round(time.time() - proc.started, 2)
                self.timeline.record("ready", peer_id, address=info.get("address"), seconds=seconds)
            return info
        if not proc.alive():
            self.poll()
            raise PeerStartError(
                f"peer {peer_id} exited with code {proc.popen.returncode} before it was "
                f"ready; last log lines:\n{tail(proc.log_path)}"
            )
        return None

    def start(
        self,
        wait_all: bool = True,
        hold: frozenset[str] | set[str] = frozenset(),
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        """Start the bootstrap peer, wait for it, then start the others joining through it.

        Peers in ``hold`` are not started (a fault schedule ``join``s them later). Raises
        StartInterrupted once ``stop_requested()`` is true (Ctrl-C while 16 peers load their
        models must not wait for all of them); the caller stops the peers started so far."""
        timeout = self.plan.settings.ready_timeout_s
        first, *rest = [p for p in self.plan.peers if p.peer_id not in hold]
        barrier = ["--wait-peers", str(len(rest) + 1)]  # the swarm starts training together
        self.start_peer(first.peer_id, extra_args=barrier)
        info = self.wait_ready([first.peer_id], timeout, stop_requested)[first.peer_id]
        self.bootstrap = list(info.get("maddrs") or [])
        if not self.bootstrap:
            raise PeerStartError(
                f"bootstrap peer {first.peer_id} announced no multiaddrs in {first.peer_id}'s "
                f"ready.json; is it running with a static peer list?"
            )
        for peer in rest:
            _check_stop(stop_requested, [peer.peer_id], {})
            self.start_peer(peer.peer_id, bootstrap=self.bootstrap, extra_args=barrier)
        if wait_all:
            self.wait_ready(timeout=timeout, stop_requested=stop_requested)

    # -- watching -------------------------------------------------------------------------------

    def poll(self) -> list[PeerProcess]:
        """Record peers that exited since the last poll; report crashes with their last log lines."""
        exited = []
        for proc in self.processes.values():
            code = proc.popen.poll()
            if code is None or proc.reported:
                continue
            proc.reported = True
            exited.append(proc)
            crashed = code != 0 and not proc.expected_exit
            self.timeline.record(
                "crashed" if crashed else "exited",
                proc.peer_id,
                code=code,
                seconds=round(time.time() - proc.started, 2),
            )
            if crashed:
                log.error(
                    "peer %s exited with code %s; last log lines:\n%s",
                    proc.peer_id,
                    code,
                    tail(proc.log_path),
                )
            else:
                log.info("peer %s exited with code %s", proc.peer_id, code)
        return exited

    def alive(self) -> list[str]:
        return [peer_id for peer_id, proc in self.processes.items() if proc.alive()]

    def send_signal(self, peer_id: str, sig: int, expected_exit: bool | None = None) -> bool:
        """Send ``sig`` to one peer's process group; False when it had already exited."""
        proc = self.processes[peer_id]
        if not proc.alive():
            return False
        if expected_exit is None:
            expected_exit = sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL)
        proc.expected_exit = proc.expected_exit or expected_exit
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return False
        self.timeline.record("signal", peer_id, signal=signal.Signals(sig).name, pid=proc.pid)
        return True

    def wait(self, timeout: float | None = None) -> dict[str, int | None]:
        """Poll until every peer has exited (or ``timeout``); returns their exit codes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.alive() and (deadline is None or time.monotonic() < deadline):
            self.poll()
            time.sleep(POLL_S)
        self.poll()
        return {peer_id: proc.popen.returncode for peer_id, proc in self.processes.items()}

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, deadline_s: float | None = None, sig: int = signal.SIGTERM) -> dict[str, int | None]:
        """Graceful stop: ``sig`` to every group, wait up to the deadline, then SIGKILL the rest."""
        deadline_s = self.plan.settings.stop_deadline_s if deadline_s is None else deadline_s
        for peer_id in self.alive():
            stdin = self.processes[peer_id].popen.stdin
            if stdin is not None:  # ssh: closing the remote peer's stdin asks it to stop cleanly
                stdin.close()
            self.send_signal(peer_id, sig)
        self.wait(timeout=deadline_s)
        for peer_id in self.alive():
            log.warning("peer %s did not stop within %.0f s: SIGKILL", peer_id, deadline_s)
            self.send_signal(peer_id, signal.SIGKILL)
        for proc in self.processes.values():
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("peer %s (pid %d) survived SIGKILL for 10 s", proc.peer_id, proc.pid)
        self.poll()
        return {peer_id: proc.popen.returncode for peer_id, proc in self.processes.items()}

    def __enter__(self) -> SwarmProcesses:
        return self

    def __exit__(self, *exc) -> None:
        if self.alive():
            self.stop()


class SignalForwarder:
    """While active, SIGINT/SIGTERM to the launcher become a graceful stop of the whole swarm.

    The peers live in their own process groups, so a terminal's Ctrl-C does not reach them by
    itself: we catch it and ask each group to stop (a second Ctrl-C escalates to SIGKILL).
    """

    def __init__(self) -> None:
        self.requested = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.requested += 1
        log.warning("received %s: stopping the swarm (again to kill)", signal.Signals(signum).name)

    def __enter__(self) -> SignalForwarder:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def supervise(
    swarm: SwarmProcesses,
    forwarder: SignalForwarder,
    until: float | None = None,
    before_stop: Callable[[], None] | None = None,
    on_tick: Callable[[], None] | None = None,
) -> dict[str, int | None]:
    """Run until every peer exits, ``until`` (monotonic) passes, or a stop is requested.

    Crashes are reported as they happen and do not stop the others. ``on_tick`` runs on every poll
    (the live progress line). ``before_stop`` runs first when the loop ends (a fault runner resumes
    SIGSTOPped peers so they can stop cleanly).
    """
    while swarm.alive():
        swarm.poll()
        if on_tick is not None:
            on_tick()
        if forwarder.requested or (until is not None and time.monotonic() >= until):
            break
        time.sleep(POLL_S)
    if before_stop is not None:
        before_stop()
    return stop_as_requested(swarm, forwarder)


def stop_as_requested(swarm: SwarmProcesses, forwarder: SignalForwarder) -> dict[str, int | None]:
    """Stop what still runs: gracefully, or SIGKILL after a second Ctrl-C; the exit codes."""
    if not swarm.alive():
        return swarm.wait(timeout=0)
    if forwarder.requested > 1:
        return swarm.stop(deadline_s=0.1, sig=signal.SIGKILL)
    return swarm.stop()


def _check_stop(stop_requested: Callable[[], bool], waiting: list[str], ready: dict) -> None:
    if stop_requested():
        starting = [peer_id for peer_id in waiting if peer_id not in ready]
        raise StartInterrupted(f"stop requested while peer(s) {', '.join(starting)} were starting")
