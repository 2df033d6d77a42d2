"""Atomic output directories: write into a temp dir beside the target, rename at the end.

A failed `taia apply` leaves no partial output behind. Exercised by tests/test_errors.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taia.errors import TaiaError


def check_output(out: Path, overwrite: bool) -> None:
    """Fail early (before any work) when the output exists and may not be replaced."""
    if out.exists() and not overwrite:
        raise TaiaError(f"output {out} already exists (pass --overwrite to replace it)")


@contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir in `out`'s parent; on success it replaces `out`, on error it is removed."""
    out = Path(out)
    check_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace(tmp: Path, out: Path) -> None:
    # Move the old output aside first so that the swap itself is two renames, never a half-deleted dir.
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / out.name)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
