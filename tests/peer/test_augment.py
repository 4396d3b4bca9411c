"""Batched augmentations: shape/range, per-sample randomness, seeding, feature skew per peer."""

from __future__ import annotations

import pytest
import torch

from peer.augment import FeatureSkew, MAEView, SimSiamViews, gaussian_blur, random_resized_crop


@pytest.fixture(autouse=True)
def one_thread():
    """One OpenMP thread: on a loaded 2-core machine two run far slower (see test_objectives)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def images(n: int = 8, chans: int = 1, side: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, chans, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("chans", [1, 3])
def test_simsiam_views_keep_shape_and_range_and_differ(chans):
    x = images(chans=chans)
    v1, v2 = SimSiamViews(blur_p=0.5)(x, generator=torch.Generator().manual_seed(0))
    for v in (v1, v2):
        assert v.shape == x.shape and v.dtype == x.dtype
        assert v.min() >= 0 and v.max() <= 1
    assert not torch.allclose(v1, v2)


def test_views_are_random_per_sample():
    x = images(1).expand(6, -1, -1, -1).contiguous()  # six copies of one image
    v = SimSiamViews().view(x, generator=torch.Generator().manual_seed(0))
    assert len({tuple(s.flatten()[:50].tolist()) for s in v}) == 6


def test_seeded_generator_reproduces_views():
    x = images()
    a = MAEView()(x, generator=torch.Generator().manual_seed(5))
    b = MAEView()(x, generator=torch.Generator().manual_seed(5))
    c = MAEView()(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_full_crop_without_flip_is_the_identity():
    x = images()
    out = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    assert torch.allclose(out, x, atol=1e-5)
    flipped = random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)


def test_blur_with_zero_sigma_is_the_identity_and_smooths_otherwise():
    x = images(2)
    out = gaussian_blur(x, torch.tensor([0.0, 1.0]), kernel_size=5)
    assert torch.allclose(out[0], x[0], atol=1e-6)
    assert out[1].std() < x[1].std()
    assert out[1].mean() == pytest.approx(x[1].mean().item(), abs=0.02)


def test_feature_skew_is_deterministic_per_peer_and_differs_across_peers():
    assert FeatureSkew.for_peer(3, seed=1) == FeatureSkew.for_peer(3, seed=1)
    skews = [FeatureSkew.for_peer(i, seed=1) for i in range(8)]
    assert len(set(skews)) == 8
    assert FeatureSkew.for_peer(3, seed=2) != FeatureSkew.for_peer(3, seed=1)
    assert any(s.blur_sigma > 0 for s in skews) and any(s.blur_sigma == 0 for s in skews)
    assert any(s.flip for s in skews) and not all(s.flip for s in skews)
    x = images()
    out = skews[0](x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert torch.equal(out, FeatureSkew.for_peer(0, seed=1)(x))
    assert not torch.allclose(out, skews[1](x))


def test_feature_skew_rejects_negative_peer_index():
    with pytest.raises(ValueError):
        FeatureSkew.for_peer(-1, seed=0)
