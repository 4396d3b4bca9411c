"""How fast dssl's gossip moves a ResNet-18's parameters, against plain grpcio and hivemind.

The payload is the flattened parameters of timm ``resnet18`` (11,689,512 float32, 44.6 MiB). In one
run on this machine it measures, with warm-up repetitions discarded and medians reported:

* ``raw``      plain grpcio pairwise exchange (``benchmarks/_raw_grpc.py``): the practical limit;
* ``gossip``   one pairwise exchange between two dssl peers in separate processes, each a
               ``GossipRunner`` (the trainer's facade): publish is the arming step (untimed, like
               the raw baseline's publish), then ``mix()`` pulls the other's snapshot over the
               ``dssl.gossip.v1.Gossip`` stream (CRC-checked chunks) and mixes with MH weights;
               fp32 on the wire, plus an fp16-on-the-wire variant;
* ``hivemind`` one ``DecentralizedAverager`` round between two processes (``_hivemind_avg.py``);
* a 4-node ring round (4 processes, each pulls 2 neighbours and mixes).

Every exchange is verified against the expected average (bit-exact for fp32). The whole benchmark
(raw, gossip, hivemind) is repeated ``--repeats`` times (5) in one run; each repetition gives its
ratios, and the last line holds their medians and spread::

    RESULT raw_s=<x> gossip_s=<x> hivemind_s=<x> gossip_over_raw=<x> gossip_over_raw_min=<x>
           gossip_over_raw_max=<x> hivemind_over_gossip=<x> hivemind_over_gossip_min=<x> repeats=<n>

Run: ``.venv/bin/python benchmarks/gossip_bench.py [--reps 7 --warmup 2]``. Absolute times depend on
how busy the machine is; the ratios of one run are what count.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import SEEDS, make_buffer, time_pair  # noqa: E402
from gossip import topology  # noqa: E402
from gossip.membership import StaticMembership  # noqa: E402
from gossip.node import NodeConfig  # noqa: E402
from gossip.runner import GossipRunner  # noqa: E402
from protocol.frames import DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES  # noqa: E402
from protocol.records import PeerRecord  # noqa: E402

EXCHANGE_TIMEOUT_S = 120.0  # one mix(); generous because the machine's cores are shared
PULL_DEADLINE_S = 60.0  # per neighbour pull inside a mix
FP16_ATOL = 4e-3  # fp16 rounding of N(0,1) values (|x| < 8: error < 2^-11 * 8), halved by the mean
# fp32: the mix is θ_i − ½(θ_i − θ_j) (RoundMixer's fused path), within a few float32 ulps of the exact
# average: |x| < 8 -> ulp <= 2^-20, so 4e-6 bounds it; any real error (a lost chunk) is O(1)
FP32_ATOL = 4e-6


def resnet18_num_floats() -> int:
    """Number of parameters of timm's resnet18: the length of the flat buffer a peer publishes."""
    from peer.torchvision_shim import ensure_torchvision_importable

    ensure_torchvision_importable()  # before timm is imported (timm imports torchvision)
    import timm

    model = timm.create_model("resnet18", pretrained=False)
    flat = torch.nn.utils.parameters_to_vector(model.parameters())
    return flat.numel()


# ---- the gossip side of a pairwise exchange (runs inside a time_pair worker process) -----------


def _node_config(
    peer_id: str, num_floats: int, wire_dtype: str, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> NodeConfig:
    return NodeConfig(
        swarm_id="bench",
        peer_id=peer_id,
        layout_fingerprint=f"flat-fp32-{num_floats}",
        wire_dtype=wire_dtype,
        pull_deadline_s=PULL_DEADLINE_S,
        chunk_bytes=chunk_bytes,
    )


class GossipSide:
    """One process of the gossip exchange: a GossipRunner over a two-peer static membership."""

    def __init__(
        self, rank: int, num_floats: int, wire_dtype: str = "fp32", chunk_bytes: int = DEFAULT_CHUNK_BYTES
    ):
        torch.set_num_threads(1)  # two processes share the machine's two cores, like the baselines
        self._rank = rank
        self._config = _node_config(f"p{rank}", num_floats, wire_dtype, chunk_bytes)
        self._original = torch.from_numpy(make_buffer(num_floats, SEEDS[rank]))
        self._membership = StaticMembership({})
        self._runner = GossipRunner.start(self._config, self._membership, topology.parse("full"))
        self._round = -1
        self._result: np.ndarray | None = None

    def address(self) -> str:
        return self._runner.address

    def connect(self, peer_address: str) -> None:
        peer_id = f"p{1 - self._rank}"
        self._membership.announce(PeerRecord(peer_id, peer_address, 0, self._config.layout_fingerprint))

    def reset(self) -> None:
        """Publish the original buffer as the next round (copy + CRCs + frames), like raw's publish."""
        self._round += 1
        if self._result is not None:  # checked already: hand the buffer back, as a trainer would
            self._runner.recycle(torch.from_numpy(self._result))
            self._result = None
        self._runner.publish(self._original, self._round)
        self._runner.wait_published(EXCHANGE_TIMEOUT_S)

    def exchange(self) -> dict[str, float]:
        result = self._runner.mix().result(EXCHANGE_TIMEOUT_S)
        if result.answered != 1:
            raise RuntimeError(f"neighbour did not answer: {result.neighbours}")
        self._result = result.params.numpy()  # shares memory with result.params
        return {"pull_s": result.pull_seconds, "mix_s": result.mix_seconds}

    def result(self) -> np.ndarray:
        return self._result

    def disconnect(self) -> None:
        pass  # channels close with the runner

    def close(self) -> None:
        self._runner.close()


class GossipSideFp16(GossipSide):
    def __init__(self, rank: int, num_floats: int):
        super().__init__(rank, num_floats, wire_dtype="fp16")


class GossipSide4MiB(GossipSide):
    def __init__(self, rank: int, num_floats: int):
        super().__init__(rank, num_floats, chunk_bytes=MAX_CHUNK_BYTES)


def measure(num_floats: int, reps: int = 5, warmup: int = 2, variant: str = "fp32"):
    """Timed gossip pairwise exchanges (``benchmarks.time_pair`` timing) of one variant:
    "fp32" (defaults: 1 MiB chunks, as raw), "fp16" (fp16 on the wire) or "fp32-4mib" (4 MiB chunks)."""
    side, atol = {
        "fp32": (GossipSide, FP32_ATOL),
        "fp16": (GossipSideFp16, FP16_ATOL),
        "fp32-4mib": (GossipSide4MiB, FP32_ATOL),
    }[variant]
    return time_pair(side, num_floats, reps, warmup, atol=atol)


# ---- a 4-node ring round ----------------------------------------------------------------------


def _ring_worker(conn, rank: int, n: int, num_floats: int) -> None:
    """One ring peer: serve, learn everyone's address, then publish / mix on command."""
    os.setsid()
    torch.set_num_threads(1)
    runner = None
    try:
        membership = StaticMembership({})
        config = _node_config(f"p{rank}", num_floats, "fp32")
        runner = GossipRunner.start(config, membership, topology.parse("ring"))
        own = torch.from_numpy(make_buffer(num_floats, 5000 + rank))
        conn.send(runner.address)
        for peer_rank, address in enumerate(conn.recv()):
            membership.announce(PeerRecord(f"p{peer_rank}", address, 0, config.layout_fingerprint))
        round, result = 0, None
        while (command := conn.recv()) != "stop":
            if command == "arm":
                if result is not None:
                    runner.recycle(result.params)
                runner.publish(own, round)
                runner.wait_published(EXCHANGE_TIMEOUT_S)
                conn.send("armed")
            elif command == "go":
                result = runner.mix().result(EXCHANGE_TIMEOUT_S)
                round += 1
                conn.send((result.answered, result.self_weight, result.pull_seconds, result.mix_seconds))
    except BaseException as exc:  # report to the coordinator, then exit
        conn.send(("error", repr(exc)))
    finally:
        if runner is not None:
            runner.close()


@dataclass
class RingRep:
    wall_s: float
    pull_s: float  # slowest peer's pull time
    mix_s: float  # slowest peer's mix time


def measure_ring(num_floats: int, reps: int, warmup: int, n: int = 4) -> list[RingRep]:
    """Wall time from "go" to every ring peer holding its mixed buffer (publish untimed)."""
    ctx = multiprocessing.get_context("spawn")
    pipes, procs = [], []
    try:
        for rank in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_ring_worker, args=(child, rank, n, num_floats))
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        addresses = [_recv(p) for p in pipes]
        for p in pipes:
            p.send(addresses)
        out = []
        for index in range(warmup + reps):
            rep = _ring_round(pipes)
            if index >= warmup:
                out.append(rep)
        return out
    finally:
        _stop_ring(pipes, procs)


def _ring_round(pipes) -> RingRep:
    """One timed ring round: arm every peer, then "go" and wait for every mixed buffer."""
    for p in pipes:
        p.send("arm")
    [_recv(p) for p in pipes]
    t0 = time.perf_counter()
    for p in pipes:
        p.send("go")
    done = [_recv(p) for p in pipes]
    wall = time.perf_counter() - t0
    if any(answered != 2 or abs(w - 1 / 3) > 1e-9 for answered, w, _, _ in done):
        raise RuntimeError(f"ring round incomplete: {done}")
    return RingRep(wall, max(d[2] for d in done), max(d[3] for d in done))


def _stop_ring(pipes, procs) -> None:
    """Ask every ring worker to stop; kill the process group of any that does not within 15 s."""
    for p in pipes:
        try:
            p.send("stop")
        except (BrokenPipeError, OSError):
            pass
    for proc in procs:
        proc.join(15)
        if proc.pid is not None and proc.exitcode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.join(5)


def _recv(pipe, timeout_s: float = EXCHANGE_TIMEOUT_S):
    if not pipe.poll(timeout_s):
        raise RuntimeError(f"ring worker silent for {timeout_s:.0f} s")
    message = pipe.recv()
    if isinstance(message, tuple) and message and message[0] == "error":
        raise RuntimeError(f"ring worker failed: {message[1]}")
    return message


# ---- main -------------------------------------------------------------------------------------


def _ms(values) -> str:
    return " ".join(f"{v * 1e3:.0f}" for v in values)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per system (>= 5)")
    parser.add_argument("--warmup", type=int, default=2, help="discarded repetitions before timing")
    parser.add_argument(
        "--repeats", type=int, default=5, help="repetitions of the whole benchmark (medians of their ratios)"
    )
    parser.add_argument("--floats", type=int, default=0, help="payload floats (default: timm resnet18's)")
    parser.add_argument(
        "--skip-hivemind", action="store_true", help="no hivemind baseline (RESULT then reports nan)"
    )
    return parser.parse_args(argv)


def _gossip_variants(num_floats: int, reps: int, warmup: int) -> list[float]:
    """Time our gossip (fp32, 4 MiB chunks, fp16 wire, a 4-ring) and print each; the fp32 walls."""
    gossip_reps = measure(num_floats, reps, warmup)
    gossip = [r.wall_s for r in gossip_reps]
    pull = [max(e["pull_s"] for e in r.extras) for r in gossip_reps]
    mix = [max(e["mix_s"] for e in r.extras) for r in gossip_reps]
    print(
        f"dssl gossip fp32:       median {statistics.median(gossip) * 1e3:7.1f} ms  ({_ms(gossip)}); "
        f"inside: pull {statistics.median(pull) * 1e3:.1f} ms, mix {statistics.median(mix) * 1e3:.1f} ms "
        f"(overlapping)",
        flush=True,
    )
    big = [r.wall_s for r in measure(num_floats, reps, warmup, variant="fp32-4mib")]
    print(
        f"dssl gossip fp32 4 MiB chunks: median {statistics.median(big) * 1e3:7.1f} ms  ({_ms(big)})",
        flush=True,
    )
    half = [r.wall_s for r in measure(num_floats, reps, warmup, variant="fp16")]
    print(
        f"dssl gossip fp16 wire:  median {statistics.median(half) * 1e3:7.1f} ms  ({_ms(half)})", flush=True
    )
    ring = measure_ring(num_floats, reps, warmup)
    print(
        f"dssl gossip 4-ring:     median {statistics.median(r.wall_s for r in ring) * 1e3:7.1f} ms  "
        f"({_ms(r.wall_s for r in ring)}); slowest peer pull "
        f"{statistics.median(r.pull_s for r in ring) * 1e3:.1f} ms",
        flush=True,
    )
    return gossip


def _hivemind_median(num_floats: int, reps: int, warmup: int) -> float:
    from benchmarks import _hivemind_avg

    hive = _hivemind_avg.measure(num_floats, reps, warmup)
    print(
        f"hivemind averager:      median {statistics.median(hive) * 1e3:7.1f} ms  ({_ms(hive)})", flush=True
    )
    return statistics.median(hive)


def _repeat(num_floats: int, args: argparse.Namespace, index: int) -> tuple[float, float, float]:
    """One repetition of the whole benchmark: (raw, gossip fp32, hivemind) medians. The variants
    (4 MiB chunks, fp16 wire, 4-ring) run in the first repetition only."""
    from benchmarks import _raw_grpc

    print(f"-- repetition {index + 1} of {args.repeats}", flush=True)
    raw = _raw_grpc.measure(num_floats, args.reps, args.warmup)
    print(f"raw grpc pairwise:      median {statistics.median(raw) * 1e3:7.1f} ms  ({_ms(raw)})", flush=True)
    if index == 0:
        gossip = _gossip_variants(num_floats, args.reps, args.warmup)
    else:
        gossip = [r.wall_s for r in measure(num_floats, args.reps, args.warmup)]
        print(f"dssl gossip fp32:       median {statistics.median(gossip) * 1e3:7.1f} ms  ({_ms(gossip)})")
    hivemind_s = float("nan") if args.skip_hivemind else _hivemind_median(num_floats, args.reps, args.warmup)
    return statistics.median(raw), statistics.median(gossip), hivemind_s


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    num_floats = args.floats or resnet18_num_floats()
    print(
        f"payload: {num_floats} float32 = {num_floats * 4 / 2**20:.1f} MiB (timm resnet18 flat params)"
        if not args.floats
        else f"payload: {num_floats} float32",
        flush=True,
    )
    repeats = [_repeat(num_floats, args, i) for i in range(args.repeats)]
    over_raw = [g / r for r, g, _ in repeats]
    hive_over = [h / g for _, g, h in repeats]
    print(
        f"gossip / raw per repetition: {' '.join(f'{x:.3f}' for x in over_raw)}; "
        f"median [min, max] {_spread(over_raw)}"
    )
    print(f"hivemind / gossip per repetition: {' '.join(f'{x:.2f}' for x in hive_over)}")
    raw_s, gossip_s, hivemind_s = (statistics.median(column) for column in zip(*repeats))
    print(
        f"RESULT raw_s={raw_s:.4f} gossip_s={gossip_s:.4f} hivemind_s={hivemind_s:.4f} "
        f"gossip_over_raw={statistics.median(over_raw):.3f} gossip_over_raw_min={min(over_raw):.3f} "
        f"gossip_over_raw_max={max(over_raw):.3f} hivemind_over_gossip={statistics.median(hive_over):.2f} "
        f"hivemind_over_gossip_min={min(hive_over):.2f} repeats={args.repeats}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
