"""Model <-> one flat, contiguous float32 buffer: what the gossip layer publishes and mixes.

docs/design.md §1: averaging one flat buffer is 2.5-3x faster than the same bytes as many tensors, and a
single buffer makes "the model" one versioned, read-only snapshot. The layout (ordered names,
shapes, dtypes) is fixed per model and BN policy; its sha256 ``fingerprint`` is announced to the
swarm so peers never mix incompatible models.

BN policy: ``average`` gossips parameters plus floating buffers (BN running mean/var);
``local`` gossips parameters only and keeps each peer's BN statistics (FedBN, Li et al. 2021).
``num_batches_tracked`` (an integer counter) never travels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FlatEntry:
    """One tensor's place in the flat buffer."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # the tensor's own dtype (the buffer itself is float32)
    offset: int
    numel: int


@dataclass(frozen=True)
class FlatLayout:
    """Ordered (name, shape, dtype) of the tensors that travel, with their offsets in the buffer."""

    entries: tuple[FlatEntry, ...]
    bn_policy: str

    @classmethod
    def from_module(cls, module: nn.Module, bn_policy: str = "average") -> FlatLayout:
        """Parameters in registration order, then (policy ``average``) floating buffers."""
        if bn_policy not in ("average", "local"):
            raise ValueError(f"bn_policy must be 'average' or 'local', got {bn_policy!r}")
        entries: list[FlatEntry] = []
        offset = 0
        for name, tensor in _named_tensors(module, bn_policy):
            entries.append(FlatEntry(name, tuple(tensor.shape), str(tensor.dtype), offset, tensor.numel()))
            offset += tensor.numel()
        return cls(tuple(entries), bn_policy)

    @property
    def numel(self) -> int:
        """Total number of elements in the flat buffer."""
        return self.entries[-1].offset + self.entries[-1].numel if self.entries else 0

    @property
    def nbytes(self) -> int:
        """Size of the float32 flat buffer in bytes."""
        return 4 * self.numel

    @property
    def fingerprint(self) -> str:
        """sha256 hex of the layout: equal iff names, shapes, dtypes, order and BN policy are equal."""
        h = hashlib.sha256(f"bn_policy={self.bn_policy}\n".encode())
        for e in self.entries:
            h.update(f"{e.name}|{','.join(map(str, e.shape))}|{e.dtype}\n".encode())
        return h.hexdigest()

    def _tensors(self, module: nn.Module) -> list[torch.Tensor]:
        named = dict(_named_tensors(module, self.bn_policy))
        if len(named) != len(self.entries):
            raise ValueError(f"module has {len(named)} travelling tensors, layout has {len(self.entries)}")
        tensors = []
        for e in self.entries:
            t = named.get(e.name)
            if t is None or tuple(t.shape) != e.shape:
                raise ValueError(f"module does not match the layout at {e.name} (shape {e.shape})")
            tensors.append(t)
        return tensors

    @torch.no_grad()
    def flatten(self, module: nn.Module, out: torch.Tensor | None = None) -> torch.Tensor:
        """Copy the module's travelling tensors into one 1-D contiguous float32 tensor (one copy).

        ``out`` (float32, numel elements, on any device) is reused when given; else a new CPU tensor.
        """
        if out is None:
            out = torch.empty(self.numel, dtype=torch.float32)
        elif out.dtype != torch.float32 or out.numel() != self.numel or not out.is_contiguous():
            raise ValueError(f"out must be a contiguous float32 tensor of {self.numel} elements")
        for e, t in zip(self.entries, self._tensors(module)):
            out[e.offset : e.offset + e.numel].view(e.shape).copy_(t)
        return out

    @torch.no_grad()
    def load_(self, module: nn.Module, flat: torch.Tensor) -> None:
        """Copy ``flat`` (1-D, numel elements) back into the module's tensors in place."""
        if flat.dim() != 1 or flat.numel() != self.numel:
            raise ValueError(f"flat buffer has shape {tuple(flat.shape)}, layout needs ({self.numel},)")
        for e, t in zip(self.entries, self._tensors(module)):
            t.copy_(flat[e.offset : e.offset + e.numel].view(e.shape))


def _named_tensors(module: nn.Module, bn_policy: str) -> list[tuple[str, torch.Tensor]]:
    """Travelling tensors: the module's ``gossip_parameters()`` when it defines them (an SSL
    objective), else all parameters; then persistent floating buffers under policy ``average``."""
    chooser = getattr(module, "gossip_parameters", None)
    named = list(chooser()) if callable(chooser) else list(module.named_parameters())
    if bn_policy == "average":
        named += [
            (n, b)
            for n, b in module.named_buffers()
            if b.is_floating_point() and not n.endswith("num_batches_tracked") and _persistent(module, n)
        ]
    return named


def _persistent(module: nn.Module, name: str) -> bool:
    """False for buffers registered with ``persistent=False`` (scratch state, never model state)."""
    owner_path, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_path) if owner_path else module
    return leaf not in owner._non_persistent_buffers_set
