"""Keep freed tensor memory in the process instead of returning it to the OS (glibc only).

glibc serves every allocation above a threshold (at most 32 MiB by default) with its own ``mmap``
and unmaps it on free. A training step on CPU allocates and frees activations of tens of MiB, so
each step maps fresh pages and the kernel zero-fills them on first touch, which can cost as much
time in page faults as the computation itself (``benchmarks/README.md``). Raising the mmap and
trim thresholds makes freed blocks reusable.

The cost: a process keeps its peak heap instead of shrinking after a large step. The ``ptmdd``
command and the study's worker processes apply the tuning once (importing ``ptmdd_helpers`` does
not); ``tune_malloc()`` applies it in any other process; ``PTMDD_MALLOC_TUNING=0`` leaves glibc's
defaults.
Elsewhere than Linux with glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1

_applied: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; return whether the tuning is active."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or os.environ.get("PTMDD_MALLOC_TUNING", "1") == "0":
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or no libc: nothing to tune
        return _applied
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _applied = all((
        mallopt(M_MMAP_THRESHOLD, _INT_MAX) == 1,
        mallopt(M_TRIM_THRESHOLD, _INT_MAX) == 1,
        mallopt(M_TOP_PAD, 256 * 2**20) == 1,
    ))
    return _applied
