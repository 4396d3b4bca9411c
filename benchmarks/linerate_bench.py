"""How close dssl's gossip comes to line rate on shaped links between two network namespaces.

Two namespace "hosts" joined by a link shaped with ``tc tbf`` (``benchmarks/_netns_links.py``):

* ``1g``          1 Gbit/s each way, no added delay (veth pair);
* ``100m_rtt30``  100 Mbit/s each way and 30 ms round trip (15 ms each way; this kernel has no
                  netem, so the delay is a userspace delay line between two TUN devices).

On each link, a dssl gossip peer runs in each namespace (``benchmarks/_netns_peer.py``: a
``GossipRunner``, plaintext or mutual TLS with ``launcher.certs`` certificates) holding a
ResNet-18-sized fp32 buffer (timm ``resnet18``: 11,689,512 floats, 44.6 MiB), and the benchmark times

* ``pull``      one peer's ``mix()``: it pulls the other's snapshot and averages it;
* ``exchange``  both peers ``mix()`` at once: each pulls the other's (full duplex: each direction
                carries one payload);
* ``tcp``       (baseline) the same bytes sent once over a plain TCP socket, for the ceiling.

Each repetition is armed untimed (both peers publish the next round), then timed from the
coordinator's "mix" commands to the last answer; every result is checked bit-exact against the
average of both buffers (untimed). The channel of the warm-up repetition is reused, so the
handshake is not timed, but each pull starts after an idle gap, as a gossip round does (Linux
restarts TCP slow start after an idle RTO). Efficiency = payload bits / (line rate x median time).
The last line is ``RESULT eff_1g_pull=.. eff_1g_exchange=.. eff_1g_pull_tls=.. ... eff_1g_tcp=..
eff_100m_rtt30_pull=.. ...`` (one field per case run).

Run (root): ``.venv/bin/python benchmarks/linerate_bench.py [--reps 5 --warmup 1]``; tuning runs
add ``--grpc-option grpc.NAME=INT`` (overrides ``gossip._grpc`` in both peers), ``--chunk-bytes``
or ``--no-idle-slow-start`` (``net.ipv4.tcp_slow_start_after_idle=0`` in both namespaces). The
peers need real CPU at 1 Gbit/s (125 MB/s through protobuf frames, CRCs and TLS); the load average
before and after is printed, because numbers from a busy machine understate the transport.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._netns_links import LinkSpec, ShapedPair, shaped_pair  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESNET18_FLOATS = 11_689_512  # timm resnet18's parameter count (benchmarks/gossip_bench.py counts it)
LINKS = {"1g": LinkSpec(rate_mbit=1000), "100m_rtt30": LinkSpec(rate_mbit=100, rtt_ms=30)}
MODES = ("pull", "exchange", "tcp")
SECURITY = ("plain", "tls")
TCP_GAP_S = 0.5  # idle seconds before each TCP baseline send (gossip reps idle while arming)
START_S = 120.0  # a peer's start-up: imports, the buffer, the server
STEP_S = 300.0  # one arm / mix / check: 45 MiB over 100 Mbit/s is ~4 s; a starved CPU is slower


def efficiency(payload_bytes: int, rate_bps: float, seconds: float) -> float:
    """Payload bits over what the link could carry in ``seconds`` (each direction, full duplex)."""
    if payload_bytes <= 0 or rate_bps <= 0 or seconds <= 0:
        raise ValueError(f"need positive bytes, rate and time; got {payload_bytes}, {rate_bps}, {seconds}")
    return payload_bytes * 8 / (rate_bps * seconds)


def result_key(link: str, mode: str, security: str) -> str:
    """The RESULT field of one case: ``eff_<link>_<mode>`` plus ``_tls`` for mutual TLS."""
    return f"eff_{link}_{mode}" + ("_tls" if security == "tls" else "")


@dataclass
class Case:
    """The timings of one (link, mode, security) case."""

    link: str
    mode: str
    security: str
    seconds: list[float] = field(default_factory=list)
    inside_pull_s: list[float] = field(default_factory=list)  # slowest peer's pull, measured inside

    def median_s(self) -> float:
        return statistics.median(self.seconds)


class PeerProcess:
    """A ``benchmarks._netns_peer`` process inside a namespace, driven by JSON lines."""

    def __init__(self, command: list[str]):
        self.proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._buffer = b""

    def send(self, **command: Any) -> None:
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def recv(self, timeout_s: float) -> dict[str, Any]:
        """The next answer (bounded wait); raises RuntimeError on a failure, a timeout or an exit."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.proc.stdout], [], [], remaining)[0]:
                raise RuntimeError(f"peer pid {self.proc.pid} silent for {timeout_s:.0f} s")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"peer pid {self.proc.pid} exited (code {self.proc.wait(5)})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer = json.loads(line)
        if not answer.get("ok"):
            raise RuntimeError(f"peer pid {self.proc.pid}: {answer.get('error')}")
        return answer

    def close(self) -> None:
        """Ask it to stop; kill it by PID if it has not exited 15 s later."""
        try:
            self.send(cmd="stop")
            self.proc.stdin.close()
            self.proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)


def _start_peers(pair: ShapedPair, args: argparse.Namespace, tls_dir: str) -> list[PeerProcess]:
    peers: list[PeerProcess] = []
    try:
        for rank, (namespace, host) in enumerate(((pair.a, pair.addr_a), (pair.b, pair.addr_b))):
            command = [*pair.exec_prefix(namespace), sys.executable, "-m", "benchmarks._netns_peer"]
            command += ["--rank", str(rank), "--host", host, "--floats", str(args.floats)]
            command += ["--chunk-bytes", str(args.chunk_bytes)] + (["--tls-dir", tls_dir] if tls_dir else [])
            command += [f"--grpc-option={option}" for option in args.grpc_option]
            peers.append(PeerProcess(command))
        addresses = [peer.recv(START_S)["address"] for peer in peers]
        for rank, peer in enumerate(peers):
            peer.send(cmd="peer", address=addresses[1 - rank])
            peer.recv(STEP_S)
        return peers
    except BaseException:
        _close_all(peers)
        raise


def _close_all(peers: list[PeerProcess]) -> None:
    for peer in peers:
        peer.close()


def _one_rep(peers: list[PeerProcess], mode: str) -> tuple[float, float]:
    """Arm both, time one pull (peer 0 mixes) or exchange (both mix), check; (wall s, inside pull s)."""
    for peer in peers:
        peer.send(cmd="arm")
    for peer in peers:
        peer.recv(STEP_S)
    mixers = peers[:1] if mode == "pull" else peers
    t0 = time.perf_counter()
    for peer in mixers:
        peer.send(cmd="mix")
    answers = [peer.recv(STEP_S) for peer in mixers]
    wall = time.perf_counter() - t0
    for peer in mixers:
        peer.send(cmd="check")
        peer.recv(STEP_S)
    return wall, max(a["pull_s"] for a in answers)


def run_gossip(pair: ShapedPair, link: str, security: str, modes: list[str], args) -> list[Case]:
    """Start two peers on ``pair`` (TLS certificates made for its addresses), time every mode."""
    tls_dir = tempfile.mkdtemp(prefix="dssl-linerate-tls-") if security == "tls" else ""
    try:
        if tls_dir:
            from launcher.certs import write_swarm_tls

            write_swarm_tls(tls_dir, "linerate", ["p0", "p1"], hosts=[pair.addr_a, pair.addr_b])
        peers = _start_peers(pair, args, tls_dir)
        try:
            cases = []
            for mode in (m for m in modes if m != "tcp"):
                case = Case(link, mode, security)
                for index in range(args.warmup + args.reps):
                    wall, inside = _one_rep(peers, mode)
                    if index >= args.warmup:
                        case.seconds.append(wall)
                        case.inside_pull_s.append(inside)
                cases.append(case)
            return cases
        finally:
            _close_all(peers)
    finally:
        if tls_dir:
            shutil.rmtree(tls_dir, ignore_errors=True)


def run_tcp(pair: ShapedPair, link: str, args: argparse.Namespace) -> Case:
    """The baseline: the payload's bytes over one plain TCP connection, same idle gap per rep."""
    module = [sys.executable, "-m", "benchmarks._netns_tcp"]
    sink = subprocess.Popen(
        [*pair.exec_prefix(pair.b), *module, "sink", pair.addr_b], cwd=ROOT, stdout=subprocess.PIPE
    )
    try:
        if not select.select([sink.stdout], [], [], START_S)[0]:
            raise RuntimeError("TCP sink did not start")
        port = sink.stdout.readline().decode().strip()
        reps = args.warmup + args.reps
        sender = [*pair.exec_prefix(pair.a), *module, "send", pair.addr_b, port]
        sender += [str(args.floats * 4), str(reps), str(TCP_GAP_S)]
        done = subprocess.run(sender, cwd=ROOT, capture_output=True, text=True, timeout=reps * STEP_S)
        if done.returncode != 0:
            raise RuntimeError(f"TCP sender failed: {done.stderr.strip()}")
        seconds = json.loads(done.stdout)[args.warmup :]
        return Case(link, "tcp", "plain", seconds, list(seconds))
    finally:
        sink.kill()  # by its PID; it holds no state worth a graceful stop
        sink.wait(timeout=5)


# ---- report -----------------------------------------------------------------------------------


def table(cases: list[Case], payload_bytes: int) -> str:
    """One line per case: median wall time, efficiency, inside-pull median and every rep."""
    lines = [f"{'link':<11} {'mode':<9} {'security':<8} {'median s':>9} {'eff':>6} {'pull s':>7}  reps (s)"]
    for c in cases:
        eff = efficiency(payload_bytes, LINKS[c.link].rate_bps, c.median_s())
        reps = " ".join(f"{s:.3f}" for s in c.seconds)
        lines.append(
            f"{c.link:<11} {c.mode:<9} {c.security:<8} {c.median_s():>9.3f} {eff:>6.3f} "
            f"{statistics.median(c.inside_pull_s):>7.3f}  {reps}"
        )
    return "\n".join(lines)


def result_line(cases: list[Case], payload_bytes: int) -> str:
    fields = [
        f"{result_key(c.link, c.mode, c.security)}="
        f"{efficiency(payload_bytes, LINKS[c.link].rate_bps, c.median_s()):.3f}"
        for c in cases
    ]
    return "RESULT " + " ".join(fields)


def _csv(choices: tuple[str, ...] | list[str]):
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if item not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices)}; got {text!r}")
        return items

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from protocol.frames import DEFAULT_CHUNK_BYTES, check_chunk_bytes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per case (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first (connects)")
    parser.add_argument("--floats", type=int, default=RESNET18_FLOATS, help="payload fp32 count")
    parser.add_argument("--links", type=_csv(list(LINKS)), default=list(LINKS), help="comma list")
    parser.add_argument("--modes", type=_csv(MODES), default=list(MODES), help="comma list")
    parser.add_argument("--security", type=_csv(SECURITY), default=list(SECURITY), help="comma list")
    parser.add_argument("--chunk-bytes", type=int, default=DEFAULT_CHUNK_BYTES, help="served chunk size")
    parser.add_argument(
        "--grpc-option",
        action="append",
        default=[],
        metavar="NAME=INT",
        help="tuning: override a gossip._grpc option",
    )
    parser.add_argument(
        "--no-idle-slow-start", action="store_true", help="tuning: sysctl tcp_slow_start_after_idle=0 in both"
    )
    args = parser.parse_args(argv)
    bad = [o for o in args.grpc_option if not re.fullmatch(r"grpc\.[\w.]+=-?\d+", o)]
    if bad:
        parser.error(f"--grpc-option takes NAME=INT with a grpc.* name; got {bad}")
    if args.reps < 1 or args.warmup < 0 or args.floats < 1:
        got = f"{args.reps}, {args.warmup}, {args.floats}"
        parser.error(f"need --reps >= 1, --warmup >= 0, --floats >= 1 (got {got})")
    try:
        check_chunk_bytes(args.chunk_bytes)
    except ValueError as exc:
        parser.error(f"--chunk-bytes: {exc}")
    return args


def run_link(link: str, args: argparse.Namespace) -> list[Case]:
    """Every requested mode and security on one freshly built, shaped link."""
    cases: list[Case] = []
    with shaped_pair(LINKS[link]) as pair:
        if args.no_idle_slow_start:
            for namespace in (pair.a, pair.b):
                sysctl = [
                    *pair.exec_prefix(namespace),
                    "sysctl",
                    "-qw",
                    "net.ipv4.tcp_slow_start_after_idle=0",
                ]
                subprocess.run(sysctl, check=True, timeout=10)
        gossip_modes = [m for m in args.modes if m != "tcp"]
        for security in args.security if gossip_modes else []:
            cases += run_gossip(pair, link, security, gossip_modes, args)
            print(table(cases[-len(gossip_modes) :], args.floats * 4), flush=True)
        if "tcp" in args.modes:
            cases.append(run_tcp(pair, link, args))
    return cases


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM unwind through every ``finally`` (peers stopped, namespaces deleted),
    even when the shell started us with SIGINT ignored (a background job)."""

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _stop_on_signals()
    payload_bytes = args.floats * 4
    print(
        f"payload {payload_bytes / 2**20:.1f} MiB fp32, chunks {args.chunk_bytes >> 10} KiB, "
        f"{args.reps} reps after {args.warmup} warm-up; load average before {os.getloadavg()[0]:.2f}; "
        f"tuning: {args.grpc_option or 'none'}{', no idle slow start' if args.no_idle_slow_start else ''}",
        flush=True,
    )
    cases = [case for link in args.links for case in run_link(link, args)]
    print(table(cases, payload_bytes))
    print(f"load average after {os.getloadavg()[0]:.2f} (1 min); {os.cpu_count()} CPUs")
    print(result_line(cases, payload_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
