"""Which entries under a swarm's DHT key are valid, enforced inside every DHT node of ours.

A peer's entry is its ``PeerRecord`` (msgpack, ``protocol.records``) stored under subkey = its peer
id, or the leave tombstone. ``PeerRecordValidator`` runs inside the hivemind DHT process, so a bad
entry is refused at the door, not only skipped when read.
"""

from __future__ import annotations

import logging
from typing import Any

from hivemind.dht.routing import DHTID
from hivemind.dht.validation import DHTRecord, RecordValidatorBase
from hivemind.utils.serializer import MSGPackSerializer

from protocol.records import PeerRecord, RecordError, peer_record_from_bytes

logger = logging.getLogger(__name__)

TOMBSTONE = b""  # the value a leaving peer stores over its record: "gone", never a valid record
_MAX_WARNED = 1024  # bound on remembered bad entries (we warn once per entry, not once per read)


def check_entry(subkey: Any, value: Any) -> PeerRecord | None:
    """Validate one entry under ``<swarm>/peers``: the record, or None for a leave tombstone.

    Raises RecordError when the subkey is not a peer id string, the value is not a valid record,
    or the record names another peer than its subkey (nobody may announce on another's behalf).
    """
    if not isinstance(subkey, str):
        raise RecordError(f"subkey must be a peer id string, got {type(subkey).__name__}")
    if isinstance(value, bytes) and value == TOMBSTONE:
        return None
    record = peer_record_from_bytes(value)
    if record.peer_id != subkey:
        raise RecordError(f"record for peer {record.peer_id!r} stored under subkey {subkey!r}")
    return record


class WarnOnce:
    """Log a warning once per offending entry, not once per read (bounded memory)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._seen: set[Any] = set()

    def __call__(self, key: Any, message: str, *args: Any) -> None:
        if key in self._seen:
            return
        if len(self._seen) >= _MAX_WARNED:
            self._seen.clear()
        self._seen.add(key)
        self._log.warning(message, *args)


class PeerRecordValidator(RecordValidatorBase):
    """Runs inside every DHT node of ours: refuses to store, or to accept from another node, any
    entry under the swarm key that ``check_entry`` rejects (and any plain value there, which would
    replace the whole map). hivemind itself breaks on a map with mixed subkey types, so bad entries
    must be stopped at the door, not only skipped when read."""

    def __init__(self, key: str):
        self._key = key
        self._key_bytes = DHTID.generate(source=key).to_bytes()
        self._warn = WarnOnce(logger)

    def validate(self, record: DHTRecord) -> bool:
        if record.key != self._key_bytes:
            return True  # not our key: not our business
        try:
            check_entry(MSGPackSerializer.loads(record.subkey), MSGPackSerializer.loads(record.value))
        except Exception as exc:  # RecordError, or msgpack errors on undecodable bytes
            self._warn(
                (record.subkey[:64], record.expiration_time),
                "refused a DHT entry under %r: %s",
                self._key,
                exc,
            )
            return False
        return True
