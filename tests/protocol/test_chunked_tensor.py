"""protocol.chunked_tensor: slices of a tensor received in parts — views inside a part, copies across."""

from __future__ import annotations

import pytest
import torch

from protocol.chunked_tensor import ChunkedTensor


def _chunked(values: torch.Tensor, part: int) -> ChunkedTensor:
    chunked = ChunkedTensor(values.dtype, values.numel())
    for start in range(0, values.numel(), part):
        chunked.append_bytes(memoryview(values[start : start + part].clone().numpy().tobytes()))
    return chunked


def test_slices_inside_a_part_are_views_and_across_parts_copies():
    # prepare
    values = torch.arange(10, dtype=torch.float32)
    chunked = _chunked(values, 4)
    # execute
    inside, across, everything = chunked[4:8], chunked[2:9], chunked.contiguous_copy()
    # assert
    assert torch.equal(inside, values[4:8]) and torch.equal(across, values[2:9])
    assert torch.equal(everything, values) and chunked.float().dtype == torch.float32
    assert inside.data_ptr() == chunked[4:5].data_ptr()  # the same part's memory, no copy
    assert across.data_ptr() != chunked[2:3].data_ptr()
    assert chunked[3:3].numel() == 0 and chunked.shape == (10,) and chunked.element_size() == 4


def test_misaligned_bytes_are_copied_to_an_aligned_part():
    # prepare: float32 bytes starting one byte into a buffer
    values = torch.randn(6)
    raw = memoryview(b"\x00" + values.numpy().tobytes())[1:]
    chunked = ChunkedTensor(torch.float32, 6)
    # execute
    chunked.append_bytes(raw)
    # assert
    assert chunked[0:6].data_ptr() % 4 == 0 and torch.equal(chunked[0:6], values)


def test_bad_parts_and_slices_are_refused():
    # prepare
    chunked = _chunked(torch.arange(4, dtype=torch.float32), 2)
    partial = ChunkedTensor(torch.float32, 4)
    partial.append(torch.zeros(2))
    # execute / assert
    with pytest.raises(ValueError, match="overfill"):
        chunked.append(torch.zeros(1))
    with pytest.raises(ValueError, match="need 1-D"):
        partial.append(torch.zeros(1, dtype=torch.float16))
    with pytest.raises(ValueError, match="whole"):
        partial.append_bytes(memoryview(b"abc"))
    with pytest.raises(IndexError, match="arrived"):
        partial[1:3]
    with pytest.raises(IndexError, match="arrived"):
        partial.contiguous_copy()
    with pytest.raises(ValueError, match="step 1"):
        chunked[::2]
    with pytest.raises(TypeError, match="slices"):
        chunked[1]
