"""NodeConfig: everything a GossipNode needs, validated on construction; every timeout a field."""

from __future__ import annotations

from dataclasses import dataclass, field

from gossip import robust
from gossip.adaptive_deadline import AdaptiveDeadline, PullDeadlines
from gossip.choco_round import COMPRESSIONS, ChocoConfig
from gossip.security import SwarmAuth, TLSFiles
from protocol.frames import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_PAYLOAD_BYTES,
    check_chunk_bytes,
    wire_dtype,
)

MODES = ("sync", "async")


@dataclass(frozen=True)
class NodeConfig:
    """Everything a GossipNode needs; every timeout is a documented parameter."""

    swarm_id: str  # peers of another swarm are refused
    peer_id: str  # unique in the swarm
    layout_fingerprint: str  # hash of parameter names/shapes/dtypes; only equal layouts are mixed
    listen: str = "127.0.0.1:0"  # host:port to bind; port 0 picks a free one (see node.address)
    advertise_address: str | None = None  # host:port others should dial; default: the bound address
    mode: str = "sync"  # "sync": pull exactly our round (D-PSGD); "async": newest, staleness recorded
    pull_deadline_s: float = 10.0  # per neighbour pull, including a sync-mode wait for its round
    # per-neighbour deadlines from measured pull times, each <= pull_deadline_s (None: all equal it)
    adaptive_deadline: AdaptiveDeadline | None = None
    wire_dtype: str = "fp32"  # "fp32" | "fp16" | "bf16": dtype we ask neighbours to send params in
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # data chunk size we serve (1-4 MiB recommended)
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES  # refuse larger snapshots before buffering
    hello_deadline_s: float = 5.0  # deadline of a Hello call
    close_grace_s: float = 1.0  # on close, in-flight pulls we serve get this long to finish
    aggregation: str = "weighted"  # "weighted" (mixing row, D-PSGD) | "trimmed_mean" (gossip.robust)
    trim_fraction: float = 0.2  # trimmed mean: fraction trimmed from each side per coordinate
    max_norm_ratio: float | None = robust.DEFAULT_MAX_NORM_RATIO  # reject ||θ_j|| outside ||θ_i|| x/÷ this
    max_distance_ratio: float | None = None  # reject ||θ_j - θ_i|| > this x ||θ_i|| (None: off)
    tls: TLSFiles | None = None  # mutual TLS with the swarm CA on every channel (gossip.security)
    swarm_secret: bytes | None = field(default=None, repr=False)  # only holders may pull/be pulled; None: off
    fault_control: str | None = None  # JSON file of injected transport faults (gossip.faults); None = off
    compression: str = "none"  # "int8" | "topk": CHOCO gossip with compressed steps (gossip.choco_round)
    topk_fraction: float = 0.01  # top-k: the share of elements a step keeps
    choco_gamma: float = 0.5  # CHOCO's consensus step size

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        PullDeadlines(self.pull_deadline_s, self.adaptive_deadline)  # validates the deadlines
        wire_dtype(self.wire_dtype)
        check_chunk_bytes(self.chunk_bytes)
        if not self.swarm_id or not self.peer_id:
            raise ValueError("swarm_id and peer_id must be non-empty")
        _ = self.robust  # validates the robust-aggregation fields
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        _ = self.choco  # validates the CHOCO fields
        if self.swarm_secret is not None:
            SwarmAuth(self.swarm_secret, self.swarm_id)  # validates the secret's length

    @property
    def choco(self) -> ChocoConfig | None:
        """The compressed-gossip settings, None for plain gossip."""
        if self.compression == "none":
            return None
        return ChocoConfig(self.compression, self.topk_fraction, self.choco_gamma)

    @property
    def robust(self) -> robust.RobustConfig:
        """The snapshot acceptance rules and aggregation rule (``gossip.robust``)."""
        return robust.RobustConfig(
            aggregation=self.aggregation,
            trim_fraction=self.trim_fraction,
            max_norm_ratio=self.max_norm_ratio,
            max_distance_ratio=self.max_distance_ratio,
        )
