"""GossipRunner: the gossip core on a background event loop, behind the trainer's sync facade.

    runner = GossipRunner.start(NodeConfig(...), membership, topology.parse("ring"))
    runner.publish(flat_params, round=r)       # copies once, under a lock, on the caller's thread
    result = runner.mix().result()             # concurrent.futures.Future[MixResult]
    runner.close()

Implements ``gossip.hook.GossipHook``. The event loop (uvloop when installed) runs in a daemon
thread that owns the ``GossipNode``; the trainer's thread only ever hands it immutable snapshots.
Each ``mix`` derives this round's graph from (topology, live peer ids sorted, round, seed) — the
same inputs on every peer, so every peer computes the same graph without a coordinator — and
mixes with its neighbours in it using ``mixing_row``'s weights.
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
from gossip.service import Snapshot
from gossip.topology import TopologySpec
from protocol.serde import PeerRecord

logger = logging.getLogger(__name__)

DEFAULT_START_TIMEOUT_S = 30.0  # binding the port and starting the gRPC server
DEFAULT_CLOSE_TIMEOUT_S = 10.0  # stopping the server and the loop thread


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (faster socket I/O), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class GossipRunner:
    """Synchronous facade over a ``GossipNode`` running on its own thread. Build with ``start``."""

    def __init__(self, node: GossipNode, loop: asyncio.AbstractEventLoop, thread: threading.Thread,
                 membership: Membership, topology: TopologySpec, rule: str, seed: int):
        self._node = node
        self._loop = loop
        self._thread = thread
        self._membership = membership
        self._topology = topology
        self._rule = rule
        self._seed = seed
        self._lock = threading.Lock()  # guards _round and the hand-over of snapshots
        self._round: int | None = None
        self._closed = False

    @classmethod
    def start(
        cls,
        node_config: NodeConfig,
        membership: Membership,
        topology: TopologySpec,
        rule: str = "metropolis_hastings",
        seed: int = 0,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
    ) -> GossipRunner:
        """Start the loop thread and the node, announce our address; raises ``BindError`` on a taken port."""
        if rule not in mixing.RULES:
            raise ValueError(f"unknown mixing rule {rule!r}; choose one of {', '.join(mixing.RULES)}")
        loop = _new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"gossip-{node_config.peer_id}", daemon=True)
        thread.start()
        try:
            node = asyncio.run_coroutine_threadsafe(GossipNode.create(node_config), loop).result(start_timeout_s)
        except BaseException:
            _stop_loop(loop, thread, start_timeout_s)
            raise
        runner = cls(node, loop, thread, membership, topology, rule, seed)
        membership.announce(runner._record(0))
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
        return PeerRecord(peer_id=cfg.peer_id, address=self.address, round=round,
                          layout_fingerprint=cfg.layout_fingerprint, capabilities=("fp16", "bf16", "embedding"))

    def publish(self, params: torch.Tensor, round: int, embedding: torch.Tensor | None = None) -> None:
        """Copy ``params`` (and ``embedding``) once, on this thread, and serve them for ``round``."""
        with self._lock:
            if self._closed:
                raise RuntimeError("gossip runner is closed")
            if self._round is not None and round < self._round:
                raise ValueError(f"round {round} is older than the published round {self._round}")
            snapshot = Snapshot.capture(params, round, embedding)
            self._round = round
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

        The live peer set and this round's graph are read here, on the caller's thread (the same
        inputs on every peer give the same graph); the pulls and the mixing run on the loop.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("gossip runner is closed")
            if self._round is None:
                raise RuntimeError("publish() a round before mix()")
            round = self._round
        me = self.peer_id
        addresses = {p.peer_id: p.address for p in self._membership.live_peers()}
        addresses[me] = self.address
        graph = self._topology.graph(sorted(addresses), round, self._seed)
        self_weight, weights = mixing.mixing_row(graph, me, self._rule)
        neighbours = {peer: addresses[peer] for peer in weights}
        return asyncio.run_coroutine_threadsafe(self._mix(round, neighbours, self_weight, weights), self._loop)

    async def _mix(self, round: int, neighbours: dict[str, str], self_weight: float,
                   weights: dict[str, float]) -> MixResult:
        result = await self._node.mix(round, neighbours, self_weight, weights)
        # refresh our record (round) off the critical path; a failed announce is only logged
        announced = asyncio.get_running_loop().run_in_executor(None, self._membership.announce, self._record(round))
        announced.add_done_callback(_log_failure)
        return result

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


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("announcing our peer record failed: %r", future.exception())


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
