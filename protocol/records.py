"""Small records (DHT values such as a peer's announcement), msgpack-encoded, never pickled.

A hostile peer can at worst hand us malformed data, which is validated here and refused with a
clear ``RecordError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

MAX_RECORD_BYTES = 4096  # a peer record is ~200 bytes; anything much bigger is refused


class RecordError(ValueError):
    """A DHT record that does not decode to a valid PeerRecord."""


@dataclass(frozen=True)
class PeerRecord:
    """What a peer announces under ``<swarm id>/peers`` (subkey = peer id)."""

    peer_id: str
    address: str  # gRPC "host:port" others pull from
    round: int  # latest published round
    layout_fingerprint: str  # hash of parameter names/shapes/dtypes; peers only mix equal layouts
    capabilities: tuple[str, ...] = field(default_factory=tuple)  # e.g. ("fp16", "embedding", "tls")


_FIELDS = {"peer_id": str, "address": str, "round": int, "layout_fingerprint": str, "capabilities": list}


def peer_record_to_bytes(record: PeerRecord) -> bytes:
    payload = {
        "peer_id": record.peer_id,
        "address": record.address,
        "round": int(record.round),
        "layout_fingerprint": record.layout_fingerprint,
        "capabilities": list(record.capabilities),
    }
    data = msgpack.packb(payload, use_bin_type=True)
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"peer record is {len(data)} bytes, limit {MAX_RECORD_BYTES}")
    return data


def peer_record_from_bytes(data: bytes) -> PeerRecord:
    """Decode and validate; raises RecordError naming what is wrong."""
    if not isinstance(data, (bytes, bytearray)):
        raise RecordError(f"peer record must be bytes, got {type(data).__name__}")
    if len(data) > MAX_RECORD_BYTES:
        raise RecordError(f"peer record is {len(data)} bytes, limit {MAX_RECORD_BYTES}")
    try:
        payload = msgpack.unpackb(
            bytes(data),
            raw=False,
            strict_map_key=True,
            max_str_len=1024,
            max_bin_len=0,
            max_array_len=64,
            max_map_len=16,
        )
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise RecordError(f"peer record is not valid msgpack: {exc}") from None
    if not isinstance(payload, dict):
        raise RecordError(f"peer record must be a map, got {type(payload).__name__}")
    missing = sorted(set(_FIELDS) - set(payload))
    if missing:
        raise RecordError(f"peer record lacks fields: {', '.join(missing)}")
    for name, kind in _FIELDS.items():
        if not isinstance(payload[name], kind) or (kind is int and isinstance(payload[name], bool)):
            raise RecordError(f"peer record field {name!r} must be {kind.__name__}")
    if not all(isinstance(c, str) for c in payload["capabilities"]):
        raise RecordError("peer record capabilities must be strings")
    if payload["round"] < 0:
        raise RecordError(f"peer record round must be >= 0, got {payload['round']}")
    return PeerRecord(
        peer_id=payload["peer_id"],
        address=payload["address"],
        round=payload["round"],
        layout_fingerprint=payload["layout_fingerprint"],
        capabilities=tuple(payload["capabilities"]),
    )
