"""The compiled one-pass mixing kernel against torch ops, its fallback, and RoundMixer on either path."""

from __future__ import annotations

import shutil

import pytest
import torch

from gossip import fused_mix
from gossip.round_mixer import RoundMixer

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A freshly built kernel in a private cache (the build itself is under test)."""
    monkeypatch.setenv("DSSL_KERNEL_CACHE", str(tmp_path))
    fused_mix.kernel.cache_clear()
    try:
        built = fused_mix.kernel()
        yield built
    finally:
        fused_mix.kernel.cache_clear()


@needs_compiler
@pytest.mark.parametrize("k", [1, 2, 3])
def test_kernel_matches_torch_ops(kernel, k):
    # prepare: several tiles and a ragged tail (not a multiple of the 16 lanes)
    torch.manual_seed(k)
    n = 5 * 1024 + 37
    own, theirs = torch.randn(n), [torch.randn(n) * (j + 1) for j in range(k)]
    out = torch.empty(n)
    weight = 0.6 / k
    # execute
    norms, dist = kernel(own, theirs, -k * weight, out)
    # assert
    diff = own - sum(theirs) / k
    torch.testing.assert_close(out, (1 - k * weight) * own + weight * sum(theirs), rtol=1e-5, atol=1e-5)
    assert norms == pytest.approx([float((t.double() ** 2).sum()) for t in theirs], rel=1e-5)
    assert dist == pytest.approx(float((diff.double() ** 2).sum()), rel=1e-5)


@needs_compiler
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e30])
def test_kernel_reports_non_finite_and_overflowing_blocks(kernel, bad):
    # prepare: one bad value (1e30 is finite but its square overflows float32, as in torch.dot)
    own, theirs = torch.randn(3000), torch.randn(3000)
    theirs[1234] = bad
    # execute
    norms, _ = kernel(own, [theirs], -0.5, torch.empty(3000))
    # assert
    assert norms[0] != norms[0] or norms[0] == float("inf")


@needs_compiler
def test_kernel_refuses_tensors_it_cannot_read(kernel):
    own = torch.randn(100)
    with pytest.raises(ValueError, match="float32"):
        kernel(own, [torch.randn(100).half()], -0.5, torch.empty(100))
    with pytest.raises(ValueError, match="contiguous"):
        kernel(own, [torch.randn(200)[::2]], -0.5, torch.empty(100))
    with pytest.raises(ValueError, match="at least one"):
        kernel(own, [], -0.5, torch.empty(100))


@needs_compiler
def test_round_mixer_gives_the_same_mix_with_and_without_the_kernel(kernel):
    # prepare: two equal-weight neighbours, one of which fails halfway (undo + re-mix on both paths)
    assert kernel is not None
    torch.manual_seed(9)
    n = 700_001
    own, xb, xc = torch.randn(n), torch.randn(n), torch.randn(n)
    results = []
    for native in (kernel, None):
        mixer = RoundMixer(own, 0.5, {"b": 0.25, "c": 0.25})
        mixer._native = native
        mixer.attach("b", xb)
        mixer.attach("c", xc)
        # execute
        mixer.progress("b", 4 * 400_000)
        mixer.progress("c", 4 * 300_000)
        mixer.drop("c")
        mixer.progress("b", 4 * n)
        results.append(mixer.finish())
    # assert
    (native_params, w_native, _, d_native), (torch_params, w_torch, _, d_torch) = results
    assert w_native == w_torch == pytest.approx(0.75)
    torch.testing.assert_close(native_params, torch_params, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(native_params, 0.75 * own + 0.25 * xb, rtol=1e-5, atol=1e-6)
    assert d_native == pytest.approx(d_torch, rel=1e-5)


@pytest.mark.parametrize("compiler", ["no-such-compiler-dssl", "false"])
def test_without_a_working_compiler_the_kernel_is_none_and_says_why(tmp_path, monkeypatch, caplog, compiler):
    # prepare
    monkeypatch.setenv("CC", compiler)
    monkeypatch.setenv("DSSL_KERNEL_CACHE", str(tmp_path))
    fused_mix.kernel.cache_clear()
    try:
        # execute
        built = fused_mix.kernel()
    finally:
        fused_mix.kernel.cache_clear()
    # assert
    assert built is None
    assert "fused mixing kernel unavailable" in caplog.text


def test_dssl_fused_mix_0_turns_the_kernel_off(monkeypatch):
    monkeypatch.setenv("DSSL_FUSED_MIX", "0")
    fused_mix.kernel.cache_clear()
    try:
        assert fused_mix.kernel() is None
    finally:
        fused_mix.kernel.cache_clear()
