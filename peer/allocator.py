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
matters more than training speed (the churn soak sets it). Only glibc has ``mallopt``; elsewhere
(musl, macOS) this does nothing.
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
ENABLE_ENV = "DSSL_MALLOC_TUNING"  # "1": tune (off by default: it costs training speed)


def tune_malloc() -> bool:
    """With ``DSSL_MALLOC_TUNING=1``: fix glibc's mmap / trim thresholds, cap its arenas; True if applied.

    Call it early in a peer's process (before the gossip threads start) so their arenas obey the cap."""
    if os.environ.get(ENABLE_ENV, "0") != "1":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        log.debug("no glibc mallopt here (%s): malloc left as it is", name)
        return False
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
