"""protocol.codec: int8 per-block and top-k deltas round-trip within their error bounds, and every
malformed payload (random bytes, wrong sizes, hostile indices) is refused before allocation."""

from __future__ import annotations

import random

import pytest
import torch

from protocol.codec import BLOCK, HEADER, CodecError, decode, encode, encoded_bytes


@pytest.mark.parametrize("numel", [1, BLOCK - 1, BLOCK, 3 * BLOCK + 7])
def test_int8_round_trip_is_within_half_a_step_of_each_blocks_scale(numel):
    # prepare
    x = torch.randn(numel, generator=torch.Generator().manual_seed(numel)) * 3.0
    # execute
    payload = encode("int8", x)
    y = decode(payload, numel)
    # assert: the exact size, and |error| <= scale / 2 per block (scale = block max / 127)
    assert len(payload) == encoded_bytes("int8", numel)
    for start in range(0, numel, BLOCK):
        block = slice(start, start + BLOCK)
        scale = x[block].abs().max() / 127
        assert (y[block] - x[block]).abs().max() <= scale / 2 + 1e-7


def test_int8_keeps_a_zero_block_zero_and_is_four_times_smaller():
    x = torch.zeros(4 * BLOCK)
    x[BLOCK:] = torch.linspace(-1, 1, 3 * BLOCK)
    payload = encode("int8", x)
    assert torch.equal(decode(payload, x.numel())[:BLOCK], torch.zeros(BLOCK))
    assert len(payload) < x.numel() * 4 / 3.8


def test_topk_keeps_exactly_the_largest_magnitudes():
    # prepare
    x = torch.tensor([0.1, -5.0, 0.2, 3.0, -0.05, 4.0])
    # execute
    y = decode(encode("topk", x, k=3), x.numel())
    # assert
    assert torch.equal(y, torch.tensor([0.0, -5.0, 0.0, 3.0, 0.0, 4.0]))
    assert len(encode("topk", x, k=3)) == HEADER.size + 6 * 3


def test_topk_of_zero_elements_decodes_to_zeros():
    assert torch.equal(decode(encode("topk", torch.ones(5), k=0), 5), torch.zeros(5))


def test_non_finite_deltas_are_refused_at_the_sender():
    with pytest.raises(ValueError, match="non-finite"):
        encode("int8", torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="non-finite"):
        encode("topk", torch.tensor([1.0, float("inf")]), k=1)


def test_a_payload_for_another_model_size_is_refused():
    payload = encode("int8", torch.ones(10))
    with pytest.raises(CodecError, match="10 elements, expected 11"):
        decode(payload, 11)


def test_truncated_and_padded_payloads_are_refused():
    payload = encode("int8", torch.ones(300))
    for bad in (payload[:-1], payload + b"\0", payload[: HEADER.size - 1], b""):
        with pytest.raises(CodecError):
            decode(bad, 300)


def _topk_payload(numel: int, indices: list[int]) -> bytes:
    head = HEADER.pack(b"DQ", 2, 0, numel, len(indices), 0)
    body = torch.tensor(indices, dtype=torch.int64).numpy().astype("<u4").tobytes()
    return head + body + torch.ones(len(indices), dtype=torch.float16).numpy().tobytes()


@pytest.mark.parametrize("indices", [[0, 10], [3, 3], [5, 2], [2**31]])
def test_hostile_topk_indices_are_refused(indices):
    with pytest.raises(CodecError, match="indices"):
        decode(_topk_payload(10, indices), 10)


def test_a_huge_announced_count_is_refused_without_allocating_it():
    head = HEADER.pack(b"DQ", 2, 0, 10, 2**32 - 1, 0)
    with pytest.raises(CodecError):
        decode(head + b"\0" * 64, 10)


def test_a_negative_int8_scale_is_refused():
    payload = bytearray(encode("int8", torch.ones(4)))
    payload[HEADER.size : HEADER.size + 4] = torch.tensor([-1.0]).numpy().tobytes()
    with pytest.raises(CodecError, match="scale"):
        decode(bytes(payload), 4)


def test_random_and_mutated_bytes_never_crash_the_decoder():
    # prepare: valid payloads of both codecs, then random bytes and single-byte mutations of them
    rng = random.Random(0)
    x = torch.randn(600, generator=torch.Generator().manual_seed(1))
    valid = [encode("int8", x), encode("topk", x, k=60)]
    cases = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64))) for _ in range(200)]
    for payload in valid:
        for _ in range(200):
            mutated = bytearray(payload)
            mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
            cases.append(bytes(mutated))
    # execute / assert: a CodecError or a finite tensor of the right size, nothing else
    for case in cases:
        try:
            y = decode(case, 600)
        except CodecError:
            continue
        assert y.shape == (600,) and y.dtype == torch.float32
