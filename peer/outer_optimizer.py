"""DiLoCo's outer optimizer over gossip rounds: the mix defines a pseudo-gradient, Nesterov SGD steps on it.

DiLoCo (Douillard et al., 2023, arXiv:2311.08105) and OpenDiLoCo (Jaghouar et al., 2024,
arXiv:2407.07852) run H local (inner) steps, average the workers, and treat the change as a gradient:
with θ_start the parameters at the start of the interval and θ_avg the average after it,

    Δ = θ_start − θ_avg                      (the pseudo-gradient)
    b ← μ·b + Δ                              (momentum buffer, torch.optim.SGD's convention)
    θ_new = θ_start − lr·(Δ + μ·b)           (Nesterov; plain momentum uses b instead of Δ + μ·b)

both papers with lr = 0.7, μ = 0.9, Nesterov. Here the "average" is this peer's gossip mix (its
neighbourhood's weighted average, :mod:`gossip.hook`), H is ``train.period``, and θ_new becomes the
next interval's θ_start. It is computed as ``θ_avg + (Δ − lr·update)`` (equal up to rounding), so
that lr = 1, μ = 0 returns the mix bit for bit: plain gossip is the special case.

Choices (docs in README "Outer optimizer"):

* **Only parameters take the outer step.** The flat buffer may end with floating buffers
  (BN running mean/var under ``train.bn_policy: average``, :mod:`peer.flat`); they are statistics,
  not descent directions, and extrapolating a running variance can make it negative, so they take
  the mix as is (exactly what they do without the outer loop).
* **A round that did not mix** (no neighbour answered, timeout) still takes an outer step, with the
  local parameters as the "average": DiLoCo with one worker. Every H inner steps are then followed
  by exactly one outer step, so the momentum's time scale does not depend on the network's luck.
* The state (θ_start and the momentum buffer) travels in the checkpoint, so a restarted peer keeps
  its outer state; a peer whose model is overwritten from outside (a late joiner's state transfer)
  re-takes θ_start from the new model (:meth:`OuterOptimizer.restart`) and keeps its momentum
  (zero for a fresh joiner).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from peer.config import OuterConfig
from peer.flat import FlatLayout

log = logging.getLogger(__name__)


def parameter_span(layout: FlatLayout, module: nn.Module) -> int:
    """How many leading elements of the flat buffer are parameters (the floating buffers follow)."""
    buffers = {name for name, _ in module.named_buffers()}
    span = layout.numel
    for entry in layout.entries:
        if entry.name in buffers:
            span = min(span, entry.offset)
        elif entry.offset >= span:
            raise ValueError(f"flat layout: parameter {entry.name} after a buffer; expected params first")
    return span


class OuterOptimizer:
    """Nesterov-momentum SGD on the pseudo-gradient θ_start − θ_mixed of the flat buffer's parameter span.

    With ``outer.enabled: false`` every method is a no-op and :meth:`step` hands the mix back
    untouched, so the trainer calls it unconditionally and behaves exactly as plain gossip."""

    def __init__(self, cfg: OuterConfig, layout: FlatLayout, module: nn.Module) -> None:
        self.cfg, self.layout, self.enabled = cfg, layout, cfg.enabled
        self.span = parameter_span(layout, module)
        self.start: torch.Tensor | None = None  # θ_start of the parameter span (CPU float32)
        self.momentum: torch.Tensor | None = None  # the buffer b (None until the first step)

    def begin(self, module: nn.Module) -> None:
        """Take θ_start from the model unless it is already known (checkpoint, previous round)."""
        if self.enabled and self.start is None:
            self.start = self.layout.flatten(module)[: self.span].clone()

    def restart(self) -> None:
        """The model was overwritten from outside: θ_start is re-taken at the next :meth:`begin`."""
        self.start = None

    @torch.no_grad()
    def step(self, landed: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """θ_new from what landed (the mix, or the local params of a round that did not mix).

        Returns the full flat buffer to load (a new tensor; buffers past the span are ``landed``'s)
        and the round record's fields: ``outer_delta_norm`` = ‖Δ‖ and ``outer_update_norm`` =
        ‖θ_new − θ_start‖ over the parameter span. Off: ``(landed, {})``."""
        if not self.enabled:
            return landed, {}
        if self.start is None:
            raise RuntimeError("outer step before begin(): θ_start is unknown")
        new = landed.detach().to(device="cpu", dtype=torch.float32, copy=True)
        mixed = new[: self.span]
        delta = self.start - mixed
        mu, lr = self.cfg.momentum, self.cfg.lr
        if self.momentum is None:
            self.momentum = torch.zeros_like(delta)
        self.momentum.mul_(mu).add_(delta)
        update = delta + mu * self.momentum if self.cfg.nesterov else self.momentum
        mixed.add_(delta - lr * update)  # = θ_start − lr·update, exact mix when lr = 1, μ = 0
        fields = {
            "outer_delta_norm": float(delta.norm()),
            "outer_update_norm": float((mixed - self.start).norm()),
        }
        self.start = mixed.clone()
        return new, fields

    def checkpoint_entries(self) -> dict:
        """The checkpoint's ``extra`` entries: ``outer`` = θ_start and the momentum buffer ({} off)."""
        if not self.enabled:
            return {}
        return {"outer": {"span": self.span, "start": self.start, "momentum": self.momentum}}

    def restore(self, extra: dict) -> None:
        """Take the outer state back from a checkpoint's ``extra`` (none there: momentum from zero)."""
        if not self.enabled:
            return
        state = extra.get("outer")
        if state is None:
            log.warning("checkpoint has no outer-optimizer state: momentum starts at zero")
            self.start, self.momentum = None, None
            return
        if state["span"] != self.span:
            raise ValueError(f"outer state covers {state['span']} elements, this model {self.span}")
        self.start, self.momentum = (
            None if state[k] is None else state[k].detach().to("cpu", torch.float32).clone()
            for k in ("start", "momentum")
        )
