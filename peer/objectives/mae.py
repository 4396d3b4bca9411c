"""MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022) for small images.

From the paper (§3): "we sample random patches without replacement, following a uniform
distribution [...] Our encoder is a ViT but applied only on visible, unmasked patches [...] The MAE
decoder [...] is a series of Transformer blocks [fed with] (i) encoded visible patches, and (ii)
mask tokens [with] positional embeddings added to all tokens [...] Our loss function computes the
mean squared error (MSE) between the reconstructed and original images in the pixel space. We
compute the loss only on masked patches." With ``norm_pix_loss`` the target of every patch is
normalised by its own mean and variance (§A.1), which the paper reports improves representations.

The encoder is a timm ``VisionTransformer`` from :func:`peer.backbone.create_vit` (patch 4 on
28–32 px); masking is per sample by ``argsort`` of uniform noise, so every sample keeps exactly
``int(N * (1 - mask_ratio))`` patches.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from peer.augment import MAEView
from peer.backbone import create_vit, set_sincos_pos_embed
from peer.objectives.base import Objective, ObjectiveConfig, StepOutput


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W]`` → ``[B, N, patch*patch*C]``, patches in row-major order (as timm's PatchEmbed)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def random_masking(
    batch: int, num_patches: int, mask_ratio: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample uniform random masking by argsort of noise.

    Returns ``ids_keep [B, K]`` (visible patch indices), ``ids_restore [B, N]`` (inverse
    permutation) and ``mask [B, N]`` (1 = masked), with ``K = int(N * (1 - mask_ratio))``.
    """
    len_keep = int(num_patches * (1 - mask_ratio))
    noise = torch.rand(batch, num_patches, device=device)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, ids_restore, mask


class MAE(Objective):
    """Masked autoencoder: ViT encoder on the visible patches + CLS, light Transformer decoder.

    ``encode`` = mean of the encoder's patch tokens on the *unmasked* image (the CLS token is not
    trained by any loss term in MAE; mean pooling is also what MAE's fine-tuning uses). Gossip
    averages all parameters, decoder included, as the paper does.
    """

    default_optimizer = "adamw"
    default_lr = 1e-3  # not tuned yet; MAE: 1.5e-4 * batch/256 + 40-epoch warm-up, paper code 7.5e-5
    default_weight_decay = 0.05  # MAE pre-training
    encoder_attr = "encoder"

    def __init__(self, cfg: ObjectiveConfig) -> None:
        super().__init__(cfg)
        self.encoder = create_vit(
            cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim, cfg.depth, cfg.num_heads
        )
        self.num_patches = self.encoder.patch_embed.num_patches
        self.decoder_embed = nn.Linear(cfg.embed_dim, cfg.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, cfg.decoder_dim))
        set_sincos_pos_embed(self.decoder_pos_embed, list(self.encoder.patch_embed.grid_size), 1)
        self.decoder_blocks = nn.Sequential(
            *[Block(cfg.decoder_dim, cfg.decoder_heads, mlp_ratio=4.0) for _ in range(cfg.decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(cfg.decoder_dim)
        self.decoder_pred = nn.Linear(cfg.decoder_dim, cfg.patch_size**2 * cfg.in_chans)
        nn.init.normal_(self.mask_token, std=0.02)
        self.view = MAEView()

    def forward_encoder(
        self, images: torch.Tensor, mask_ratio: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches. Returns tokens ``[B, 1 + K, D]`` (CLS first, after the final
        norm), ``mask [B, N]`` (1 = masked) and ``ids_restore [B, N]``."""
        enc = self.encoder
        x = enc.patch_embed(images) + enc.pos_embed[:, enc.num_prefix_tokens :]
        ids_keep, ids_restore, mask = random_masking(x.shape[0], x.shape[1], mask_ratio, x.device)
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = enc.blocks(torch.cat([cls, x], dim=1))
        return enc.norm(x), mask, ids_restore

    def forward_decoder(self, tokens: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict the pixels of every patch ``[B, N, p*p*C]`` from the encoded visible tokens."""
        x = self.decoder_embed(tokens)
        b, n = ids_restore.shape
        mask_tokens = self.mask_token.expand(b, n + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], mask_tokens], dim=1)
        patches = torch.gather(patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        x = self.decoder_norm(self.decoder_blocks(x))
        return self.decoder_pred(x[:, 1:])

    def reconstruction_loss(
        self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean over masked patches of the per-patch pixel MSE (targets normalised per patch)."""
        target = patchify(images, self.cfg.patch_size)
        if self.cfg.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = ((pred - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def masked_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MAE loss of one view, and the encoder tokens of its visible patches (for MAR)."""
        tokens, mask, ids_restore = self.forward_encoder(images, self.cfg.mask_ratio)
        pred = self.forward_decoder(tokens, ids_restore)
        return self.reconstruction_loss(images, pred, mask), tokens

    def training_step(self, images: torch.Tensor) -> StepOutput:
        loss, _ = self.masked_step(self.view(images))
        return StepOutput(loss=loss, logs={"loss": float(loss.detach())})

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Mean of the encoder's patch tokens over all patches (no masking, no random numbers drawn)."""
        enc = self.encoder
        x = enc.patch_embed(images) + enc.pos_embed[:, enc.num_prefix_tokens :]
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        tokens = enc.norm(enc.blocks(torch.cat([cls, x], dim=1)))
        return tokens[:, 1:].mean(dim=1)
