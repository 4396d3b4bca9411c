"""The two baselines of the gossip benchmark (raw grpcio, hivemind's averager) on a tiny payload:
they return one positive timing per repetition, their result check catches a wrong average, and
they leave no process behind. Deselected by default (``bench``); run with ``-m bench``."""

from __future__ import annotations

import uuid

import numpy as np
import psutil
import pytest

from benchmarks import RoundFailed, WorkerError, _hivemind_avg, _raw_grpc, time_pair

pytestmark = pytest.mark.bench

SMALL = 100_000  # floats: 390 KiB, several 1 MiB-chunk-free rounds in a few seconds
MARK_VAR = "DSSL_BENCH_TEST_MARK"


class _SkipsAveragingSide(_raw_grpc.RawGrpcSide):
    """A broken raw side that pulls but keeps its own buffer as the 'result'."""

    def result(self) -> np.ndarray:
        return self._own


class _FailsFirstRoundSide(_raw_grpc.RawGrpcSide):
    """A raw side whose rank 0 reports its first round as failed (the way hivemind's do)."""

    def __init__(self, rank: int, num_floats: int):
        super().__init__(rank, num_floats)
        self._fail_next = rank == 0

    def exchange(self) -> dict[str, float]:
        extras = super().exchange()
        if self._fail_next:
            self._fail_next = False
            raise RoundFailed("first round fails on purpose")
        return extras


def _marked_processes(mark: str) -> list[psutil.Process]:
    """Live processes (other than multiprocessing's resource tracker) whose environment carries
    ``mark``: the workers a benchmark started and everything they started in turn."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.environ().get(MARK_VAR) != mark:
                continue
            if any("resource_tracker" in part for part in proc.info["cmdline"] or []):
                continue
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture
def process_mark(monkeypatch) -> str:
    """A unique environment mark inherited by every process the test starts."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK_VAR, mark)
    return mark


@pytest.mark.parametrize("module", [_raw_grpc, _hivemind_avg], ids=["raw", "hivemind"])
def test_measure_returns_one_positive_time_per_rep_and_cleans_up(module, process_mark):
    times = module.measure(SMALL, reps=2, warmup=1)
    assert len(times) == 2
    assert all(isinstance(t, float) and 0 < t < 120 for t in times)
    assert _marked_processes(process_mark) == []


def test_hivemind_split_parts_fit_inside_the_round():
    rounds = _hivemind_avg.measure_split(SMALL, reps=2, warmup=1)
    assert len(rounds) == 2
    for split in rounds:
        assert split.matchmaking_s > 0 and split.allreduce_s >= 0
        assert split.matchmaking_s < split.step_s and split.allreduce_s < split.step_s


def test_a_wrong_average_fails_the_run(process_mark):
    with pytest.raises(WorkerError, match="Not equal to tolerance"):
        time_pair(_SkipsAveragingSide, SMALL, reps=1, warmup=0)
    assert _marked_processes(process_mark) == []


def test_a_failed_round_is_run_again_and_counted():
    reps = time_pair(_FailsFirstRoundSide, SMALL, reps=2, warmup=0, max_failed=1)
    assert [rep.failed_before for rep in reps] == [1, 0]


def test_failed_rounds_beyond_the_tolerance_are_an_error():
    with pytest.raises(WorkerError, match="failed rounds"):
        time_pair(_FailsFirstRoundSide, SMALL, reps=1, warmup=0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        _raw_grpc.measure(SMALL, reps=0)
