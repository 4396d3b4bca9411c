"""FlatLayout: round trip, BN policy, fingerprint stability."""

from __future__ import annotations

import torch
from torch import nn

from peer.flat import FlatLayout


def _small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))


def test_round_trip_restores_every_travelling_tensor():
    # prepare
    src, dst = _small(), _small()
    src[1].running_mean.normal_()
    for p in dst.parameters():
        nn.init.zeros_(p)
    layout = FlatLayout.from_module(src, "average")
    # execute
    flat = layout.flatten(src)
    layout.load_(dst, flat)
    # assert
    assert flat.dtype == torch.float32 and flat.dim() == 1 and flat.is_contiguous()
    assert flat.numel() == layout.numel == sum(p.numel() for p in src.parameters()) + 12
    for (n, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        if not n.endswith("num_batches_tracked"):
            assert torch.equal(a, b), n


def test_local_policy_keeps_bn_statistics():
    # prepare
    src, dst = _small(), _small()
    src[1].running_mean.fill_(5.0)
    layout = FlatLayout.from_module(src, "local")
    # execute
    layout.load_(dst, layout.flatten(src))
    # assert: parameters travel, running stats stay local, counter never in the layout
    assert all("running" not in e.name for e in layout.entries)
    assert torch.equal(dst[1].running_mean, torch.zeros(6))
    assert all("num_batches_tracked" not in e.name for e in FlatLayout.from_module(src, "average").entries)


def test_flatten_reuses_out_buffer():
    # prepare
    model = _small()
    layout = FlatLayout.from_module(model)
    out = torch.empty(layout.numel)
    # execute
    flat = layout.flatten(model, out=out)
    # assert
    assert flat.data_ptr() == out.data_ptr()
    assert torch.equal(flat, layout.flatten(model))


def test_fingerprint_is_stable_and_sensitive():
    # prepare / execute
    a = FlatLayout.from_module(_small(), "average").fingerprint
    b = FlatLayout.from_module(_small(), "average").fingerprint
    local = FlatLayout.from_module(_small(), "local").fingerprint
    wider = nn.Sequential(nn.Linear(4, 7), nn.BatchNorm1d(7), nn.Linear(7, 2))
    other = FlatLayout.from_module(wider).fingerprint
    # assert
    assert a == b and len(a) == 64
    assert a != local and a != other


def test_load_rejects_wrong_size():
    # prepare
    model = _small()
    layout = FlatLayout.from_module(model)
    # execute / assert
    try:
        layout.load_(model, torch.zeros(layout.numel + 1))
    except ValueError as exc:
        assert str(layout.numel) in str(exc)
    else:
        raise AssertionError("a wrong-sized buffer was accepted")
