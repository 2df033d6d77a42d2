"""NaN/Inf checks of weights: a tensor in memory, or tensors' bytes inside a safetensors file on disk.

The byte-copy path of `taia apply --finetuned` never reads a tensor into Python: the kernel copies the
bytes. To refuse what fp16 overflow in training leaves behind without giving that up, the source file is
memory-mapped a window at a time (its pages are in the page cache the copy reads anyway) and each float
tensor's bytes are viewed in place and reduced with `aminmax`: NaN propagates to both ends, ±Inf
survives as an end, and no full-size mask is built (isfinite(t).all() is ~25x slower). Exercised by
tests/test_refusals.py.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from pathlib import Path

import torch

# (name, dtype, absolute start, absolute end) of a tensor inside a file
Span = tuple[str, torch.dtype, int, int]


def is_finite(t: torch.Tensor) -> bool:
    """No NaN and no ±Inf (non-float and empty tensors are finite)."""
    if not t.is_floating_point() or t.numel() == 0:
        return True
    try:
        lo, hi = torch.aminmax(t)
    except (RuntimeError, NotImplementedError):  # float8 has no aminmax kernel on CPU
        return all(bool(torch.isfinite(c.float()).all()) for c in t.reshape(-1).split(1 << 24))
    return bool(torch.isfinite(lo) and torch.isfinite(hi))


def first_non_finite(file: Path, spans: Sequence[Span]) -> str | None:
    """The name of the first span of `file` that holds NaN or ±Inf, else None."""
    with file.open("rb") as f:
        for name, dtype, start, end in spans:
            if not dtype.is_floating_point:
                continue
            # Mapped pages count as the process's memory while mapped: a window at a time keeps the
            # peak at one window, not at the whole shard.
            for lo in range(start, end, _WINDOW):
                if not _mapped_finite(f.fileno(), dtype, lo, min(lo + _WINDOW, end)):
                    return name
    return None


_WINDOW = 64 << 20  # bytes mapped at once; a multiple of every itemsize, so windows split no element


def _mapped_finite(fd: int, dtype: torch.dtype, start: int, end: int) -> bool:
    offset = start - start % mmap.ALLOCATIONGRANULARITY
    # A private (copy-on-write) map is writable as far as torch can tell, so frombuffer does not warn;
    # nothing is ever written to it.
    with mmap.mmap(fd, end - offset, access=mmap.ACCESS_COPY, offset=offset) as mapped:
        raw = torch.frombuffer(mapped, dtype=torch.uint8, count=end - start, offset=start - offset)
        try:
            if start % dtype.itemsize:  # a misaligned tensor (the format does not promise alignment)
                return is_finite(raw.clone().view(dtype))
            return is_finite(raw.view(dtype))
        finally:
            del raw  # the map cannot close while a tensor still exports its buffer
