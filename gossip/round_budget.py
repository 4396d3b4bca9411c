"""How much of a round's deadline its pulls may use, so that the round ends within the deadline.

A pull's gRPC timeout is its deadline less a margin for what follows its last byte: mixing the last
chunks, screening, and the event loop waking up to see the timeout. On an idle host the base margin
(:func:`gossip.client.pull_timeout`: 5 %, at most 0.5 s) is plenty. On an overloaded one (``make
soak``: 16 peers on 2 cores, load average ~25) the loop wakes up late, and rounds whose pulls ran
into their timeout ended up to 3.4 % past a 10 s deadline. So the margin learns from the rounds: each
round records its *lateness*, how far its pull phase (plus the finishing mix) ran past the timeout
its pulls were given, and the next margin is the larger of the base margin and ``grow`` × the largest
lateness of the last ``window`` rounds, capped at ``max_fraction`` of the deadline. A host that calms
down forgets its late rounds after ``window`` rounds.
"""

from __future__ import annotations

from collections import deque

from gossip.client import pull_timeout


class RoundBudget:
    """The pull timeout for a deadline (``timeout``) and the rounds' lateness (``observe``).

    Used from one event loop only (no locking)."""

    def __init__(self, window: int = 32, grow: float = 1.5, max_fraction: float = 0.25):
        if window < 1 or grow < 1.0 or not 0.0 < max_fraction < 1.0:
            raise ValueError(
                f"need window >= 1, grow >= 1, 0 < max_fraction < 1; got {window}, {grow}, {max_fraction}"
            )
        self.grow = grow
        self.max_fraction = max_fraction
        self._lateness: deque[float] = deque(maxlen=window)

    def margin(self, deadline_s: float) -> float:
        """Seconds of ``deadline_s`` kept back from the pulls for what follows them."""
        base = deadline_s - pull_timeout(deadline_s)
        learned = self.grow * max(self._lateness, default=0.0)
        return min(self.max_fraction * deadline_s, max(base, learned))

    def timeout(self, deadline_s: float) -> float:
        """The gRPC timeout of a pull whose round must end within ``deadline_s``."""
        return deadline_s - self.margin(deadline_s)

    def observe(self, elapsed_s: float, deadline_s: float) -> float:
        """Record a round whose pulls (longest deadline ``deadline_s``) and mix took ``elapsed_s``;
        returns its lateness past the timeout its pulls had (0 when it ended in time)."""
        lateness = max(0.0, elapsed_s - self.timeout(deadline_s))
        self._lateness.append(lateness)
        return lateness
