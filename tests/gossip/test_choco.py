"""gossip.choco: replicas follow the public copy bit for bit, refuse deltas that skip a version, and
CHOCO gossip with compressed deltas keeps the network average and reaches consensus."""

from __future__ import annotations

import math
import struct

import pytest
import torch

from gossip.choco import Delta, NeedSnapshot, PublicCopy, Replica, choco_mix
from protocol.codec import CODEC_IDS, HEADER, MAGIC


def test_a_replica_fed_every_delta_equals_the_senders_copy_exactly():
    # prepare
    gen = torch.Generator().manual_seed(0)
    sender = PublicCopy(torch.zeros(1000), "int8")
    replica = Replica(*sender.snapshot())
    # execute: the sender's parameters move every round
    params = torch.zeros(1000)
    for _ in range(20):
        params += torch.randn(1000, generator=gen)
        replica.apply(sender.advance(params))
    # assert: identical bits, and error feedback keeps the copy close to the parameters
    assert torch.equal(replica.value, sender.value) and replica.version == sender.version == 20
    assert replica.copy_id == sender.copy_id
    assert (sender.value - params).abs().max() < 0.2


def test_error_feedback_sends_what_topk_left_out_in_later_rounds():
    sender = PublicCopy(torch.zeros(100), "topk", k=10)
    target = torch.linspace(1, 2, 100)
    for _ in range(10):  # ten rounds of ten elements: every element sent once
        sender.advance(target)
    assert torch.allclose(sender.value, target, atol=1e-3)


def test_a_delta_that_does_not_follow_on_is_refused_and_changes_nothing():
    sender = PublicCopy(torch.zeros(10), "int8")
    replica = Replica(*sender.snapshot())
    sender.advance(torch.ones(10))
    skipped = sender.advance(2 * torch.ones(10))  # the replica missed version 1
    before = replica.value.clone()
    with pytest.raises(NeedSnapshot, match="at version 0 got a delta of copy .* from version 1"):
        replica.apply(skipped)
    assert torch.equal(replica.value, before) and replica.version == 0
    # a full snapshot puts it back in step
    replica = Replica(*sender.snapshot())
    replica.apply(sender.advance(3 * torch.ones(10)))
    assert torch.equal(replica.value, sender.value)


def test_a_corrupt_or_non_finite_delta_is_refused_and_changes_nothing():
    replica = Replica("c", 0, torch.zeros(10))
    with pytest.raises(ValueError):
        replica.apply(Delta("c", 0, 1, b"not a delta"))
    # a well-formed int8 payload whose one block scale is +inf (a hostile sender)
    inf_scale = (
        HEADER.pack(MAGIC, CODEC_IDS["int8"], 0, 10, 1, 0) + struct.pack("<f", math.inf) + bytes(10 * [1])
    )
    with pytest.raises(ValueError, match="non-finite"):
        replica.apply(Delta("c", 0, 1, inf_scale))
    assert torch.equal(replica.value, torch.zeros(10)) and replica.version == 0


def test_a_delta_of_another_copy_is_refused_even_at_the_same_version():
    # prepare: a peer restarted (a new public copy) and reached the version our replica holds
    old, new = PublicCopy(torch.zeros(10), "int8"), PublicCopy(torch.ones(10), "int8")
    replica = Replica(*old.snapshot())
    # execute / assert
    with pytest.raises(NeedSnapshot):
        replica.apply(new.advance(torch.ones(10)))


@pytest.mark.parametrize("codec,k", [("int8", None), ("topk", 64)])
def test_choco_gossip_on_a_ring_keeps_the_average_and_reaches_consensus(codec, k):
    # prepare: 6 peers on a ring, Metropolis weights 1/3 (symmetric, doubly stochastic)
    n, dim, gamma = 6, 256, 0.4
    gen = torch.Generator().manual_seed(2)
    x = [torch.randn(dim, generator=gen) for _ in range(n)]
    mean = torch.stack(x).mean(0)
    copies = [PublicCopy(torch.zeros(dim), codec, k) for _ in range(n)]
    ring = {i: ((i - 1) % n, (i + 1) % n) for i in range(n)}
    replicas = {(i, j): Replica(*copies[j].snapshot()) for i in range(n) for j in ring[i]}
    spread0 = max((xi - mean).norm() for xi in x)
    # execute: each round every peer publishes its delta, neighbours apply it, then all mix
    for _ in range(300):
        deltas = [copies[i].advance(x[i]) for i in range(n)]
        for (_, j), replica in replicas.items():
            replica.apply(deltas[j])
        x = [
            choco_mix(x[i], copies[i].value, [(1 / 3, replicas[i, j].value) for j in ring[i]], gamma)
            for i in range(n)
        ]
    # assert: the average is preserved to float tolerance and every peer is near it
    assert torch.allclose(torch.stack(x).mean(0), mean, atol=1e-4)
    assert max((xi - mean).norm() for xi in x) < 1e-2 * spread0


def test_gamma_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="gamma"):
        choco_mix(torch.zeros(2), torch.zeros(2), [], 0.0)
