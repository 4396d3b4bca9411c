"""The "hivemind" baseline: one ``hivemind.averaging.DecentralizedAverager`` round between two
processes on one flat float32 tensor — the system users would otherwise pick.

Each process runs its own ``hivemind.DHT`` (rank 1 bootstraps from rank 0's visible multiaddrs)
with the flags of docs/design.md §4: listen on 127.0.0.1 only, no NAT port mapping, no AutoNAT, no
relays (hivemind's libp2p TLS stays at its default, on). The averager uses ``target_group_size=2``
(a full group forms the moment the second peer joins, so ``min_matchmaking_time`` bounds only a
failed search; hivemind's default matchmaking times are kept, see ``_AVERAGER_ARGS``), finite
``allreduce_timeout`` / ``next_chunk_timeout``, and no state sharing (it would only add DHT
traffic). One exchange is one ``averager.step(...)`` with a timeout; after it,
both tensors must equal the average of both seeded buffers (checked to 1e-6, since hivemind averages
part by part with weights).

Timing: ``benchmarks.time_pair`` — coordinator wall time from the "go" sent to both processes to
both ``step()`` calls having returned, after both are armed (tensors restored), warm-up discarded.
That is what users pay per round, matchmaking included. Each process also splits its own step at
the moment its StepControl enters RUNNING_ALLREDUCE (stage polled every 2 ms while blocking on the
result, so the step's end is seen at once): ``measure_split`` reports, per round, the larger of
the two processes' matchmaking and all-reduce parts.

Run alone: ``.venv/bin/python benchmarks/_hivemind_avg.py`` (resnet18 size, prints medians).
"""

from __future__ import annotations

import logging
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hivemind
import numpy as np
import torch
from hivemind.averaging import DecentralizedAverager
from hivemind.averaging.control import AveragingStage

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import SEEDS, PairRep, RoundFailed, make_buffer, time_pair  # noqa: E402

RESNET18_FLOATS = 11_689_512  # timm resnet18 parameters (44.6 MiB as float32)
_PREFIX = "dssl_bench"  # averaging group prefix, shared by both processes
_DHT_FLAGS = dict(  # docs/design.md §4: loopback only, none of libp2p's NAT/relay machinery
    host_maddrs=["/ip4/127.0.0.1/tcp/0"],
    nat_port_map=False,
    auto_nat=False,
    use_relay=False,
    use_auto_relay=False,
)
_AVERAGER_ARGS = dict(
    prefix=_PREFIX,
    target_group_size=2,  # two peers: the group is complete as soon as the follower joins
    min_group_size=2,
    # hivemind's defaults for the search window and the leader's answer to a join request. With two
    # peers the group is full, and all-reduce starts, the moment the follower is accepted, so the
    # window does not lengthen a round (measured: 1 s and 5 s give the same step times; 0.3 s is
    # slower, its rounds need retries).
    min_matchmaking_time=5.0,
    request_timeout=3.0,
    allreduce_timeout=60.0,  # whole all-reduce; finite, so a dead peer cannot hang a round
    next_chunk_timeout=10.0,  # gap between parts of one peer's stream (sender/reducer timeouts follow)
    allow_state_sharing=False,  # nobody downloads state here; skip its periodic DHT declarations
    shutdown_timeout=5.0,
)
_STEP_TIMEOUT_S = 30.0  # step(timeout=...): give up finding a group after this long
_STEP_DEADLINE_S = 120.0  # our own bound on one whole step, all-reduce included
_STAGE_POLL_S = 0.002  # how often the StepControl stage is sampled while the step runs
_ATOL = 1e-6  # hivemind's weighted part-wise average vs (a + b) * 0.5 in float32
# Failed rounds tolerated (and run again) per measurement. On the loaded 2-core machine about one
# 44.6 MiB round in 15-20 failed: one peer ran all-reduce while the other never joined its group,
# stalled for next_chunk_timeout, and the other's step ended "could not find a group" at its timeout.
_MAX_FAILED_ROUNDS = 3


class HivemindSide:
    """One process of the hivemind exchange: a DHT, and a DecentralizedAverager on one flat tensor."""

    def __init__(self, rank: int, num_floats: int):
        logging.getLogger("hivemind").setLevel(logging.WARNING)
        # This worker was spawned, which makes spawn its default start method; hivemind's DHT and
        # averager processes must be forked (their state does not pickle), as on a plain Linux run.
        multiprocessing.set_start_method("fork", force=True)
        torch.set_num_threads(1)  # two processes share two cores (inherited by the averager's fork)
        self._original = torch.from_numpy(make_buffer(num_floats, SEEDS[rank]))
        self._dht = None
        self._averager = None
        if rank == 0:  # the bootstrap peer; rank 1 starts its DHT once it knows this address
            self._dht = hivemind.DHT(start=True, **_DHT_FLAGS)

    def address(self) -> str:
        if self._dht is None:
            return ""
        return " ".join(str(maddr) for maddr in self._dht.get_visible_maddrs())

    def connect(self, peer_address: str) -> None:
        if self._dht is None:
            self._dht = hivemind.DHT(initial_peers=peer_address.split(), start=True, **_DHT_FLAGS)
        self._averager = DecentralizedAverager(
            [self._original.clone()], self._dht, start=True, **_AVERAGER_ARGS
        )

    def reset(self) -> None:
        with self._averager.get_tensors() as tensors:
            tensors[0].copy_(self._original)

    def exchange(self) -> dict[str, float]:
        """One averaging round; returns this process's matchmaking / all-reduce split."""
        start = time.perf_counter()
        control = self._averager.step(timeout=_STEP_TIMEOUT_S, wait=False)
        began_allreduce = None
        deadline = start + _STEP_DEADLINE_S
        while True:
            try:
                gathered = control.result(timeout=_STAGE_POLL_S)
                break
            except TimeoutError:
                if began_allreduce is None and control.stage == AveragingStage.RUNNING_ALLREDUCE:
                    began_allreduce = time.perf_counter()
                if time.perf_counter() > deadline:
                    control.cancel()
                    raise RoundFailed(f"averaging step did not finish within {_STEP_DEADLINE_S} s") from None
            except Exception as exc:  # the averager's own failure of this round (it stays usable)
                raise RoundFailed(f"averaging step failed: {exc!r}") from exc
        end = time.perf_counter()
        if gathered is None:
            raise RoundFailed("averaging step returned no group")
        if began_allreduce is None:  # finished between two samples: all-reduce under one poll period
            began_allreduce = end
        return {"matchmaking_s": began_allreduce - start, "allreduce_s": end - began_allreduce}

    def result(self) -> np.ndarray:
        with self._averager.get_tensors() as tensors:
            return tensors[0].numpy().copy()

    def disconnect(self) -> None:
        if self._averager is not None:
            self._averager.shutdown()
            self._averager = None

    def close(self) -> None:
        self.disconnect()
        if self._dht is not None:
            self._dht.shutdown()
            self._dht = None


@dataclass(frozen=True)
class RoundSplit:
    """One timed round: the step wall time, of both processes the larger matchmaking and the
    larger all-reduce part (seconds), and how many failed rounds were run again before it."""

    step_s: float
    matchmaking_s: float
    allreduce_s: float
    failed_before: int


def _split(rep: PairRep) -> RoundSplit:
    return RoundSplit(
        step_s=rep.wall_s,
        matchmaking_s=max(extra["matchmaking_s"] for extra in rep.extras),
        allreduce_s=max(extra["allreduce_s"] for extra in rep.extras),
        failed_before=rep.failed_before,
    )


def measure_split(num_floats: int, reps: int = 5, warmup: int = 2) -> list[RoundSplit]:
    """Like ``measure``, with each round's matchmaking / all-reduce split and failure count."""
    pair_reps = time_pair(HivemindSide, num_floats, reps, warmup, atol=_ATOL, max_failed=_MAX_FAILED_ROUNDS)
    return [_split(rep) for rep in pair_reps]


def measure(num_floats: int, reps: int = 5, warmup: int = 2) -> list[float]:
    """Seconds of each of ``reps`` timed hivemind averaging rounds of ``num_floats`` float32
    between two processes (after ``warmup`` untimed ones), timed as ``benchmarks.time_pair``
    defines: matchmaking included. Up to ``_MAX_FAILED_ROUNDS`` failed rounds are logged as
    warnings and run again (their time is in no timing)."""
    return [split.step_s for split in measure_split(num_floats, reps, warmup)]


def main() -> None:
    """Print the median hivemind round time (and its split) for the resnet18 payload."""
    rounds = measure_split(RESNET18_FLOATS)
    mib = RESNET18_FLOATS * 4 / 2**20

    def median_ms(values) -> str:
        return f"{statistics.median(values) * 1e3:.1f} ms"

    print(
        f"hivemind DecentralizedAverager round, 2 peers, {mib:.1f} MiB: median step "
        f"{median_ms([r.step_s for r in rounds])} "
        f"(matchmaking {median_ms([r.matchmaking_s for r in rounds])}, "
        f"all-reduce {median_ms([r.allreduce_s for r in rounds])}; "
        f"failed and re-run before timed rounds: {sum(r.failed_before for r in rounds)}; "
        f"steps: {' '.join(f'{r.step_s * 1e3:.0f}' for r in rounds)} ms)"
    )


if __name__ == "__main__":
    main()
