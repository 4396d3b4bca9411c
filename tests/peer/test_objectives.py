"""SSL objectives: losses learn on a fixed batch, SimSiam symmetry, MAE masking, A-MMD, γ schedule,
MAR ⊇ MAE, registry. Tiny models (timm ``test_resnet``, a 1-block ViT of width 32) on 16 px images."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from peer import objectives
from peer.objectives.base import Objective, ObjectiveConfig
from peer.objectives.mae import MAE, patchify, random_masking
from peer.objectives.mar import MAR, a_mmd, gamma_schedule
from peer.objectives.simsiam import SimSiam, negative_cosine

TINY = dict(
    backbone="test_resnet",
    img_size=16,
    in_chans=1,
    proj_hidden_dim=32,
    proj_dim=32,
    pred_dim=16,
    patch_size=4,
    embed_dim=32,
    depth=1,
    num_heads=2,
    decoder_dim=32,
    decoder_depth=1,
    decoder_heads=2,
    embedding_batch=8,
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from a second thread, and on a loaded 2-core machine two OpenMP
    threads run 20-60x slower than one (measured); restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(name: str, **overrides) -> Objective:
    torch.manual_seed(0)
    return objectives.build(ObjectiveConfig(name=name, **{**TINY, **overrides}))


def batch(n: int = 16, chans: int = 1, side: int = 16, seed: int = 0) -> torch.Tensor:
    """Synthetic images with structure (smooth blobs), in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, chans, side // 4, side // 4, generator=gen)
    return torch.nn.functional.interpolate(low, size=(side, side), mode="bilinear", align_corners=False)


def optimizer_for(model: Objective) -> torch.optim.Optimizer:
    if model.optimizer_name == "sgd":
        return torch.optim.SGD(model.param_groups(), lr=model.lr, momentum=0.9)
    return torch.optim.AdamW(model.param_groups(), lr=model.lr, betas=model.cfg.betas)


@pytest.mark.parametrize("name", ["simsiam", "mae", "mar"])
def test_loss_is_finite_and_decreases_on_a_fixed_batch(name):
    model = tiny(name)
    if name == "mar":
        model.set_global_embedding(torch.randn(8, 32) + 2.0, round=1)
    opt = optimizer_for(model)
    images = batch()
    losses = []
    for step in range(25):
        torch.manual_seed(step % 5)  # the same few views / masks recur: a fixed objective to fit
        out = model.training_step(images)
        assert torch.isfinite(out.loss) and out.loss.ndim == 0
        assert all(math.isfinite(v) for v in out.logs.values())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


def test_simsiam_on_backbone_vit_trains_exactly_maes_encoder():
    # prepare
    simsiam, mae = tiny("simsiam", backbone="vit"), tiny("mae")
    images = batch()
    # execute
    shapes = {k: v.shape for k, v in simsiam.backbone.state_dict().items()}
    mae_shapes = {k: v.shape for k, v in mae.encoder.state_dict().items()}
    out = simsiam.training_step(images)
    out.loss.backward()
    # assert: same parameter names and shapes, CLS features of MAE's width, gradients reach it
    assert shapes == mae_shapes
    assert simsiam.encode(images).shape == (16, TINY["embed_dim"])
    assert simsiam.backbone.patch_embed.proj.weight.grad is not None


def test_simsiam_loss_is_symmetric_in_its_views():
    model = tiny("simsiam")
    images = batch()
    v1, v2 = model.views(images, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(model.loss_from_views(v1, v2), model.loss_from_views(v2, v1), atol=1e-5)


def test_simsiam_stops_gradient_through_the_target_branch():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None
    assert negative_cosine(z.detach(), z.detach()).item() == pytest.approx(-1.0)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.9])
def test_mae_masks_the_configured_ratio(ratio):
    model = tiny("mae", mask_ratio=ratio)
    n = model.num_patches
    tokens, mask, ids_restore = model.forward_encoder(batch(6), ratio)
    visible = int(n * (1 - ratio))
    assert tokens.shape == (6, 1 + visible, 32)  # CLS + visible patches only
    assert (mask.sum(dim=1) == n - visible).all()
    assert sorted(ids_restore[0].tolist()) == list(range(n))


def test_masking_differs_per_sample():
    torch.manual_seed(0)
    ids_keep, _, mask = random_masking(8, 49, 0.75, torch.device("cpu"))
    assert ids_keep.shape == (8, 12)
    assert len({tuple(row.tolist()) for row in mask}) > 1


def test_mae_loss_counts_only_masked_patches():
    model = tiny("mae", norm_pix_loss=False)
    images = batch(2)
    target = patchify(images, 4)
    mask = torch.zeros(2, target.shape[1])
    mask[:, :3] = 1
    pred = target.clone()
    pred[:, 3:] += 5.0  # errors on visible patches must not count
    assert model.reconstruction_loss(images, pred, mask).item() == pytest.approx(0.0, abs=1e-7)
    pred[:, :3] += 1.0
    assert model.reconstruction_loss(images, pred, mask).item() == pytest.approx(1.0, rel=1e-5)


def test_patchify_matches_the_patch_embedding_order():
    images = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(1, 2, 16, 16)
    patches = patchify(images, 4)
    assert patches.shape == (1, 16, 32)
    # patch 1 is the second patch of the first row: rows 0-3, columns 4-7
    assert torch.equal(patches[0, 1].reshape(4, 4, 2).permute(2, 0, 1), images[0, :, 0:4, 4:8])


@pytest.mark.parametrize("name", ["simsiam", "mae", "mar"])
def test_encode_gives_one_feature_vector_per_image(name):
    model = tiny(name).eval()
    with torch.no_grad():
        features = model.encode(batch(5))
    expected = 32 if name != "simsiam" else model.feature_dim
    assert features.shape == (5, expected) and torch.isfinite(features).all()


def test_mae_encode_is_deterministic_unmasked_and_leaves_the_rng_alone():
    model = tiny("mae").eval()
    images = batch(3)
    state = torch.get_rng_state()
    with torch.no_grad():
        features = model.encode(images)
        assert torch.equal(torch.get_rng_state(), state)
        tokens, _, _ = model.forward_encoder(images, mask_ratio=0.0)  # all patches, shuffled order
    assert torch.allclose(features, tokens[:, 1:].mean(dim=1), atol=1e-5)


def _kernel_loop(a, b, scale):
    return math.exp(-math.dist(a, b) / scale)


def direct_a_mmd(z: torch.Tensor, zb: torch.Tensor) -> float:
    """Eq. 6 with explicit loops over pairs (the reference for :func:`a_mmd`)."""
    zl, gl = z.tolist(), zb.tolist()
    union = zl + gl
    pairs = [(i, j) for i in range(len(union)) for j in range(len(union)) if i != j]
    sigma = sum(math.dist(union[i], union[j]) for i, j in pairs) / len(pairs)
    scale = 2 * sigma**2
    b, bb = len(zl), len(gl)
    local = sum(_kernel_loop(zl[i], zl[j], scale) for i, j in itertools.permutations(range(b), 2))
    glob = sum(_kernel_loop(gl[i], gl[j], scale) for i, j in itertools.permutations(range(bb), 2))
    cross = sum(_kernel_loop(x, y, scale) for x in zl for y in gl)
    return local / (b * (b - 1)) + glob / (bb * (bb - 1)) - 2 * cross / (b * bb)


@pytest.mark.parametrize("b, bb", [(5, 5), (4, 6)])
def test_a_mmd_matches_a_direct_pairwise_computation(b, bb):
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(b, 3, generator=gen, dtype=torch.float64) * 0.4
    zb = torch.randn(bb, 3, generator=gen, dtype=torch.float64) * 0.4 + 0.3
    assert a_mmd(z, zb).item() == pytest.approx(direct_a_mmd(z, zb), rel=1e-6, abs=1e-9)


def test_a_mmd_is_near_zero_for_identical_sets_and_positive_for_shifted_ones():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, 8, generator=gen) * 0.2
    same = a_mmd(z, z.clone()).item()
    # Eq. 6 drops the diagonal in the within-set sums but not in the cross sum, so identical sets
    # give exactly -2(1 - m)/B, m = mean off-diagonal kernel value: ~0, bounded by 2/B.
    assert -2 / 64 < same <= 0
    fresh = a_mmd(z, torch.randn(64, 8, generator=gen) * 0.2).item()  # same distribution
    shifted = a_mmd(z, z + 0.5).item()
    assert abs(fresh) < 2 / 64
    assert shifted > 10 * abs(same)


def test_a_mmd_gradient_flows_to_local_only_and_is_finite():
    z = (torch.randn(6, 4) * 0.2).requires_grad_()
    zb = (torch.randn(6, 4) * 0.2 + 1.0).requires_grad_()
    a_mmd(z, zb).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    assert zb.grad is None
    twin = z.detach().clone().requires_grad_()
    a_mmd(twin, twin.detach()).backward()  # zero distances on the cross diagonal: no NaN
    assert torch.isfinite(twin.grad).all()


def test_gamma_schedule_endpoints_and_monotone():
    values = [gamma_schedule(t, 0.1, 0.001, 25) for t in range(0, 31)]
    assert values[0] == pytest.approx(0.1)
    assert values[25] == pytest.approx(0.001)
    assert values[30] == pytest.approx(0.001)
    assert all(a >= b for a, b in zip(values, values[1:]))
    assert values[12] > values[13]
    assert gamma_schedule(25 // 2, 0.1, 0.001, 25) < 0.1


def test_mar_without_global_embedding_equals_mae():
    mae, mar = tiny("mae"), tiny("mar")
    assert isinstance(mar, MAR) and isinstance(mae, MAE)
    mar.load_state_dict(mae.state_dict())
    images = batch()
    torch.manual_seed(7)
    mae_loss = mae.training_step(images).loss
    torch.manual_seed(7)
    out = mar.training_step(images)
    assert out.loss.item() == pytest.approx(mae_loss.item(), rel=1e-6)
    assert out.logs["mmd"] == 0.0


def test_mar_adds_gamma_times_a_mmd_once_it_has_a_global_embedding():
    mar = tiny("mar")
    mar.set_global_embedding(torch.randn(8, 32) + 1.0, round=3)
    out = mar.training_step(batch())
    assert out.logs["gamma"] == pytest.approx(gamma_schedule(3, 0.1, 0.001, 25))
    assert out.logs["mmd"] > 0
    assert out.logs["loss"] == pytest.approx(out.logs["mae"] + out.logs["gamma"] * out.logs["mmd"], rel=1e-5)


def test_mar_payload_has_a_fixed_shape_and_holds_recent_embeddings():
    mar = tiny("mar")
    assert mar.round_payload() is None
    mar.training_step(batch(3))
    payload = mar.round_payload()
    assert payload.shape == (8, 32) and payload.dtype == torch.float32
    assert mar.round_payload() is not payload  # a copy: the trainer may ship it while training goes on
    mar.training_step(batch(16, seed=1))
    assert not torch.equal(mar.round_payload(), payload)
    with pytest.raises(ValueError):
        mar.set_global_embedding(torch.zeros(4, 31), round=1)
    mar.set_global_embedding(None, round=2)
    assert mar.z_global is None


def test_mar_target_is_the_neighbourhood_mean_or_the_union_of_its_payloads():
    # prepare: three payloads of unrelated samples, and their mean
    payloads = tuple(torch.randn(8, 32) for _ in range(3))
    mean = torch.stack(payloads).mean(dim=0)
    # execute
    paper, union = tiny("mar"), tiny("mar", mar_target="union")
    # assert: the paper's mean (and MAE's), or every row; averaging unrelated rows shrinks the spread
    assert paper.neighbourhood_target(mean, payloads) is mean
    assert tiny("mae").neighbourhood_target(mean, payloads) is mean
    stacked = union.neighbourhood_target(mean, payloads)
    assert stacked.shape == (24, 32) and torch.equal(stacked[8:16], payloads[1])
    assert mean.std(dim=0).mean() < 0.7 * stacked.std(dim=0).mean()
    assert union.neighbourhood_target(None, ()) is None


def test_mar_state_has_no_extra_buffers():
    """The trainer's flat gossip buffer is model parameters + buffers: MAR adds none to MAE's."""
    mae, mar = tiny("mae"), tiny("mar")
    mar.set_global_embedding(torch.zeros(8, 32), round=1)
    assert list(mae.state_dict()) == list(mar.state_dict())


def test_registry_get_names_build_and_unknown_name():
    assert objectives.names() == ["mae", "mar", "simsiam"]
    assert objectives.get("SimSiam") is SimSiam
    assert isinstance(tiny("mae"), MAE)
    with pytest.raises(ValueError, match="unknown objective 'byol'.*mae, mar, simsiam"):
        objectives.get("byol")


def test_optimizer_defaults_follow_the_papers_and_config_overrides():
    assert tiny("simsiam").optimizer_name == "sgd"
    mae = tiny("mae")
    assert (mae.optimizer_name, mae.weight_decay) == ("adamw", 0.05)
    custom = tiny("mae", optimizer="sgd", lr=0.2, weight_decay=0.0)
    assert (custom.optimizer_name, custom.lr, custom.weight_decay) == ("sgd", 0.2, 0.0)
    groups = mae.param_groups()
    assert all(p.ndim >= 2 for p in groups[0]["params"]) and groups[1]["weight_decay"] == 0.0
    frozen = {id(mae.encoder.pos_embed), id(mae.decoder_pos_embed)}
    assert not frozen & {id(p) for g in groups for p in g["params"]}


def test_gossip_parameters_default_to_all_parameters():
    model = tiny("simsiam")
    assert [n for n, _ in model.gossip_parameters()] == [n for n, _ in model.named_parameters()]


def test_a_mmd_computes_in_float32_for_half_precision_embeddings():
    z = (torch.randn(8, 4) * 0.3).to(torch.bfloat16)
    value = a_mmd(z, torch.randn(8, 4) * 0.3 + 1.0)
    assert value.dtype == torch.float32 and torch.isfinite(value)
