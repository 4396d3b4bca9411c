"""SimSiam (Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021).

Architecture, from the paper (§4 and Appendix): "The projection MLP (in f) has BN applied to each
fully-connected (fc) layer, including its output fc. Its output fc has no ReLU. [...] This MLP has
3 layers. The prediction MLP (h) has BN applied to its hidden fc layers. Its output fc does not
have BN or ReLU. This MLP has 2 layers." Loss: L = D(p1, stopgrad(z2))/2 + D(p2, stopgrad(z1))/2
with D the negative cosine similarity. Widths are scaled down for small images (see
:class:`~peer.objectives.base.ObjectiveConfig`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from peer.augment import SimSiamViews
from peer.backbone import create_backbone, create_vit
from peer.objectives.base import Objective, ObjectiveConfig, StepOutput


def projection_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """3-layer projector: BN after every fc, ReLU after the two hidden ones (none at the output)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim, bias=False),
        nn.BatchNorm1d(out_dim, affine=False),
    )


def prediction_mlp(dim: int, bottleneck_dim: int) -> nn.Sequential:
    """2-layer bottleneck predictor: fc-BN-ReLU then a plain fc back to ``dim``."""
    return nn.Sequential(
        nn.Linear(dim, bottleneck_dim, bias=False),
        nn.BatchNorm1d(bottleneck_dim),
        nn.ReLU(inplace=True),
        nn.Linear(bottleneck_dim, dim),
    )


def negative_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """D(p, z) = -cos(p, stopgrad(z)), averaged over the batch (SimSiam Eq. 1 with Eq. 3's stop-grad)."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


SAME_VIT = "vit"  # objective.backbone naming the ViT that MAE would build from the same config


def simsiam_backbone(cfg: ObjectiveConfig) -> tuple[nn.Module, int]:
    """The encoder SimSiam trains: ``cfg.backbone`` through timm, or with ``backbone: vit`` exactly
    the ViT encoder MAE builds from the same config (``patch_size``, ``embed_dim``, ``depth``,
    ``num_heads``; CLS features) — so CL and MIM can be compared on one backbone, as the paper's
    Table 1 does."""
    if cfg.backbone == SAME_VIT:
        vit = create_vit(cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim, cfg.depth, cfg.num_heads)
        return vit, int(vit.num_features)
    return create_backbone(cfg.backbone, cfg.in_chans, cfg.img_size, small_input=cfg.small_input)


class SimSiam(Objective):
    """SimSiam on a timm CNN backbone (or MAE's ViT: :func:`simsiam_backbone`); SGD by default (the
    paper's optimiser).

    ``encode`` returns the backbone's pooled features (the paper evaluates the backbone, not the
    projector). Gossip averages all parameters: backbone, projector and predictor.
    """

    default_optimizer = "sgd"
    default_lr = 0.05  # SimSiam's base lr (the paper scales it by batch / 256)
    default_weight_decay = 5e-4  # SimSiam's CIFAR-10 setting (ImageNet: 1e-4)
    encoder_attr = "backbone"

    def __init__(self, cfg: ObjectiveConfig) -> None:
        super().__init__(cfg)
        self.backbone, self.feature_dim = simsiam_backbone(cfg)
        self.projector = projection_mlp(self.feature_dim, cfg.proj_hidden_dim, cfg.proj_dim)
        self.predictor = prediction_mlp(cfg.proj_dim, cfg.pred_dim)
        self.views = SimSiamViews()

    def loss_from_views(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """Symmetric SimSiam loss of two views of the same images (both views in one forward pass,
        so BatchNorm sees the concatenated batch exactly as for either ordering)."""
        z = self.projector(self.backbone(torch.cat([view1, view2])))
        p = self.predictor(z)
        z1, z2 = z.chunk(2)
        p1, p2 = p.chunk(2)
        return negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2

    def training_step(self, images: torch.Tensor) -> StepOutput:
        view1, view2 = self.views(images)
        loss = self.loss_from_views(view1, view2)
        return StepOutput(loss=loss, logs={"loss": float(loss.detach())})

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)
