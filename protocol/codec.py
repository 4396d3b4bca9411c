"""Compressed parameter deltas on the wire: int8 with one scale per block, and top-k.

A compressed gossip round does not send parameters but the *difference* between a peer's parameters
and the copy its neighbours already hold (CHOCO-SGD: Koloskova, Stich and Jaggi, "Decentralized
Stochastic Optimization and Gossip Algorithms with Compressed Communication", ICML 2019). These are
the two compressors of that scheme and their byte layout; the error feedback that keeps the
compression error from accumulating lives with the replicas (``gossip/choco.py``).

* ``int8``: the delta in blocks of :data:`BLOCK` elements, each block as one float32 scale
  (max |x| / 127) and int8 values round(x / scale): 1 byte + 4/BLOCK per element, 3.9x fewer than
  float32 at BLOCK 256; per element the error is at most scale / 2.
* ``topk``: the k largest-magnitude elements as strictly increasing uint32 indices and float16
  values: 6 bytes per kept element (k = numel / 100 is ~67x fewer bytes than float32).

Layout (little-endian): a 16-byte header ``magic "DQ", codec id (u8), reserved (u8), numel (u32),
count (u32), reserved (u32)`` (count = blocks for int8, k for top-k), then the body. Decoding checks
every size against the numel the receiver expects *before* allocating anything, and top-k indices
for bounds and order, so a hostile or corrupt payload raises :class:`CodecError` and never allocates
beyond what the receiver's own model needs.
"""

from __future__ import annotations

import math
import struct
import warnings

import torch

BLOCK = 256  # elements per int8 scale: a scale per 1 KiB of float32
MAGIC = b"DQ"
HEADER = struct.Struct("<2sBBIII")  # magic, codec id, reserved, numel, count, reserved
CODEC_IDS = {"int8": 1, "topk": 2}
_CODEC_NAMES = {v: k for k, v in CODEC_IDS.items()}
INT8_MAX = 127


class CodecError(ValueError):
    """A compressed payload that cannot be decoded (wrong size, codec, bounds or order)."""


def encoded_bytes(codec: str, numel: int, k: int | None = None) -> int:
    """The exact payload size of ``numel`` elements under ``codec`` (top-k keeps ``k``)."""
    if codec == "int8":
        return HEADER.size + 4 * math.ceil(numel / BLOCK) + numel
    if codec == "topk":
        return HEADER.size + 6 * _check_k(k, numel)
    raise CodecError(f"unknown codec {codec!r}; known: {', '.join(CODEC_IDS)}")


def encode(codec: str, delta: torch.Tensor, k: int | None = None) -> bytes:
    """``delta`` (1-D float32) compressed by ``codec``; the bytes decode with :func:`decode`."""
    if delta.dim() != 1 or delta.dtype != torch.float32:
        raise ValueError(f"expected a 1-D float32 tensor, got {tuple(delta.shape)} {delta.dtype}")
    if codec == "int8":
        scales, values = quantize_int8(delta)
        head = HEADER.pack(MAGIC, CODEC_IDS[codec], 0, delta.numel(), scales.numel(), 0)
        return head + scales.numpy().tobytes() + values.numpy().tobytes()
    if codec == "topk":
        indices, values = top_k(delta, _check_k(k, delta.numel()))
        head = HEADER.pack(MAGIC, CODEC_IDS[codec], 0, delta.numel(), indices.numel(), 0)
        return head + indices.numpy().astype("<u4").tobytes() + values.numpy().tobytes()
    raise CodecError(f"unknown codec {codec!r}; known: {', '.join(CODEC_IDS)}")


def decode(payload: bytes | memoryview, numel: int) -> torch.Tensor:
    """The float32 delta of ``numel`` elements in ``payload``; :class:`CodecError` when it is not one."""
    view = memoryview(payload)
    if len(view) < HEADER.size:
        raise CodecError(f"payload of {len(view)} bytes is shorter than its {HEADER.size}-byte header")
    magic, codec_id, _, got_numel, count, _ = HEADER.unpack_from(view)
    if magic != MAGIC or codec_id not in _CODEC_NAMES:
        raise CodecError(f"not a compressed delta (magic {bytes(magic)!r}, codec id {codec_id})")
    if got_numel != numel:
        raise CodecError(f"delta of {got_numel} elements, expected {numel}")
    codec = _CODEC_NAMES[codec_id]
    expected = encoded_bytes(codec, numel, count if codec == "topk" else None)
    if codec == "int8" and count != math.ceil(numel / BLOCK):
        raise CodecError(f"int8 delta with {count} scales, expected {math.ceil(numel / BLOCK)}")
    if len(view) != expected:
        raise CodecError(f"{codec} delta of {len(view)} bytes, expected {expected}")
    body = view[HEADER.size :]
    if codec == "int8":
        return dequantize_int8(_view(body[: 4 * count], torch.float32), _view(body[4 * count :], torch.int8))
    return scatter_top_k(
        _view(body[: 4 * count], torch.int32), _view(body[4 * count :], torch.float16), numel
    )


def quantize_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(float32 scale per block, int8 values): x ≈ values * scale of its block."""
    n = x.numel()
    padded = torch.nn.functional.pad(x, (0, (-n) % BLOCK)).view(-1, BLOCK)
    scales = padded.abs().amax(dim=1) / INT8_MAX
    if not torch.isfinite(scales).all():
        raise ValueError("cannot quantize a delta with non-finite values")
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    values = torch.round(padded / safe[:, None]).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)
    return scales.contiguous(), values.view(-1)[:n].contiguous()


def dequantize_int8(scales: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """The float32 tensor that :func:`quantize_int8` encoded as (scales, values)."""
    n = values.numel()
    if scales.numel() != math.ceil(n / BLOCK):
        raise CodecError(f"{scales.numel()} scales for {n} values (block {BLOCK})")
    if not torch.isfinite(scales).all() or bool((scales < 0).any()):
        raise CodecError("int8 delta with a negative or non-finite scale")
    padded = torch.nn.functional.pad(values.to(torch.float32), (0, (-n) % BLOCK)).view(-1, BLOCK)
    return (padded * scales[:, None]).view(-1)[:n].contiguous()


def top_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(increasing int32 indices, float16 values) of the ``k`` largest-magnitude elements."""
    if not torch.isfinite(x).all():
        raise ValueError("cannot sparsify a delta with non-finite values")
    indices = torch.topk(x.abs(), k, sorted=False).indices.sort().values
    return indices.to(torch.int32), x[indices].to(torch.float16)


def scatter_top_k(indices: torch.Tensor, values: torch.Tensor, numel: int) -> torch.Tensor:
    """The dense float32 tensor of ``numel`` elements holding ``values`` at ``indices`` (checked)."""
    if indices.numel() != values.numel():
        raise CodecError(f"{indices.numel()} indices for {values.numel()} values")
    if indices.numel():
        wide = indices.to(torch.int64)
        if int(wide[0]) < 0 or int(wide[-1]) >= numel or bool((wide[1:] <= wide[:-1]).any()):
            raise CodecError("top-k indices out of range, repeated or not increasing")
        if not torch.isfinite(values).all():
            raise CodecError("top-k delta with non-finite values")
    out = torch.zeros(numel, dtype=torch.float32)
    out[indices.to(torch.int64)] = values.to(torch.float32)
    return out


def _view(buffer: memoryview, dtype: torch.dtype) -> torch.Tensor:
    """A tensor over received bytes without copying; it is only read (decoding makes a new one)."""
    if not len(buffer):
        return torch.empty(0, dtype=dtype)
    with warnings.catch_warnings():  # received bytes are immutable; nothing writes through this view
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(buffer, dtype=dtype)


def _check_k(k: int | None, numel: int) -> int:
    if not isinstance(k, int) or not 0 <= k <= numel:
        raise CodecError(f"top-k needs 0 <= k <= {numel}, got {k!r}")
    return k
