"""Fixed glibc malloc thresholds for a long-running peer, so its RSS stays flat.

A peer allocates and frees the same few large buffers every round (received snapshots, the mixed
parameters, checkpoint bytes) from several threads (the trainer, the gossip event loop, gRPC's
pollers). glibc's default *dynamic* mmap threshold rises to the size of the largest freed mmapped
block, after which those buffers come from the heap arenas instead, where the freed space is
fragmented and rarely returned: RSS then creeps up for hours although nothing leaks (the same
peers with fixed thresholds stay flat).

Fixing the mmap and trim thresholds (which also turns the dynamic adjustment off) sends every
buffer of 128 KiB or more back to the kernel on free, and two arenas bound the per-thread heaps.
Measured in swarms whose peers were split into arms (same run, same load; last 6 minutes of 8-11,
docs/design.md §4): default malloc +85 to +346 MB/h; arena cap alone +37 and +117 MB/h; these
thresholds (set through the environment, or through ``mallopt`` as here) -28 to +35 MB/h, with about
55 MB less RSS per peer.

The price is speed: with a 128 KiB mmap threshold every large activation of a training step is
a fresh mmap, zero-filled page by page. Measured (``benchmarks/train_bench.py``'s step, one
process, 1 thread, batch 128): MAE 1161 -> 633 images/s, SimSiam 578 -> 332; ``make demo`` took
9 min 3 s against 5 min 22 s without. So it is **off by default**:
``DSSL_MALLOC_TUNING=1`` in a peer's environment turns it on, for long runs where flat memory
matters more than training speed.

``DSSL_MALLOC_TUNING=trim`` keeps glibc's fast defaults and instead calls ``malloc_trim(0)`` once a
gossip round (:func:`release_free_memory`, from the trainer): glibc then hands the free pages of
every arena back to the kernel (``madvise``), so the fragmented space the round's buffers leave
behind stops counting in RSS, while a training step's activations still reuse heap memory. Its
cost and effect are measured by ``benchmarks/malloc_bench.py`` (docs/design.md §4). Only glibc has
``mallopt`` / ``malloc_trim``; elsewhere (musl, macOS) both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

THRESHOLD_BYTES = 128 * 1024  # glibc's default starting mmap threshold, here fixed
ARENA_MAX = 2
ENABLE_ENV = "DSSL_MALLOC_TUNING"  # "1": fixed thresholds; "trim": trim once a round; else off
TRIM_MODE = "trim"

_trim = None  # glibc's malloc_trim once tune_malloc() enabled the trim mode


def tune_malloc() -> bool:
    """With ``DSSL_MALLOC_TUNING=1``: fix glibc's mmap / trim thresholds, cap its arenas; True if applied.

    With ``DSSL_MALLOC_TUNING=trim``: leave the thresholds, enable :func:`release_free_memory`.
    Call it early in a peer's process (before the gossip threads start) so their arenas obey the cap."""
    mode = os.environ.get(ENABLE_ENV, "0")
    if mode not in ("1", TRIM_MODE):
        return False
    libc = _glibc()
    if libc is None:
        return False
    if mode == TRIM_MODE:
        return _enable_trim(libc)
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = (
        (M_MMAP_THRESHOLD, THRESHOLD_BYTES),
        (M_TRIM_THRESHOLD, THRESHOLD_BYTES),
        (M_ARENA_MAX, ARENA_MAX),
    )
    applied = all(mallopt(param, value) == 1 for param, value in settings)
    if not applied:
        log.warning("mallopt refused a setting: the peer's RSS may creep up over long runs")
    return applied


def release_free_memory() -> None:
    """Give the allocator's free pages back to the kernel (``malloc_trim(0)``) when the trim mode is
    on; otherwise nothing. Called once a gossip round, after the round's buffers were freed."""
    if _trim is not None:
        _trim(0)


def _glibc():
    """The C library when it is glibc (has ``mallopt`` and ``malloc_trim``), else None."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - probe: only glibc has both
    except (OSError, AttributeError, TypeError):
        log.debug("no glibc malloc here (%s): malloc left as it is", name)
        return None
    return libc


def _enable_trim(libc) -> bool:
    global _trim
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    _trim = libc.malloc_trim
    return True
