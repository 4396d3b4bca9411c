"""State transfer to a late joiner: average the newest models of a few live neighbours.

    got = fetch_swarm_state(live, swarm_id="s", peer_id="p7", fingerprint=fp, donors=2, timeout=30.0)
    if got is not None:
        params, swarm_round, donor_ids = got

Like hivemind's ``load_state_from_peers``, but pulling flat parameter snapshots over the gossip
transport. Donors are ranked by a hash of the joiner's own id (:func:`donor_order`), so different
joiners load from different donors instead of all hitting the lowest id; the snapshots of the donors
that answer are averaged. Only peers that have trained (round > 0) with our layout are asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import torch

from gossip.client import call_pull, open_channel
from gossip.security import Security
from protocol.assembler import Expectation, ReceivedSnapshot, SnapshotAssembler
from protocol.records import PeerRecord
from protocol.serde import PullRequest

log = logging.getLogger(__name__)


def donor_order(own_id: str, candidates: list[str], salt: int = 0) -> list[str]:
    """Candidates ranked by sha256(own id, candidate, salt): every joiner gets its own order, so
    state transfer spreads over the swarm instead of always hitting the lowest id."""

    def rank(candidate: str) -> str:
        return hashlib.sha256(f"{own_id}|{candidate}|{salt}".encode()).hexdigest()

    return sorted(candidates, key=rank)


async def _pull_newest(
    donor: PeerRecord, *, swarm_id: str, peer_id: str, fingerprint: str, timeout: float, security: Security
) -> ReceivedSnapshot:
    """The newest snapshot ``donor`` serves (any round), checked against our layout."""
    request = PullRequest(
        swarm_id=swarm_id, peer_id=peer_id, round=0, newest=True, layout_fingerprint=fingerprint
    )
    expect = Expectation(swarm_id=swarm_id, layout_fingerprint=fingerprint, peer_id=donor.peer_id)
    channel = open_channel(donor.address, security.tls)
    try:
        snapshot, _ = await call_pull(channel, request, SnapshotAssembler(expect), timeout, security.auth)
        return snapshot
    finally:
        await channel.close()


async def _pull_donors(donors: list[PeerRecord], **pull: object) -> list[tuple[PeerRecord, ReceivedSnapshot]]:
    """Pull every donor concurrently; the ones that answered, with their snapshots (failures logged)."""
    results = await asyncio.gather(*(_pull_newest(d, **pull) for d in donors), return_exceptions=True)
    got = []
    for donor, result in zip(donors, results):
        if isinstance(result, BaseException):
            log.warning("state transfer from %s failed: %s", donor.peer_id, result)
        else:
            got.append((donor, result))
    return got


def fetch_swarm_state(
    live: list[PeerRecord],
    *,
    swarm_id: str,
    peer_id: str,
    fingerprint: str,
    donors: int,
    timeout: float,
    security: Security | None = None,
) -> tuple[torch.Tensor, int, list[str]] | None:
    """Average the newest snapshots of up to ``donors`` live neighbours that have trained.

    Returns (flat params, the swarm's round, donor ids) or None when nobody has a model to give.
    Donors are tried in :func:`donor_order`; if all chosen donors fail, the next ones are tried.
    ``security``: TLS files and/or the swarm secret (None: plaintext, no secret). Blocking: runs the
    pulls on an event loop of its own (call it from a thread without one).
    """
    security = security or Security()
    others = {
        r.peer_id: r
        for r in live
        if r.peer_id != peer_id and r.round > 0 and r.layout_fingerprint in ("", fingerprint)
    }
    if not others:
        return None
    swarm_round = max(r.round for r in others.values())
    order = [others[i] for i in donor_order(peer_id, list(others), salt=swarm_round)]
    pull = dict(
        swarm_id=swarm_id, peer_id=peer_id, fingerprint=fingerprint, timeout=timeout, security=security
    )
    for start in range(0, len(order), max(1, donors)):
        chosen = order[start : start + max(1, donors)]
        got = asyncio.run(_pull_donors(chosen, **pull))
        if got:
            params = torch.stack([snap.params.float() for _, snap in got]).mean(dim=0)
            rounds = [snap.header.round for _, snap in got]
            return params, max(rounds), [d.peer_id for d, _ in got]
    return None
