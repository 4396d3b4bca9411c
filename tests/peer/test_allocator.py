"""peer.allocator: glibc mallopt applied, or cleanly skipped."""

import ctypes.util

import pytest

from peer import allocator


def test_tune_malloc_applies_on_glibc():
    if ctypes.util.find_library("c") is None:
        pytest.skip("no libc found")
    assert allocator.tune_malloc() is True


def test_tune_malloc_can_be_turned_off(monkeypatch):
    monkeypatch.setenv(allocator.DISABLE_ENV, "0")
    assert allocator.tune_malloc() is False


def test_tune_malloc_without_mallopt_does_nothing(monkeypatch):
    class NoMallopt:
        def __init__(self, name):
            pass

    monkeypatch.setattr(allocator.ctypes, "CDLL", NoMallopt)
    assert allocator.tune_malloc() is False
