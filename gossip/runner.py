"""GossipRunner: the gossip core on a background event loop, behind the trainer's sync facade.

    runner = GossipRunner.start(NodeConfig(...), membership, topology.parse("ring"))
    runner.publish(flat_params, round=r)       # copies once, under a lock, on the caller's thread
    result = runner.mix().result()             # concurrent.futures.Future[MixResult]; never fails
    runner.close()

Implements ``gossip.hook.GossipHook``. The event loop (uvloop when installed) runs in a daemon
thread that owns the ``GossipNode``; the trainer's thread only ever hands it immutable snapshots.
Each ``mix`` reads the live peer set (on the loop's executor, never on the caller's thread), derives
this round's graph from (topology, live peer ids sorted, round, seed) — the same inputs on every
peer, so every peer computes the same graph without a coordinator — and mixes with its neighbours
in it using ``mixing_row``'s weights.

The runner owns the round's deadline and failures: a round that raises, or that has not resolved
``mix_timeout_s`` after it started, resolves to a ``MixResult`` holding the published (local)
parameters with ``failure`` saying why. The caller never handles a timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import torch

from gossip import mixing
from gossip.hook import MixResult
from gossip.membership import Membership
from gossip.node import GossipNode, NodeConfig
from gossip.snapshot import Snapshot
from gossip.topology import TopologySpec
from protocol.records import PeerRecord

logger = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT_S = 30.0  # binding the port and starting the gRPC server
DEFAULT_CLOSE_TIMEOUT_S = 10.0  # stopping the server and the loop thread
MIX_TIMEOUT_FACTOR, MIX_TIMEOUT_SLACK_S = 3.0, 30.0  # default mix deadline: 3 x pull deadline + 30 s
MIX_TIMEOUT = "mix timeout"  # MixResult.failure of a round that outlived its deadline


def default_mix_timeout(pull_deadline_s: float) -> float:
    """A round's backstop: its pulls end by their own deadline, so a round still open after three of
    them (plus slack for membership reads and mixing) is wedged. With adaptive deadlines
    (``NodeConfig.adaptive_deadline``) ``pull_deadline_s`` is their ceiling: every neighbour's
    deadline is at most it, so this budget covers the pull phase whatever the deadlines adapted to."""
    return pull_deadline_s * MIX_TIMEOUT_FACTOR + MIX_TIMEOUT_SLACK_S


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (faster socket I/O), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class GossipRunner:
    """Synchronous facade over a ``GossipNode`` running on its own thread. Build with ``start``."""

    def __init__(
        self,
        *,
        node: GossipNode,
        loop: asyncio.AbstractEventLoop,
        thread: threading.Thread,
        membership: Membership,
        topology: TopologySpec,
        rule: str,
        seed: int,
        mix_timeout_s: float,
    ):
        self._node = node
        self._loop = loop
        self._thread = thread
        self._membership = membership
        self._topology = topology
        self._rule = rule
        self._seed = seed
        self._mix_timeout_s = mix_timeout_s
        self._lock = threading.Lock()  # guards _published and the hand-over of snapshots
        self._published: Snapshot | None = None
        self._closed = False

    @classmethod
    def start(
        cls,
        node_config: NodeConfig,
        membership: Membership,
        topology: TopologySpec,
        *,
        rule: str = "metropolis_hastings",
        seed: int = 0,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        mix_timeout_s: float | None = None,
    ) -> GossipRunner:
        """Start the loop thread and the node, announce our address; raises ``BindError`` on a taken port.

        ``mix_timeout_s``: when a round resolves with ``failure`` set at the latest
        (None = :func:`default_mix_timeout` of the node's pull deadline, the ceiling when adaptive)."""
        if rule not in mixing.RULES:
            raise ValueError(f"unknown mixing rule {rule!r}; choose one of {', '.join(mixing.RULES)}")
        loop = _new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"gossip-{node_config.peer_id}", daemon=True)
        thread.start()
        try:
            created = asyncio.run_coroutine_threadsafe(GossipNode.create(node_config), loop)
            node = created.result(start_timeout_s)
        except BaseException:
            _stop_loop(loop, thread, start_timeout_s)
            raise
        if mix_timeout_s is None:
            mix_timeout_s = default_mix_timeout(node_config.pull_deadline_s)
        runner = cls(
            node=node,
            loop=loop,
            thread=thread,
            membership=membership,
            topology=topology,
            rule=rule,
            seed=seed,
            mix_timeout_s=mix_timeout_s,
        )
        runner.announce(0)
        return runner

    @property
    def address(self) -> str:
        """The host:port neighbours pull from."""
        return self._node.address

    @property
    def peer_id(self) -> str:
        return self._node.config.peer_id

    def _record(self, round: int) -> PeerRecord:
        cfg = self._node.config
        return PeerRecord(
            peer_id=cfg.peer_id,
            address=self.address,
            round=round,
            layout_fingerprint=cfg.layout_fingerprint,
            capabilities=self._node.capabilities,  # wire dtypes, MAR payload, codec
        )

    def announce(self, round: int) -> None:
        """Tell the membership our record (address, ``round``, layout, capabilities), on this thread."""
        self._membership.announce(self._record(round))

    def publish(self, params: torch.Tensor, round: int, embedding: torch.Tensor | None = None) -> None:
        """Copy ``params`` (and ``embedding``) once, on this thread, and serve them for ``round``."""
        with self._lock:
            if self._closed:
                raise RuntimeError("gossip runner is closed")
            published = self._published
            if published is not None and round < published.round:
                raise ValueError(f"round {round} is older than the published round {published.round}")
            snapshot = Snapshot.capture(params, round, embedding)
            self._published = snapshot
            # FIFO on the loop: installed before any mix() scheduled after this call
            self._loop.call_soon_threadsafe(self._node.install, snapshot)

    def recycle(self, params: torch.Tensor) -> None:
        """Optionally hand back a ``MixResult.params`` you are done with (e.g. after loading it into
        the model); a later round mixes into it instead of a fresh buffer. Do not use it afterwards."""
        self._loop.call_soon_threadsafe(self._node.recycle, params)

    def wait_published(self, timeout: float) -> None:
        """Block until the last published snapshot is encoded for the wire (CRCs and frames built).

        Optional: pulls wait for that work themselves. Benchmarks use it to time publish apart.
        """
        asyncio.run_coroutine_threadsafe(self._node.ready(), self._loop).result(timeout)

    def mix(self) -> concurrent.futures.Future[MixResult]:
        """Mix the last published round with this round's neighbours; resolves to a MixResult.

        Returns at once: the live peer set, this round's graph, the pulls and the mixing all happen
        on the loop. The future always resolves to a MixResult within ``mix_timeout_s``; a failed or
        late round keeps the published parameters and says why in ``failure``.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("gossip runner is closed")
            if self._published is None:
                raise RuntimeError("publish() a round before mix()")
            published = self._published
        return asyncio.run_coroutine_threadsafe(self._round(published), self._loop)

    async def _round(self, published: Snapshot) -> MixResult:
        """The round's mix, or the local parameters with the reason it failed; then re-announce."""
        round = published.round
        mixing_task = asyncio.ensure_future(self._mix(round))
        try:  # shielded: a late round finishes (and frees the node) in the background
            result = await asyncio.wait_for(asyncio.shield(mixing_task), self._mix_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("%s: round %d did not resolve in %.0f s", self.peer_id, round, self._mix_timeout_s)
            mixing_task.add_done_callback(_log_failure)
            result = _kept(published, MIX_TIMEOUT)
        except Exception as exc:  # the round's own error: the trainer keeps training on local params
            logger.warning("%s: round %d failed: %r", self.peer_id, round, exc)
            result = _kept(published, f"mix failed: {exc!r}")
        # refresh our record (round) off the critical path; a failed announce is only logged
        announced = asyncio.get_running_loop().run_in_executor(None, self.announce, round)
        announced.add_done_callback(_log_failure)
        return result

    async def _mix(self, round: int) -> MixResult:
        """Read the live peers (blocking: on the executor), derive this round's row of W, mix."""
        live = await asyncio.get_running_loop().run_in_executor(None, self._membership.live_peers)
        addresses = {p.peer_id: p.address for p in live}
        addresses[self.peer_id] = self.address
        graph = self._topology.graph(sorted(addresses), round, self._seed)
        self_weight, weights = mixing.mixing_row(graph, self.peer_id, self._rule)
        neighbours = {peer: addresses[peer] for peer in weights}
        return await self._node.mix(round, neighbours, self_weight, weights)

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Stop the node and the loop thread (idempotent). Does not close the membership."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._node.close(), self._loop).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            logger.warning("gossip node %s did not close cleanly: %r", self.peer_id, exc)
        finally:
            _stop_loop(self._loop, self._thread, timeout)

    def __enter__(self) -> GossipRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _kept(published: Snapshot, failure: str) -> MixResult:
    """A round that did not mix: a copy of the published parameters, all weight on ourselves."""
    return MixResult(
        round=published.round,
        params=published.params.clone(),
        embedding=None,
        self_weight=1.0,
        failure=failure,
    )


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("gossip background work failed: %r", future.exception())


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread, timeout: float) -> None:
    """Cancel what is left on ``loop``, stop it, join its thread, close it."""

    async def cancel_rest() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(timeout)
    except (concurrent.futures.TimeoutError, RuntimeError):
        pass
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
    if not thread.is_alive():
        loop.close()
