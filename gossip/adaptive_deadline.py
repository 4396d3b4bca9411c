"""Per-neighbour pull deadlines: a fixed one, or one that follows each neighbour's measured pull times.

A fixed deadline is either too tight (a slow but live neighbour is dropped every round) or too loose
(a stalled one costs every round the whole deadline). With ``AdaptiveDeadline`` each neighbour j
gets its own deadline from its recent pulls::

    d_j = clamp(percentile_q(recent pull seconds of j) x margin, floor_s, ceiling)

* recent = the last ``window`` (32) pulls of j that delivered or hit their deadline; before
  ``min_samples`` (3) of them, d_j is the ceiling (nothing known yet: behave like a fixed deadline);
* q (95) and margin (2.0): cover the slow tail of what was seen, with headroom for jitter, the way
  adaptive timeouts are usually set from measured latency (TCP's retransmission timeout,
  Jacobson 1988 / RFC 6298; tail percentiles: Dean & Barroso, "The Tail at Scale", CACM 2013);
* the floor (0.5 s) keeps scheduler and GC hiccups of a very fast neighbour from dropping it;
* the ceiling is the configured maximum (``NodeConfig.pull_deadline_s``), so every pull, and hence a
  round's whole pull phase (the pulls run concurrently), ends within it: the round's own budget
  (the runner's mix timeout, derived from the same ceiling) always covers the pulls and the mix.

A pull that ran out of time (``MISSED_KINDS``; in sync mode usually the neighbour's NOT_YET, sent
just before the deadline because its round was not published in time) did not measure the
neighbour's time, only that it is longer (a censored sample). Were it ignored, or counted as short,
a neighbour that slowed down would be dropped forever. So a miss is recorded as the deadline it hit,
and the next deadline is at least ``margin`` x that deadline, again after each further miss, up to
the ceiling, until a pull delivers (RFC 6298's exponential back-off). A neighbour that became s
times slower misses at most about log_margin(s) rounds; one that stalled costs less than twice the
ceiling in all before its deadline sits at the ceiling, which a fixed deadline costs every round.
Other failures (unreachable, refused, corrupt) say nothing about timing and change nothing.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

AUTO = "auto"  # the config word that turns adaptive deadlines on
# ``client.PullFailed.kind`` of a pull that ran out of time: the gRPC deadline, or (sync mode) the
# neighbour's explicit NOT_YET just before it (``service.WAIT_MARGIN_S``): its round came too late
MISSED_KINDS = frozenset({"deadline", "refused (not_yet)"})
_MAX_TRACKED_PEERS = 4096  # neighbours remembered (least recently pulled forgotten first)


@dataclass(frozen=True)
class AdaptiveDeadline:
    """The rule's parameters (the ceiling is the node's ``pull_deadline_s``)."""

    floor_s: float = 0.5  # no neighbour's deadline is shorter than this
    percentile: float = 95.0  # q: which percentile of the recent pull times
    margin: float = 2.0  # headroom factor on that percentile, and the widening factor after a miss
    window: int = 32  # recent pulls remembered per neighbour
    min_samples: int = 3  # fewer recent pulls than this: the ceiling

    def __post_init__(self) -> None:
        if not self.floor_s > 0:
            raise ValueError(f"floor_s must be > 0, got {self.floor_s}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {self.percentile}")
        if not self.margin >= 1.0:
            raise ValueError(f"margin must be >= 1, got {self.margin}")
        if self.window < 1 or not 1 <= self.min_samples <= self.window:
            raise ValueError(f"need window >= 1 and 1 <= min_samples <= window, got {self}")


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` with linear interpolation (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class PullDeadlines:
    """Each neighbour's pull deadline: ``ceiling_s`` for all (``rule`` None), or adaptive (module doc).

    ``deadline(peer)`` before a pull, ``observe(peer, seconds, error_kind, deadline)`` after it.
    Used from one event loop only (no locking).
    """

    def __init__(self, ceiling_s: float, rule: AdaptiveDeadline | None = None):
        if not ceiling_s > 0:
            raise ValueError(f"ceiling_s must be > 0, got {ceiling_s}")
        if rule is not None and rule.floor_s > ceiling_s:
            raise ValueError(f"floor_s {rule.floor_s} is above the ceiling {ceiling_s}")
        self.ceiling_s = ceiling_s
        self.rule = rule
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()
        self._widened: dict[str, float] = {}  # after a miss: the next deadline is at least this

    @property
    def adaptive(self) -> bool:
        return self.rule is not None

    def deadline(self, peer_id: str) -> float:
        """The deadline of the next pull from ``peer_id`` (seconds, floor <= d <= ceiling)."""
        rule = self.rule
        if rule is None:
            return self.ceiling_s
        recent = self._recent.get(peer_id)
        if recent is None or len(recent) < rule.min_samples:
            return self.ceiling_s
        estimate = percentile(list(recent), rule.percentile) * rule.margin
        estimate = max(estimate, self._widened.get(peer_id, 0.0))
        return min(self.ceiling_s, max(rule.floor_s, estimate))

    def observe(self, peer_id: str, seconds: float, error_kind: str | None, deadline_s: float) -> None:
        """Record one finished pull: delivered (``error_kind`` None), missed its ``deadline_s``
        (``MISSED_KINDS``: counted as the deadline, and widened), or failed otherwise (ignored)."""
        rule = self.rule
        if rule is None or (error_kind is not None and error_kind not in MISSED_KINDS):
            return
        recent = self._recent.pop(peer_id, None)
        if recent is None:
            recent = deque(maxlen=rule.window)
        self._recent[peer_id] = recent  # most recently pulled last
        if len(self._recent) > _MAX_TRACKED_PEERS:
            forgotten, _ = self._recent.popitem(last=False)
            self._widened.pop(forgotten, None)
        if error_kind is None:
            recent.append(seconds)
            self._widened.pop(peer_id, None)
        else:
            recent.append(max(seconds, deadline_s))
            self._widened[peer_id] = min(self.ceiling_s, deadline_s * rule.margin)

    def recent(self, peer_id: str) -> tuple[float, ...]:
        """The pull times remembered for ``peer_id`` (oldest first; misses as their deadline)."""
        return tuple(self._recent.get(peer_id, ()))
