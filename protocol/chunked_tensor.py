"""ChunkedTensor: a received 1-D tensor read where its chunks landed, without copying them together.

A pulled snapshot arrives as data frames of ``chunk_bytes`` each (1 MiB by default). Copying every
payload into one contiguous receive buffer costs a pass over the bytes (~3.4 ms per 44.6 MiB here)
before the mix reads them again. Instead the assembler can keep each verified payload as a tensor
view of its frame (``torch.frombuffer``: the view holds the frame alive) and hand the mixer this
object, whose slices are views whenever they fall inside one chunk — always, for blocks that follow
chunk boundaries — and copies only for a slice that spans chunks.

Read-only: the views alias immutable ``bytes`` objects; nothing may write to them.
"""

from __future__ import annotations

import bisect
import warnings

import torch


class ChunkedTensor:
    """A 1-D tensor of ``numel`` elements of ``dtype`` filled part by part, in order, by ``append``."""

    def __init__(self, dtype: torch.dtype, numel: int):
        self.dtype = dtype
        self.shape = torch.Size((numel,))
        self.filled = 0  # elements [0, filled) have arrived
        self._starts: list[int] = []  # first element of each part
        self._parts: list[torch.Tensor] = []

    def numel(self) -> int:
        return self.shape[0]

    def element_size(self) -> int:
        return self.dtype.itemsize

    def append_bytes(self, payload: memoryview) -> None:
        """Add the next ``len(payload) // itemsize`` elements: a view of ``payload`` when its address
        suits the dtype, else a copy (the few chunks of a sender that does not align its frames)."""
        if len(payload) % self.dtype.itemsize:
            raise ValueError(f"{len(payload)} bytes are not whole {self.dtype} elements")
        with warnings.catch_warnings():  # frombuffer warns that ``bytes`` are read-only: we only read
            warnings.simplefilter("ignore", UserWarning)
            part = torch.frombuffer(payload, dtype=torch.uint8)
        if part.data_ptr() % self.dtype.itemsize:
            part = part.clone()
        self.append(part.view(self.dtype))

    def append(self, part: torch.Tensor) -> None:
        """Add ``part`` (1-D, ``dtype``) as the next elements."""
        if part.dtype != self.dtype or part.dim() != 1:
            raise ValueError(f"part is {part.dtype} x {tuple(part.shape)}, need 1-D {self.dtype}")
        if self.filled + part.numel() > self.numel():
            raise ValueError(f"part of {part.numel()} overfills {self.filled} of {self.numel()}")
        if part.numel():
            self._starts.append(self.filled)
            self._parts.append(part)
            self.filled += part.numel()

    def __getitem__(self, index: slice) -> torch.Tensor:
        """Elements ``index`` (a step-1 slice of what has arrived): a view inside one part, else a copy."""
        if not isinstance(index, slice):
            raise TypeError("ChunkedTensor supports slices only")
        start, stop, step = index.indices(self.numel())
        if step != 1:
            raise ValueError("ChunkedTensor slices must have step 1")
        stop = max(start, stop)
        if stop > self.filled:
            raise IndexError(f"elements [{start}, {stop}) asked, [0, {self.filled}) arrived")
        if start == stop:
            return torch.empty(0, dtype=self.dtype)
        first = bisect.bisect_right(self._starts, start) - 1
        pieces = []
        for i in range(first, len(self._parts)):
            lo = self._starts[i]
            if lo >= stop:
                break
            part = self._parts[i]
            pieces.append(part[max(start - lo, 0) : min(stop - lo, part.numel())])
        return pieces[0] if len(pieces) == 1 else torch.cat(pieces)

    def contiguous_copy(self) -> torch.Tensor:
        """All elements in one new, writable tensor (needs everything to have arrived)."""
        if self.filled != self.numel():
            raise IndexError(f"{self.filled} of {self.numel()} elements arrived")
        return torch.cat(self._parts) if self._parts else torch.empty(0, dtype=self.dtype)

    def float(self) -> torch.Tensor:
        return self.contiguous_copy().float()
