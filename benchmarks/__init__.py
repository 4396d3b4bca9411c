"""Benchmarks (run by ``make bench``, never by the default test run) and the two-process timing
harness every pairwise benchmark shares, so that all of them time an exchange the same way.

Map: ``gossip_bench.py`` prints the exchange RESULT line; ``_raw_grpc.py`` is the plain-grpcio
yardstick; ``_hivemind_avg.py`` is hivemind's DecentralizedAverager, the system users would otherwise
pick. ``train_bench.py`` times training steps per objective; ``linerate_bench.py`` (with
``_netns_links.py``, ``_netns_peer.py``, ``_netns_tcp.py``) measures pulls against shaped netns links;
``soak.py`` is the churn soak of ``make soak``; ``malloc_bench.py`` compares allocator settings in
one swarm; ``gpu_smoke.py`` checks the CUDA + AMP path of the paper-scale models.

How a pairwise exchange is timed (``time_pair``):

* Two worker processes (``multiprocessing`` 'spawn' context, each its own process group) each build
  an exchange side from a picklable factory: rank 0 holds ``make_buffer(num_floats, SEEDS[0])``,
  rank 1 ``make_buffer(num_floats, SEEDS[1])`` (float32, random, different seeds).
* Set-up (servers, DHTs, connections) is untimed. Before every repetition each worker restores its
  own original buffer, publishing it if its system serves snapshots, and answers "armed"
  (untimed); the coordinator waits for both.
* The coordinator then takes ``t0 = time.perf_counter()`` and sends "go" to both workers over their
  pipes; each worker runs its exchange at once and answers "done" the moment it holds the average of
  both buffers. The repetition's time is the coordinator's wall time from ``t0`` to receiving the
  second "done": the span of the whole exchange, both sides included, as a caller that started both
  would see it (pipe latency, tens of microseconds, is included).
* Once both are done (untimed, so a fast side's check never steals CPU from the slower side's
  exchange) each worker checks its result against the average it recomputed from both seeds; a
  mismatch is an exception in the coordinator, so a baseline can never be fast by being wrong.
* A side may end an exchange with ``RoundFailed``: a round that failed in a way the system is built
  to survive (hivemind: no group found, a peer's part timed out). The coordinator then waits for the
  other side to finish or fail too, skips the check, logs it, and runs the repetition again, at most
  ``max_failed`` times per call (default 0: any failure is an error). The repetition that finally
  succeeds records how many failed attempts preceded it (``PairRep.failed_before``), so failures
  are reported, never hidden; a failed attempt's time is not in any timing.
* ``warmup`` repetitions run first and are discarded; every wait is bounded by a timeout; workers are
  stopped in ``finally`` ("disconnect" to both, then "stop", then SIGKILL of each worker's process
  group by its PID).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

SEEDS = (1001, 2002)  # rank 0 and rank 1 buffers: different seeds, reproducible on both sides


def make_buffer(num_floats: int, seed: int) -> np.ndarray:
    """The float32 buffer a worker of the given seed holds before an exchange."""
    return np.random.default_rng(seed).standard_normal(num_floats, dtype=np.float32)


def expected_average(num_floats: int) -> np.ndarray:
    """What both workers must hold after an exchange: the element-wise mean of both buffers."""
    return (make_buffer(num_floats, SEEDS[0]) + make_buffer(num_floats, SEEDS[1])) * np.float32(0.5)


class ExchangeSide(Protocol):
    """One process's half of a pairwise exchange. Built by a picklable factory
    ``factory(rank, num_floats)`` inside the worker process; only ``exchange`` is timed."""

    def address(self) -> str:
        """What the other side needs to reach this one (may be empty if it needs nothing)."""

    def connect(self, peer_address: str) -> None:
        """Finish set-up once the other side's address is known."""

    def reset(self) -> None:
        """Restore this side's original buffer before a repetition."""

    def exchange(self) -> dict[str, float]:
        """Run one exchange; return when this process holds the average. May return named
        extra timings (seconds) measured inside the worker."""

    def result(self) -> np.ndarray:
        """This side's buffer after the exchange (float32, num_floats)."""

    def disconnect(self) -> None:
        """Drop connections to the peer (both sides do this before either closes, so no side
        ever sees its peer's server vanish under an open connection)."""

    def close(self) -> None:
        """Release servers and helper processes."""


@dataclass(frozen=True)
class PairTimeouts:
    """Bounds on every wait of the coordinator, in seconds."""

    setup_s: float = 120.0  # worker start-up incl. imports, servers, DHT bootstrap
    exchange_s: float = 120.0  # one exchange, go -> both done
    check_s: float = 60.0  # reset / verification steps around an exchange
    stop_s: float = 15.0  # graceful stop before the process group is killed


@dataclass
class PairRep:
    """One timed repetition: coordinator wall time, each worker's extra timings, and how many
    failed attempts (``RoundFailed``) were run again before this one succeeded."""

    wall_s: float
    extras: list[dict[str, float]] = field(default_factory=list)
    failed_before: int = 0


class WorkerError(RuntimeError):
    """A worker failed (set-up, exchange or verification); carries its traceback."""


class RoundFailed(Exception):
    """Raised by ``ExchangeSide.exchange`` for a round that failed but left the side usable."""


def _worker_main(
    conn: multiprocessing.connection.Connection,
    factory: Callable[[int, int], ExchangeSide],
    rank: int,
    num_floats: int,
    atol: float,
) -> None:
    """Worker loop: build the side, connect it, then obey arm / go / check / disconnect until
    told to stop; any failure goes back to the coordinator as an "error" with its traceback."""
    os.setsid()  # own process group, so the coordinator can kill helpers (p2pd, averager) with it
    side = None
    try:
        side = factory(rank, num_floats)
        conn.send(("ready", side.address()))
        _, peer_address = conn.recv()
        side.connect(peer_address)
        conn.send(("connected", None))
        expected = expected_average(num_floats)
        while (command := conn.recv()) != "stop":
            conn.send(_obey(side, command, rank, expected, atol))
    except BaseException:  # report every failure to the coordinator, then exit
        conn.send(("error", f"rank {rank}:\n{traceback.format_exc()}"))
    finally:
        if side is not None:
            side.close()


def _obey(side: ExchangeSide, command: str, rank: int, expected: np.ndarray, atol: float) -> tuple[str, Any]:
    """Carry out one coordinator command on ``side``; the (tag, payload) reply to send back."""
    if command == "disconnect":
        side.disconnect()
        return "disconnected", None
    if command == "arm":
        side.reset()
        return "armed", None
    if command == "go":
        try:
            return "done", side.exchange()
        except RoundFailed as exc:
            return "failed", f"rank {rank}: {exc}"
    if command == "check":
        np.testing.assert_allclose(side.result(), expected, rtol=0, atol=atol)
        return "verified", None
    raise ValueError(f"unknown command {command!r}")


def _expect(conns: list[multiprocessing.connection.Connection], tag: str, timeout_s: float) -> list[Any]:
    """Wait (bounded) for one ``tag`` message from every worker; return their payloads in rank
    order. Raises WorkerError on a worker error or a timeout."""
    return [payload for _, payload in _gather(conns, (tag,), timeout_s)]


def _gather(
    conns: list[multiprocessing.connection.Connection], tags: tuple[str, ...], timeout_s: float
) -> list[tuple[str, Any]]:
    """Wait (bounded) for one message tagged with any of ``tags`` from every worker; return
    (tag, payload) in rank order. Raises WorkerError on a worker error or a timeout."""
    tag = "/".join(tags)
    deadline = time.monotonic() + timeout_s
    payloads: list[tuple[str, Any]] = [("", None)] * len(conns)
    pending = set(range(len(conns)))
    while pending:
        remaining = deadline - time.monotonic()
        ready = multiprocessing.connection.wait([conns[i] for i in pending], timeout=max(0.0, remaining))
        if not ready:
            raise WorkerError(f"timed out after {timeout_s:.0f} s waiting for {tag!r} from {sorted(pending)}")
        for conn in ready:
            rank = conns.index(conn)
            try:
                got, payload = conn.recv()
            except EOFError as exc:
                raise WorkerError(f"rank {rank} exited while the coordinator waited for {tag!r}") from exc
            if got == "error":
                raise WorkerError(payload)
            if got not in tags:
                raise WorkerError(f"rank {rank} sent {got!r}, expected {tag!r}")
            payloads[rank] = (got, payload)
            pending.discard(rank)
    return payloads


def _stop(procs: list[multiprocessing.process.BaseProcess], conns, timeout_s: float) -> None:
    """Ask workers to disconnect, then to stop; wait (bounded), then kill each worker's process
    group by its PID."""
    try:
        for conn in conns:
            conn.send("disconnect")
        _expect(conns, "disconnected", timeout_s)
    except (WorkerError, BrokenPipeError, OSError) as exc:
        logger.debug("orderly disconnect failed (%s); stopping anyway", exc)
    for conn in conns:
        try:
            conn.send("stop")
        except (BrokenPipeError, OSError):
            pass
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        proc.join(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.pid is None:
            continue
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group outlives a graceful exit only through helpers
        except (ProcessLookupError, PermissionError):
            pass
        proc.join(timeout=5)


def _one_rep(conns: list[multiprocessing.connection.Connection], timeouts: PairTimeouts) -> PairRep | None:
    """Arm both workers, time one exchange, check both results; None if a side's round failed."""
    for conn in conns:
        conn.send("arm")
    _expect(conns, "armed", timeouts.check_s)
    t0 = time.perf_counter()
    for conn in conns:
        conn.send("go")
    outcomes = _gather(conns, ("done", "failed"), timeouts.exchange_s)
    wall_s = time.perf_counter() - t0
    failures = [payload for tag, payload in outcomes if tag == "failed"]
    if failures:
        logger.warning("round failed after %.1f s, running it again: %s", wall_s, "; ".join(failures))
        return None
    for conn in conns:
        conn.send("check")
    _expect(conns, "verified", timeouts.check_s)
    return PairRep(wall_s=wall_s, extras=[payload for _, payload in outcomes])


def _spawn_workers(
    procs: list[multiprocessing.process.BaseProcess],
    conns: list[multiprocessing.connection.Connection],
    factory: Callable[[int, int], ExchangeSide],
    num_floats: int,
    atol: float,
) -> None:
    """Start the two worker processes, appending each (and its pipe end) as soon as it runs."""
    ctx = multiprocessing.get_context("spawn")
    for rank in range(2):
        parent_end, child_end = ctx.Pipe()
        # Not daemonic: a worker may start helper processes (hivemind's DHT and averager).
        # The caller stops them either way.
        proc = ctx.Process(target=_worker_main, args=(child_end, factory, rank, num_floats, atol))
        proc.start()
        child_end.close()
        procs.append(proc)
        conns.append(parent_end)


def time_pair(
    factory: Callable[[int, int], ExchangeSide],
    num_floats: int,
    reps: int,
    warmup: int,
    *,
    atol: float = 0.0,
    max_failed: int = 0,
    timeouts: PairTimeouts = PairTimeouts(),
) -> list[PairRep]:
    """Time ``reps`` pairwise exchanges (after ``warmup`` untimed ones) between two worker
    processes built by ``factory``; see the module docstring for exactly what is timed.
    ``atol`` is the absolute tolerance of the result check (0 = bit-exact); ``max_failed`` the
    number of ``RoundFailed`` attempts tolerated (and run again) in the whole call."""
    if reps < 1 or warmup < 0 or num_floats < 1:
        raise ValueError(f"need reps >= 1, warmup >= 0, num_floats >= 1; got {reps}, {warmup}, {num_floats}")
    procs: list[multiprocessing.process.BaseProcess] = []
    conns: list[multiprocessing.connection.Connection] = []
    try:
        _spawn_workers(procs, conns, factory, num_floats, atol)
        addresses = _expect(conns, "ready", timeouts.setup_s)
        for rank, conn in enumerate(conns):
            conn.send(("peer", addresses[1 - rank]))
        _expect(conns, "connected", timeouts.setup_s)
        reps_out: list[PairRep] = []
        failed_total = 0
        for index in range(warmup + reps):
            failed_before = 0
            while (rep := _one_rep(conns, timeouts)) is None:
                failed_before += 1
                failed_total += 1
                if failed_total > max_failed:
                    raise WorkerError(f"{failed_total} failed rounds, more than the {max_failed} tolerated")
            rep.failed_before = failed_before
            if index >= warmup:
                reps_out.append(rep)
            kind = "timed" if index >= warmup else "warm-up"
            logger.debug("rep %d (%s): %.4f s %s", index, kind, rep.wall_s, rep.extras)
        return reps_out
    finally:
        _stop(procs, conns, timeouts.stop_s)
