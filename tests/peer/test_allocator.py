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


def test_trim_mode_leaves_thresholds_and_enables_release(monkeypatch):
    if ctypes.util.find_library("c") is None:
        pytest.skip("no libc found")
    monkeypatch.setattr(allocator, "_trim", None)
    monkeypatch.setenv(allocator.ENABLE_ENV, allocator.TRIM_MODE)
    assert allocator.tune_malloc() is True
    assert allocator._trim is not None


def test_release_free_memory_is_a_no_op_when_off(monkeypatch):
    monkeypatch.setattr(allocator, "_trim", None)
    allocator.release_free_memory()  # must not raise without glibc / without the mode


def test_release_free_memory_returns_freed_heap_pages_to_the_kernel(monkeypatch):
    """Real glibc: 96 KiB blocks (below the mmap threshold) come from the heap; freed under a live
    block that pins the heap's top, they stay in RSS until malloc_trim hands them back."""
    psutil = pytest.importorskip("psutil")
    if ctypes.util.find_library("c") is None:
        pytest.skip("no libc found")
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.argtypes, libc.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    libc.free.argtypes, libc.free.restype = [ctypes.c_void_p], None
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    libc.memset.restype = ctypes.c_void_p
    monkeypatch.setattr(allocator, "_trim", None)
    monkeypatch.setenv(allocator.ENABLE_ENV, allocator.TRIM_MODE)
    allocator.tune_malloc()
    block, count = 96 * 1024, 2000  # ~190 MiB
    process = psutil.Process()
    blocks = [libc.malloc(block) for _ in range(count)]
    pin = libc.malloc(block)
    try:
        for b in blocks:
            libc.memset(b, 1, block)  # touch: the pages become resident
        for b in blocks:
            libc.free(b)
        before = process.memory_info().rss
        allocator.release_free_memory()
        after = process.memory_info().rss
    finally:
        libc.free(pin)
    assert before - after > 0.5 * block * count
