"""peer.allocator: glibc mallopt applied, or cleanly skipped."""

import ctypes.util

import pytest

from peer import allocator


def test_tune_malloc_applies_on_glibc_when_asked(monkeypatch):
    if ctypes.util.find_library("c") is None:
        pytest.skip("no libc found")
    monkeypatch.setenv(allocator.ENABLE_ENV, "1")
    assert allocator.tune_malloc() is True


def test_tune_malloc_is_off_by_default(monkeypatch):
    monkeypatch.delenv(allocator.ENABLE_ENV, raising=False)
    assert allocator.tune_malloc() is False


def test_tune_malloc_without_mallopt_does_nothing(monkeypatch):
    monkeypatch.setenv(allocator.ENABLE_ENV, "1")

    class NoMallopt:
        def __init__(self, name):
            pass

    monkeypatch.setattr(allocator.ctypes, "CDLL", NoMallopt)
    assert allocator.tune_malloc() is False
