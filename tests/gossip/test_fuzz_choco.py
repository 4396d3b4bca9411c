"""Hostile compressed-gossip streams against a live node with ``compression: int8`` (seeded).

A hostile gRPC server answers the victim's compressed pulls with malformed steps and copies: steps
of the wrong size (refused before any allocation), steps without a copy id or beside parameters,
steps of a copy or from a round the victim does not hold, garbage or non-finite codec payloads,
non-finite full copies. Every one is refused with a specific error kind, the victim's replica is
never advanced on a wrong base, and the result is its own parameters (nothing mixed).
"""

from __future__ import annotations

import math
import random
import struct

import torch

from gossip.choco import PublicCopy, Replica
from gossip.node import GossipNode
from protocol.codec import CODEC_IDS, HEADER, MAGIC, encoded_bytes
from protocol.payload import snapshot_payload
from tests.gossip.test_fuzz import CHUNK, LAYOUT, SWARM, Hostile, _config

N = 8_000
STEP = encoded_bytes("int8", N)


def _stream(tensors: list[tuple[str, torch.Tensor]], copy_id: str = "", base_round: int = -1, round: int = 1):
    fields = dict(swarm_id=SWARM, peer_id="evil", round=round, layout_fingerprint=LAYOUT)
    return list(
        snapshot_payload({**fields, "copy_id": copy_id, "base_round": base_round}, tensors, CHUNK).frames
    )


def _bytes(payload: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8)


def _inf_scale_step() -> bytes:
    blocks = math.ceil(N / 256)
    head = HEADER.pack(MAGIC, CODEC_IDS["int8"], 0, N, blocks, 0)
    return head + struct.pack(f"<{blocks}f", math.inf, *[1.0] * (blocks - 1)) + bytes(N)


def _cases(rng: random.Random, held: tuple[str, int], step: bytes):
    """(name, frames, allowed error prefixes) answering a round-1 pull from a victim that holds
    the hostile's copy ``held`` = (copy id, round 0); ``step`` is an honest step of it."""
    copy_id, base = held
    yield (
        "step too long",
        _stream([("delta", _bytes(step + rng.randbytes(rng.randint(1, 64))))], copy_id, base),
        ("refused (refused)",),
    )
    yield (
        "step too short",
        _stream([("delta", _bytes(step[: rng.randint(1, STEP - 1)]))], copy_id, base),
        ("refused (refused)",),
    )
    yield "step without a copy id", _stream([("delta", _bytes(step))]), ("corrupt",)
    yield (
        "step beside params",
        _stream([("params", torch.zeros(N)), ("delta", _bytes(step))], copy_id, base),
        ("corrupt",),
    )
    yield (
        "step of another copy",
        _stream([("delta", _bytes(step))], "other" + copy_id, base),
        ("corrupt: replica",),
    )
    yield (
        "step from another round",
        _stream([("delta", _bytes(step))], copy_id, base + rng.randint(1, 9)),
        ("corrupt: replica",),
    )
    garbage = bytearray(step)
    garbage[: HEADER.size] = rng.randbytes(HEADER.size)
    yield "garbage codec header", _stream([("delta", _bytes(bytes(garbage)))], copy_id, base), ("corrupt",)
    yield "non-finite step", _stream([("delta", _bytes(_inf_scale_step()))], copy_id, base), ("corrupt",)
    nonfinite = torch.randn(N)
    nonfinite[rng.randrange(N)] = rng.choice([math.nan, math.inf])
    yield "non-finite full copy", _stream([("params", nonfinite)], "x" + copy_id), ("corrupt",)


async def test_a_compressed_pull_refuses_every_hostile_step_and_never_moves_on_a_wrong_base():
    rng = random.Random(20261201)
    hostile = Hostile()
    await hostile.start()
    victim = await GossipNode.create(_config("a", compression="int8"))
    try:
        # prepare: the victim holds the hostile's public copy at round 0 (a full copy it served)
        sender = PublicCopy(torch.randn(N), "int8", round=0)
        copy_id, version, value = sender.snapshot()
        hostile.frames = _stream([("params", value)], copy_id, round=0)
        own = torch.randn(N)
        victim.publish(own, 0)
        first = await victim.mix(0, {"evil": hostile.address}, 0.5, {"evil": 0.5})
        assert first.neighbours[0].answered
        step = sender.advance(torch.randn(N), 1).payload
        victim.publish(own, 1)
        # execute: every hostile case, 12 times over; the replica is put back after each
        failures, cases = [], 0
        for _ in range(12):
            for name, frames, kinds in _cases(rng, (copy_id, version), step):
                victim._choco.replicas["evil"] = Replica(copy_id, version, value)
                hostile.frames = frames
                result = await victim.mix(1, {"evil": hostile.address}, 0.5, {"evil": 0.5})
                report, cases = result.neighbours[0], cases + 1
                replica = victim._choco.replicas.get("evil")
                moved = replica is not None and (
                    replica.version != version or not torch.equal(replica.value, value)
                )
                if report.answered or not (report.error or "").startswith(kinds) or moved:
                    failures.append((name, report.error))
                elif not torch.equal(result.params, own):
                    failures.append((name, "mixed"))
        # assert
        assert failures == [] and cases >= 100
    finally:
        await victim.close()
        await hostile.server.stop(0)
