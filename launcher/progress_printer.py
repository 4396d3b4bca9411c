"""The swarm's live progress on the launcher's stdout while it supervises.

Every ``interval_s`` seconds one line sums the peers' newest metrics (read by
:class:`analysis.progress.SwarmProgress`) with what only the launcher knows: which peer processes
are alive and which crashed. ``dssl swarm``, ``dssl demo`` and ``dssl sweep`` print it::

    dssl swarm: [ 42.0s] rounds 12-14  steps 1380  loss 0.4123  img/s 1210.5  nbr 7/8
                peers live 4/4 crashed 0        (one line)
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from analysis.progress import SwarmProgress
from launcher.processes import SwarmProcesses

DEFAULT_INTERVAL_S = 10.0


class ProgressPrinter:
    """Called on every supervision poll; prints when an interval has passed (never when
    ``interval_s`` is 0)."""

    def __init__(
        self, swarm: SwarmProcesses, interval_s: float = DEFAULT_INTERVAL_S, out: TextIO = sys.stdout
    ):
        self.swarm = swarm
        self.interval_s = interval_s
        self.out = out
        self.progress = SwarmProgress(swarm.run.path)
        self.started = time.monotonic()
        self._next = self.started + interval_s

    def __call__(self) -> None:
        now = time.monotonic()
        if self.interval_s <= 0 or now < self._next:
            return
        self._next = now + self.interval_s
        print(f"dssl swarm: {self.line(now - self.started)}", file=self.out, flush=True)

    def line(self, elapsed_s: float) -> str:
        """The progress line now (also usable without the interval)."""
        live = set(self.swarm.alive())
        procs = self.swarm.processes.values()
        crashed = sum(1 for p in procs if p.popen.poll() not in (None, 0) and not p.expected_exit)
        snapshot = self.progress.snapshot(live)
        return snapshot.line(elapsed_s, len(live), len(self.swarm.processes), crashed)
