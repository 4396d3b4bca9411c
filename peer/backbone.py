"""Backbones for the SSL objectives, built only through timm (``pretrained=False``: no downloads).

Two factories:

* :func:`create_backbone` — any timm model by name as a feature extractor (``num_classes=0``: the
  model returns pooled features ``[B, num_features]``). ResNet-family models get an optional
  small-image stem (see :data:`STEMS`). The names in :data:`VIT_BACKBONES` (sizes timm has no name
  for, e.g. the paper code's ViT-tiny for SimSiam-ViT) are built by :func:`create_vit` at the
  data's image size, and return the CLS token.
* :func:`create_vit` — a timm ``VisionTransformer`` sized for small images (e.g. patch 4 on 28–32 px),
  the encoder of MAE/MAR.

Small-image stems. Measured here (2 threads, batch 128, 28×28 grey, forward + backward of one view,
quiet machine): timm ``resnet10t`` stock 901 img/s, ``no_maxpool`` 187, ``cifar`` 118; ``resnet18``
stock 777, ``no_maxpool`` 227. A whole SimSiam step with resnet10t (two views, 1 thread, machine
loaded ~10): stock 48 img/s, ``no_maxpool`` 14.

* ``"stock"``: the ImageNet stem (stride-2 conv + stride-2 max-pool, total stride 32). A 28 px image
  ends as a 1×1 map, but training is 3.5–5× faster on a CPU — the SimSiam default of
  :class:`~peer.objectives.base.ObjectiveConfig`, where a run has minutes.
* ``"no_maxpool"``: keep the stride-2 first conv, drop the max-pool (total stride 16; 28 px → 2×2
  final map, 4× the positions of stock). What ``small_input=True`` picks for inputs ≤ 64 px; for
  runs with compute to spare (e.g. a GPU).
* ``"cifar"``: first conv stride 1 and no max-pool (the CIFAR ResNet stem of SimSiam/SimCLR, total
  stride 8); the slowest (docs/design.md §6: ~10× stock for resnet18 on CPU).
"""

from __future__ import annotations

import logging

import timm
import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from torch import nn

log = logging.getLogger(__name__)

STEMS = ("stock", "no_maxpool", "cifar")
DEFAULT_SMALL_STEM = "no_maxpool"  # the adaptation small_input=True applies (module docstring)
SMALL_INPUT_MAX_PX = 64  # inputs up to this size count as "small" for small_input=True
# Backbone names create_backbone builds with create_vit (sized at the data's image size)
VIT_BACKBONES: dict[str, dict[str, int]] = {
    # the paper code's ViT-tiny (docs/paper.md §1, mae_vit_tiny_p16_nodp with -ced 9): patch 14,
    # width 320, 16 heads, depth 9 — the encoder of Tab. 2's "Tiny-ViT", here as a SimSiam backbone
    "vit_paper_tiny": {"patch_size": 14, "embed_dim": 320, "depth": 9, "num_heads": 16},
}


def create_backbone(
    name: str, in_chans: int, img_size: int, small_input: bool | str = True
) -> tuple[nn.Module, int]:
    """Build timm model ``name`` as a feature extractor and return ``(model, feature_dim)``.

    ``small_input``: ``True`` applies :data:`DEFAULT_SMALL_STEM` when ``img_size`` ≤ 64 px (larger
    inputs keep the stock stem); ``False`` keeps the stock stem; a string picks one of :data:`STEMS`.
    Stems only apply to ResNet-family models (a ``conv1`` + ``maxpool`` pair); other models are
    returned as timm builds them; :data:`VIT_BACKBONES` names become a :func:`create_vit` ViT.
    """
    if name in VIT_BACKBONES:
        vit = create_vit(img_size, in_chans=in_chans, **VIT_BACKBONES[name])
        return vit, int(vit.num_features)
    model = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_chans)
    stem = _resolve_stem(small_input, img_size)
    if stem != "stock":
        _adapt_resnet_stem(model, stem)
    return model, int(model.num_features)


def _resolve_stem(small_input: bool | str, img_size: int) -> str:
    """Map the ``small_input`` argument to one of :data:`STEMS`."""
    if isinstance(small_input, str):
        if small_input not in STEMS:
            raise ValueError(f"unknown stem {small_input!r}; expected one of {STEMS}")
        return small_input
    if small_input and img_size <= SMALL_INPUT_MAX_PX:
        return DEFAULT_SMALL_STEM
    return "stock"


def _adapt_resnet_stem(model: nn.Module, stem: str) -> None:
    """Drop the max-pool (``no_maxpool``) and, for ``cifar``, make the first convolution stride 1."""
    if not (hasattr(model, "conv1") and hasattr(model, "maxpool")):
        log.info("stem %r ignored: %s is not a ResNet-family model", stem, type(model).__name__)
        return
    model.maxpool = nn.Identity()
    if stem == "cifar":
        first_conv = next(m for m in model.conv1.modules() if isinstance(m, nn.Conv2d))
        first_conv.stride = (1, 1)


def create_vit(
    img_size: int,
    patch_size: int,
    in_chans: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float = 4.0,
) -> nn.Module:
    """A timm ``VisionTransformer`` for small images, with a CLS token and no classifier head.

    The position embedding is the fixed 2-D sin-cos table used by MAE (He et al. 2022, §A.1:
    "We add sine-cosine position embeddings"), frozen (``requires_grad=False``); the CLS slot is 0.
    Returned model: ``model(x)`` gives CLS features; MAE uses ``patch_embed``, ``cls_token``,
    ``pos_embed``, ``blocks`` and ``norm`` directly to encode only the visible patches.
    """
    if img_size % patch_size:
        raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
    vit = timm.create_model(
        "vit_tiny_patch16_224",  # architecture family only; every size argument is overridden
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        patch_size=patch_size,
        in_chans=in_chans,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=mlp_ratio,
    )
    grid = list(vit.patch_embed.grid_size)
    set_sincos_pos_embed(vit.pos_embed, grid, num_prefix_tokens=vit.num_prefix_tokens)
    return vit


def set_sincos_pos_embed(pos_embed: nn.Parameter, grid: list[int], num_prefix_tokens: int) -> None:
    """Fill ``pos_embed`` ``[1, prefix + H*W, D]`` with a fixed 2-D sin-cos table and freeze it."""
    dim = pos_embed.shape[-1]
    table = build_sincos2d_pos_embed(grid, dim=dim)  # [H*W, D]
    with torch.no_grad():
        pos_embed.zero_()
        pos_embed[0, num_prefix_tokens:] = table.to(pos_embed.dtype)
    pos_embed.requires_grad_(False)
