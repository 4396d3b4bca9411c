"""Shared test setup: torchvision shim, thread limits, and a reaper for child processes."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import torch

from peer.torchvision_shim import ensure_torchvision_importable

ensure_torchvision_importable()
# One intra-op thread: test processes share two cores with the peers they start, and oversubscribed
# OpenMP threads spin (measured 20-60x slower per step under load than one thread).
torch.set_num_threads(1)


@pytest.fixture
def reaper():
    """Collects subprocess.Popen objects (started with start_new_session=True) and kills their
    process groups at teardown, so a failing test never leaves peers behind."""
    procs: list[subprocess.Popen] = []
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
