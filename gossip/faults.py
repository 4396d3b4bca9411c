"""In-transport fault injection: a gRPC server interceptor driven by a JSON control file.

The launcher (``launcher.fault_runner``) injects network faults into a running swarm without telling the
peers anything: it writes a small JSON file into each peer's run dir, and this interceptor — installed
on every gossip server by ``GossipNode.create`` when ``NodeConfig.fault_control`` names that file —
re-reads it whenever it changes (one ``stat`` per pull; the file is replaced atomically) and applies
it to the snapshots this peer *serves*. No root, no netns, no tc: it works in CI.

Control file (every key optional; a missing file means "no faults")::

    {
      "seed": 7,                                   # drop decisions: hash(seed, server, requester, round)
      "drop": {"p": 0.3, "mode": "refuse"},        # refuse | abort (mid-stream) | stall (until deadline)
      "links": {"*":  {"delay_s": 0.05},           # per requester ("*" = anyone not named)
                "p2": {"bytes_per_s": 2000000}},   # token bucket on the frames we send to p2
      "partition": [["p0", "p1"], ["p2", "p3"]]    # pulls between different groups are refused
    }

Semantics, from the serving peer's side (the link a→b is "what a serves to b"):

* ``drop``: each pull is dropped with probability ``p``; the decision is a pure function of
  (seed, this peer, requester, requested round), so a run is replayable. ``refuse`` answers with an
  explicit ``REFUSED`` frame; ``abort`` sends the header and the first data frame, then aborts the
  stream with ``UNAVAILABLE`` (a peer dying mid-transfer, seen from the puller); ``stall`` sends
  nothing until the puller's deadline (a black hole).
* ``links``: ``delay_s`` before the first frame; ``bytes_per_s`` paces every frame through a token
  bucket shared by all concurrent streams to that requester.
* ``partition``: groups of peer ids; a pull is refused when server and requester are in different
  groups (a peer in no group is not cut off). The launcher writes the same groups to every peer, so
  the cut holds in both directions.

Hello calls pass untouched: faults act on parameter transfer only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gossip import _grpc
from protocol import gossip_pb2 as pb
from protocol.frames import refusal_frame

logger = logging.getLogger(__name__)

CONTROL_FILE = "faults.json"  # its name inside a peer's run dir (the launcher writes it there)
DROP_MODES = ("refuse", "abort", "stall")
_ANY = "*"


class ControlError(ValueError):
    """A fault control file that does not follow the schema above."""


@dataclass(frozen=True)
class Link:
    """Faults on what this peer serves to one requester."""

    delay_s: float = 0.0  # wait this long before the first frame
    bytes_per_s: float | None = None  # token-bucket rate of the frames sent (None = unlimited)


@dataclass(frozen=True)
class Decision:
    """What to do with one pull: serve it (through ``link``), refuse it, abort it or stall it."""

    action: str  # "serve" | "refuse" | "abort" | "stall"
    reason: str = ""
    link: Link = Link()


@dataclass(frozen=True)
class FaultControl:
    """One parsed control file. ``FaultControl()`` is "no faults"."""

    seed: int = 0
    drop_p: float = 0.0
    drop_mode: str = "refuse"
    links: dict[str, Link] = field(default_factory=dict)
    partition: tuple[frozenset[str], ...] = ()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FaultControl:
        """Validate and parse; raises ``ControlError`` naming the bad key."""
        if not isinstance(values, dict):
            raise ControlError(f"expected a JSON object, got {type(values).__name__}")
        unknown = sorted(set(values) - {"seed", "drop", "links", "partition", "version"})
        if unknown:
            raise ControlError(f"unknown key(s) {', '.join(unknown)}")
        drop = values.get("drop") or {}
        if not isinstance(drop, dict) or set(drop) - {"p", "mode"}:
            raise ControlError(f"drop: expected {{p, mode}}, got {drop!r}")
        p = float(drop.get("p", 0.0))
        mode = drop.get("mode", "refuse")
        if not 0.0 <= p <= 1.0 or mode not in DROP_MODES:
            raise ControlError(f"drop: p must be in [0, 1] and mode one of {DROP_MODES}, got {drop!r}")
        links = {}
        for requester, link in (values.get("links") or {}).items():
            if not isinstance(link, dict) or set(link) - {"delay_s", "bytes_per_s"}:
                raise ControlError(f"links.{requester}: expected {{delay_s, bytes_per_s}}, got {link!r}")
            rate = link.get("bytes_per_s")
            parsed = Link(
                delay_s=float(link.get("delay_s", 0.0)), bytes_per_s=None if rate is None else float(rate)
            )
            if parsed.delay_s < 0 or (parsed.bytes_per_s is not None and parsed.bytes_per_s <= 0):
                raise ControlError(
                    f"links.{requester}: delay_s must be >= 0 and bytes_per_s > 0, got {link!r}"
                )
            links[str(requester)] = parsed
        groups = values.get("partition") or []
        if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
            raise ControlError(f"partition: expected a list of peer-id lists, got {groups!r}")
        return cls(
            seed=int(values.get("seed", 0)),
            drop_p=p,
            drop_mode=mode,
            links=links,
            partition=tuple(frozenset(map(str, g)) for g in groups),
        )

    def link(self, requester: str) -> Link:
        return self.links.get(requester) or self.links.get(_ANY) or Link()

    def partitioned(self, server: str, requester: str) -> bool:
        """True when ``server`` and ``requester`` sit in different partition groups."""
        mine = [g for g in self.partition if server in g]
        theirs = [g for g in self.partition if requester in g]
        return bool(mine and theirs) and not any(requester in g for g in mine)

    def decide(self, server: str, requester: str, round: int) -> Decision:
        """The fate of one pull of ``round`` by ``requester`` from ``server`` (deterministic)."""
        if self.partitioned(server, requester):
            return Decision("refuse", f"fault injection: {server} is partitioned from {requester}")
        if self.drop_p > 0.0 and drop_draw(self.seed, server, requester, round) < self.drop_p:
            return Decision(
                self.drop_mode, f"fault injection: pull dropped (p={self.drop_p:g}, {self.drop_mode})"
            )
        return Decision("serve", link=self.link(requester))


def drop_draw(seed: int, server: str, requester: str, round: int) -> float:
    """A uniform number in [0, 1) from (seed, server, requester, round): replayable drop decisions."""
    digest = hashlib.sha256(f"{seed}|{server}|{requester}|{round}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class ControlFile:
    """The control file at ``path``, re-parsed only when its (inode, mtime, size) changes.

    The launcher replaces it atomically (write + rename), so a reader sees the old or the new file,
    never half of one. A file that does not parse keeps the previous faults and is logged once.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._key: tuple[int, int, int] | None = None
        self._control = FaultControl()

    def current(self) -> FaultControl:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._key, self._control = None, FaultControl()
            return self._control
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        if key != self._key:
            self._key = key
            try:
                self._control = FaultControl.from_dict(json.loads(self.path.read_text()))
                logger.info("fault control %s reloaded: %s", self.path, self._control)
            except (OSError, ValueError) as exc:
                logger.warning("ignoring fault control %s (keeping the previous faults): %s", self.path, exc)
        return self._control


class TokenBucket:
    """Paces bytes to ``rate`` per second, bursts up to ``burst`` bytes; a frame larger than the
    tokens left runs the bucket into debt and the next sender waits it off (exact average rate)."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate = rate
        self.burst = burst if burst is not None else rate * 0.05
        self._tokens = self.burst
        self._last = time.monotonic()

    async def take(self, nbytes: int) -> None:
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate) - nbytes
        self._last = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


class FaultInterceptor(grpc.aio.ServerInterceptor):
    """Applies the control file's faults to the Pull streams served by peer ``peer_id``."""

    def __init__(self, control_path: str | Path, peer_id: str):
        self.control = ControlFile(control_path)
        self.peer_id = peer_id
        self._buckets: dict[tuple[str, float], TokenBucket] = {}
        self.injected: dict[str, int] = {}  # action -> count, for logs and tests

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if (
            handler is None
            or handler_call_details.method != _grpc.PULL_METHOD
            or handler.unary_stream is None
        ):
            return handler
        inner = handler.unary_stream

        async def pull(request: pb.PullRequest, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
            async for frame in self._faulty(inner, request, context):
                yield frame

        return grpc.unary_stream_rpc_method_handler(
            pull,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _bucket(self, requester: str, rate: float) -> TokenBucket:
        key = (requester, rate)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate)
        return bucket

    async def _faulty(
        self, inner, request: pb.PullRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        decision = self.control.current().decide(self.peer_id, request.peer_id, request.round)
        if decision.action != "serve":
            self.injected[decision.action] = self.injected.get(decision.action, 0) + 1
            logger.info(
                "%s: pull of round %d by %s: %s",
                self.peer_id,
                request.round,
                request.peer_id,
                decision.reason,
            )
        if decision.action == "refuse":
            yield refusal_frame(pb.STATUS_REFUSED, decision.reason)
            return
        if decision.action == "stall":
            remaining = context.time_remaining()  # outlive the caller's deadline: it gives up first
            await asyncio.sleep(60.0 if remaining is None else remaining + 1.0)
            return
        link = decision.link
        if link.delay_s > 0:
            await asyncio.sleep(link.delay_s)
        bucket = self._bucket(request.peer_id, link.bytes_per_s) if link.bytes_per_s else None
        sent = 0
        async for frame in inner(request, context):
            if decision.action == "abort" and sent >= 2:  # header + one data frame went out
                await context.abort(grpc.StatusCode.UNAVAILABLE, decision.reason)
            if bucket is not None:
                await bucket.take(len(frame))
            yield frame
            sent += 1
        if decision.action == "abort":  # a stream too short to cut: fail it at the end instead
            await context.abort(grpc.StatusCode.UNAVAILABLE, decision.reason)
