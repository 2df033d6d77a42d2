"""Freed memory back to the OS (glibc, Linux): what a training step or a finished stage frees must
leave the process's RSS, not stay in its heap.

glibc serves allocations under its mmap threshold from the heap, and that threshold rises (up to
32 MiB) each time a larger mapped block is freed: a training step's activations (a few MiB each, freed
in another order than made) then fragment the heap, which RSS keeps counting. On `taia quickstart` that
held 3.4 GB of freed memory from the first training step to the end of the run and let the peak grow to
5.2 GB (benchmarks/README.md, "Memory of the main job"). A fixed threshold maps every block of at least
`MMAP_THRESHOLD` on its own, so freeing it unmaps it. Elsewhere (macOS, musl) both calls do nothing.
"""

from __future__ import annotations

import ctypes
import gc
import sys
from typing import Any

MMAP_THRESHOLD = 256 * 1024  # bytes: tensors of training and scoring are far above it
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def map_large_allocations() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD for the rest of the process; True when set."""
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def release() -> None:
    """Collect garbage cycles (a finished Trainer holds its model in some) and trim the heap."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
