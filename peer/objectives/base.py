"""The contract every SSL objective meets, and the one config all of them read.

An :class:`Objective` is an ``nn.Module`` that owns its whole model (backbone + heads / decoder),
builds its own views or masks from a raw batch, and returns a differentiable loss. The trainer only
calls :meth:`Objective.training_step` and :meth:`Objective.encode`, averages
:meth:`Objective.gossip_parameters` with its neighbours, and (for MAR) ships
:meth:`Objective.round_payload` next to the parameters and feeds the neighbourhood mean back through
:meth:`Objective.set_global_embedding`.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn


@dataclass
class ObjectiveConfig:
    """Hyperparameters of all objectives; defaults are small-image (28–32 px) CPU settings."""

    name: str = "simsiam"  # "simsiam" | "mae" | "mar"
    # SimSiam's encoder: a timm model name (tests use "test_resnet"), or "vit": the ViT MAE builds
    # from patch_size / embed_dim / depth / num_heads below (same-backbone comparisons)
    backbone: str = "resnet10t"
    small_input: bool | str = "stock"  # CNN stem: "stock" (fastest on CPU) | "no_maxpool" | "cifar" | True
    img_size: int = 28  # input side in pixels (square images)
    in_chans: int = 1  # 1 = grey (Fashion-MNIST), 3 = RGB
    # SimSiam (Chen & He 2021)
    proj_hidden_dim: int = 512  # projector hidden width (paper: 2048 on ImageNet)
    proj_dim: int = 512  # projector output = predictor input/output width
    pred_dim: int = 128  # predictor bottleneck width (paper: 512 = proj_dim / 4)
    # MAE / MAR (He et al. 2022; ViT sized for small images)
    patch_size: int = 4  # ViT patch side: 28 px -> 7x7 = 49 patches
    embed_dim: int = 192  # encoder width
    depth: int = 6  # encoder blocks
    num_heads: int = 3  # encoder attention heads
    decoder_dim: int = 128  # decoder width (paper's code: 128)
    decoder_depth: int = 1  # decoder blocks (paper's code: 1)
    decoder_heads: int = 4  # decoder attention heads
    mask_ratio: float = 0.75  # fraction of patches hidden from the encoder
    norm_pix_loss: bool = True  # regress per-patch normalised pixels (MAE §A.1)
    # MAR (docs/paper.md §3, Eq. 5-7)
    gamma_max: float = 0.1  # A-MMD weight at round 0 (paper code default)
    gamma_min: float = 0.001  # A-MMD weight from round gamma_rounds on
    gamma_rounds: int = 25  # Omega: rounds of the cosine decay (paper, DecL: Omega = T = 25)
    embedding_batch: int = 64  # rows B of the published embedding payload [B, embed_dim]
    # z_global from the neighbourhood's payloads: "mean" = their element-wise mean (the paper's
    # Alg. 2), "union" = all their rows (the neighbourhood's embedding distribution itself)
    mar_target: Literal["mean", "union"] = "mean"
    # Optimiser hints for the trainer
    optimizer: str = ""  # "" = the objective's default ("sgd" for SimSiam, "adamw" for MAE/MAR)
    lr: float = 0.0  # 0 = the objective's default learning rate
    weight_decay: float = -1.0  # < 0 = the objective's default weight decay
    momentum: float = 0.9  # SGD momentum
    betas: tuple[float, float] = field(default=(0.9, 0.95))  # AdamW betas (MAE: 0.9, 0.95)


@dataclass
class StepOutput:
    """What one training step returns."""

    loss: torch.Tensor  # scalar, differentiable
    logs: dict[str, float]  # scalars for the metrics file, e.g. {"loss": .., "mmd": .., "gamma": ..}


class Objective(nn.Module, abc.ABC):
    """Base class: one SSL method, its model, and its optimiser defaults.

    Subclasses set the class attributes ``default_optimizer``, ``default_lr`` and
    ``default_weight_decay``, which the properties below resolve against the config, and
    ``encoder_attr``, the submodule :meth:`encode` runs.
    """

    default_optimizer: str = "sgd"
    default_lr: float = 0.05
    default_weight_decay: float = 5e-4
    encoder_attr: str = ""  # the submodule that encode() runs (see encoder_parameter_names)

    def __init__(self, cfg: ObjectiveConfig) -> None:
        super().__init__()
        self.cfg = cfg

    @property
    def optimizer_name(self) -> str:
        """``"sgd"`` or ``"adamw"``."""
        return self.cfg.optimizer or self.default_optimizer

    @property
    def lr(self) -> float:
        """Learning rate for batch 128 (the trainer may scale it)."""
        return self.cfg.lr if self.cfg.lr > 0 else self.default_lr

    @property
    def weight_decay(self) -> float:
        """Weight decay applied to the ``decay`` parameter group."""
        return self.cfg.weight_decay if self.cfg.weight_decay >= 0 else self.default_weight_decay

    @abc.abstractmethod
    def training_step(self, images: torch.Tensor) -> StepOutput:
        """Loss on a raw batch ``[B, C, H, W]`` in [0, 1]; the objective makes its own views/masks."""

    @abc.abstractmethod
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen features ``[B, D]`` for kNN / linear probe (caller sets eval mode and no_grad)."""

    def encoder_parameter_names(self) -> list[str]:
        """State-dict names of the parameters :meth:`encode` computes with (the evaluated encoder,
        without heads / decoder): the submodule named by the class attribute ``encoder_attr``."""
        if not self.encoder_attr:
            raise NotImplementedError(f"{type(self).__name__} does not name its encoder (encoder_attr)")
        module = getattr(self, self.encoder_attr)
        return [f"{self.encoder_attr}.{name}" for name, _ in module.named_parameters()]

    def gossip_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Named parameters averaged with neighbours. Default: all of them — the paper averages the
        whole model (backbone and heads / decoder, docs/paper.md §1), and so do we."""
        return list(self.named_parameters())

    def param_groups(self) -> list[dict]:
        """Optimiser groups: weight decay on weights of rank ≥ 2 only, none on biases, norms and
        tokens (the MAE/timm convention); frozen parameters are left out."""
        decay, no_decay = [], []
        for _, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": self.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    def round_payload(self) -> torch.Tensor | None:
        """Extra tensor to publish with this round's parameters (MAR's embeddings); None here."""
        return None

    def neighbourhood_target(
        self, mean: torch.Tensor | None, payloads: tuple[torch.Tensor, ...]
    ) -> torch.Tensor | None:
        """What to align to, from the gossip round's embedding ``mean`` and the ``payloads`` it
        averages: the mean here (MAR may take the union)."""
        return mean

    def set_global_embedding(self, z: torch.Tensor | None, round: int) -> None:
        """Receive the neighbourhood's embedding for the next round (MAR); a no-op here."""
