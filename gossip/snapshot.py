"""What a gossip node serves: its identity and its published snapshots.

* ``Snapshot``: one published round, immutable. Its wire encodings (per wire dtype: every frame of
  the stream, per-chunk CRC-32s included) are built once — the node starts that right after
  publish — and shared by every neighbour that pulls.
  With compressed gossip (``gossip.choco``) a snapshot also holds the public copy x̂ it advanced
  and the compressed step that got there: a neighbour holding the step's base gets the step,
  any other the full public copy; a neighbour that asks for no codec gets the parameters.
* ``SnapshotStore``: the latest and the previous round's snapshot (so a slower neighbour pulling
  round r still gets exactly round r after we moved on), and an ``asyncio.Event`` (renewed per publish)
  that sync-mode pulls wait on until the requested round is published — no polling.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import torch

from gossip import robust
from gossip.choco import Delta
from protocol.payload import EncodedPayload, snapshot_payload


@dataclass(frozen=True)
class Identity:
    """Who this server is (fixed for its lifetime)."""

    swarm_id: str
    peer_id: str
    layout_fingerprint: str
    address: str = ""
    capabilities: tuple[str, ...] = ("fp16", "bf16", "embedding")


@dataclass(eq=False)
class Snapshot:
    """One published round: a private fp32 copy of the parameters (and embedding), never mutated."""

    round: int
    params: torch.Tensor  # 1-D float32, owned by the snapshot
    embedding: torch.Tensor | None = None  # owned by the snapshot
    # compressed gossip: the public copy x̂ after this round's step, its codec, and the step
    public: torch.Tensor | None = None
    codec: str = ""
    copy_id: str = ""
    delta: Delta | None = None  # None: the copy started here (receivers take it in full)
    _encoded: dict[object, EncodedPayload] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _norm_sq: float | None = field(default=None, repr=False)

    @classmethod
    def capture(cls, params: torch.Tensor, round: int, embedding: torch.Tensor | None = None) -> Snapshot:
        """Copy ``params`` (any float dtype, flattened) and ``embedding`` once into a new snapshot."""
        if round < 0:
            raise ValueError(f"round must be >= 0, got {round}")
        if not params.is_floating_point():
            raise ValueError(f"params must be a floating-point tensor, got {params.dtype}")
        own = torch.empty(params.numel(), dtype=torch.float32)
        own.copy_(params.detach().reshape(-1))
        emb = None
        if embedding is not None:
            emb = embedding.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous()
        return cls(round=round, params=own, embedding=emb)

    def norm_sq(self) -> float:
        """||params||² (computed once; the node starts it off the loop right after publish)."""
        if self._norm_sq is None:
            self._norm_sq = robust.norm_sq(self.params)
        return self._norm_sq

    def cached(self, wire_dtype: torch.dtype, chunk_bytes: int) -> EncodedPayload | None:
        """The wire form if it is already built (no lock, no waiting), else None."""
        cached = self._encoded.get(wire_dtype)
        return cached if cached is not None and cached.header.chunk_bytes == chunk_bytes else None

    def encoded(self, identity: Identity, wire_dtype: torch.dtype, chunk_bytes: int) -> EncodedPayload:
        """The wire form for ``wire_dtype`` (built once; thread-safe; CRCs computed here)."""
        with self._lock:
            cached = self._encoded.get(wire_dtype)
            if cached is not None and cached.header.chunk_bytes == chunk_bytes:
                return cached
            params = self.params if wire_dtype == torch.float32 else self.params.to(wire_dtype)
            tensors = [("params", params)]
            if self.embedding is not None:
                tensors.append(("embedding", self.embedding))
            fields = dict(
                swarm_id=identity.swarm_id,
                peer_id=identity.peer_id,
                round=self.round,
                layout_fingerprint=identity.layout_fingerprint,
            )
            cached = snapshot_payload(fields, tensors, chunk_bytes)
            self._encoded[wire_dtype] = cached
            return cached

    def serves_delta(self, codec: str, have_copy: str, have_round: int) -> bool | None:
        """For a compressed pull: True to send the step, False the full public copy; None when this
        snapshot has no public copy in ``codec`` (then the plain parameters are served)."""
        if self.public is None or not codec or codec != self.codec:
            return None
        return self.delta is not None and have_copy == self.copy_id and have_round == self.delta.base

    def cached_compressed(self, chunk_bytes: int, delta: bool) -> EncodedPayload | None:
        """The wire form of the step or of the full public copy if it is already built."""
        return self._encoded.get(("delta" if delta else "public", chunk_bytes))

    def compressed(self, identity: Identity, chunk_bytes: int, delta: bool) -> EncodedPayload:
        """The wire form of the step (``delta``) or of the full public copy (fp32), built once."""
        key = ("delta" if delta else "public", chunk_bytes)
        with self._lock:
            cached = self.cached_compressed(chunk_bytes, delta)
            if cached is not None:
                return cached
            if delta:
                tensors = [("delta", torch.frombuffer(bytearray(self.delta.payload), dtype=torch.uint8))]
            else:
                tensors = [("params", self.public)]
            if self.embedding is not None:
                tensors.append(("embedding", self.embedding))
            fields = dict(
                swarm_id=identity.swarm_id,
                peer_id=identity.peer_id,
                round=self.round,
                layout_fingerprint=identity.layout_fingerprint,
                copy_id=self.copy_id,
                base_round=self.delta.base if delta else -1,
            )
            cached = self._encoded[key] = snapshot_payload(fields, tensors, chunk_bytes)
            return cached


class SnapshotStore:
    """The snapshots a node serves: the newest and the one before it. Used on the event loop only.

    Waiters (sync-mode pulls for a future round) sleep on an ``asyncio.Event`` that ``put`` sets and
    replaces, so they wake exactly when something is published; nothing polls.
    """

    def __init__(self) -> None:
        self._snapshots: dict[int, Snapshot] = {}
        self._published = asyncio.Event()
        self.closing = False
        self.bytes_out = 0  # payload bytes served since the last ``take_bytes_out``
        self.waiting = 0  # sync-mode pulls currently waiting for a round (for logs and tests)

    @property
    def latest(self) -> Snapshot | None:
        return self._snapshots[max(self._snapshots)] if self._snapshots else None

    @property
    def latest_round(self) -> int:
        return max(self._snapshots) if self._snapshots else -1

    def get(self, round: int) -> Snapshot | None:
        return self._snapshots.get(round)

    def put(self, snapshot: Snapshot) -> None:
        """Install ``snapshot`` (rounds never go backwards), keep one previous, wake the waiters."""
        if snapshot.round < self.latest_round:
            raise ValueError(f"round {snapshot.round} is older than the published round {self.latest_round}")
        self._snapshots[snapshot.round] = snapshot
        for old in sorted(self._snapshots)[:-2]:
            del self._snapshots[old]
        self._wake()

    def close(self) -> None:
        self.closing = True
        self._wake()

    def _wake(self) -> None:
        event, self._published = self._published, asyncio.Event()
        event.set()

    async def wait_for_round(self, round: int, timeout: float) -> bool:
        """Wait (up to ``timeout`` s) until round ``round`` or later is published; False if not."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        self.waiting += 1
        try:
            while self.latest_round < round and not self.closing:
                remaining = give_up - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._published.wait(), remaining)
                except asyncio.TimeoutError:
                    return False
            return self.latest_round >= round
        finally:
            self.waiting -= 1

    def take_bytes_out(self) -> int:
        value, self.bytes_out = self.bytes_out, 0
        return value
