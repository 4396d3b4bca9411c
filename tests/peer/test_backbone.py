"""timm backbones: feature dims, small-image stems, the small-image ViT."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from peer.backbone import create_backbone, create_vit


@pytest.fixture(autouse=True)
def one_thread():
    """One OpenMP thread: on a loaded 2-core machine two run far slower (see test_objectives)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("stem, side_out", [("stock", 1), ("no_maxpool", 2), ("cifar", 4)])
def test_resnet_stems_change_the_final_map_but_not_the_feature_dim(stem, side_out):
    model, dim = create_backbone("test_resnet", in_chans=1, img_size=28, small_input=stem)
    x = torch.rand(2, 1, 28, 28)
    assert model(x).shape == (2, dim)
    assert model.forward_features(x).shape[-1] == side_out


def test_small_input_true_adapts_small_images_only():
    small, _ = create_backbone("test_resnet", in_chans=3, img_size=32, small_input=True)
    large, _ = create_backbone("test_resnet", in_chans=3, img_size=224, small_input=True)
    stock, _ = create_backbone("test_resnet", in_chans=3, img_size=32, small_input=False)
    assert isinstance(small.maxpool, nn.Identity)
    assert not isinstance(large.maxpool, nn.Identity) and not isinstance(stock.maxpool, nn.Identity)


def test_feature_dim_matches_timm_and_unknown_stem_fails():
    model, dim = create_backbone("resnet10t", in_chans=1, img_size=28)
    assert dim == 512 and model(torch.rand(2, 1, 28, 28)).shape == (2, 512)
    with pytest.raises(ValueError, match="unknown stem"):
        create_backbone("test_resnet", in_chans=1, img_size=28, small_input="huge")


def test_non_resnet_models_pass_through():
    model, dim = create_backbone("test_vit", in_chans=3, img_size=160, small_input="no_maxpool")
    assert dim == model.num_features


def test_small_vit_has_the_requested_grid_and_fixed_sincos_positions():
    vit = create_vit(img_size=28, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2)
    assert tuple(vit.patch_embed.grid_size) == (7, 7)
    assert vit.pos_embed.shape == (1, 50, 32) and not vit.pos_embed.requires_grad
    assert torch.count_nonzero(vit.pos_embed[0, 0]) == 0 and vit.pos_embed[0, 1:].abs().max() <= 1
    assert vit(torch.rand(2, 1, 28, 28)).shape == (2, 32)
    with pytest.raises(ValueError):
        create_vit(img_size=30, patch_size=4, in_chans=1, embed_dim=32, depth=1, num_heads=2)
