"""Output-dir locks: one run writes an output dir at a time.

A verb's top-level function runs `@holding`; inside it, `taia.io.stage.prepare` takes `OUT/.taia.lock`
with `flock` (the holder's pid written in it) and the lock is released, and its file removed, when the
verb returns or raises. The kernel drops a flock when its process dies, so a SIGKILLed run never blocks
the next one: the file it leaves is free to take. A second run on a held dir is refused in one line
naming the holder's pid. `stage.prepare` called outside `@holding` (a library user's own code) takes no
lock, so its output holds only what it wrote.
"""

from __future__ import annotations

import fcntl
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from taia.errors import TaiaError

LOCK = ".taia.lock"
_HELD: dict[Path, int] = {}  # resolved out → the fd of its lock file, held by this process
_DEPTH = [0]  # how many `@holding` calls are running in this process

P = ParamSpec("P")
R = TypeVar("R")


def try_flock(fd: int) -> bool:
    """Take an exclusive flock on `fd` without waiting; False when another open file holds one."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holding(fn: Callable[P, R]) -> Callable[P, R]:
    """Run `fn` with output locks enabled; the locks it took are released when it returns or raises."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        before = set(_HELD)
        _DEPTH[0] += 1
        try:
            return fn(*args, **kwargs)
        finally:
            _DEPTH[0] -= 1
            for key in [k for k in _HELD if k not in before]:
                release(key)

    return run


def acquire(out: Path) -> None:
    """Lock `out` (an existing dir) for this process, or refuse naming the holder; a no-op outside
    `@holding` and when this process holds it already (a verb run inside another one)."""
    key = out.resolve()
    if not _DEPTH[0] or key in _HELD:
        return
    path = key / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not try_flock(fd):
            pid = _pid(fd)
            os.close(fd)
            raise busy(out, pid)
        if _same_file(fd, path):  # not a file a releasing holder unlinked between our open and flock
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _HELD[key] = fd


def check_free(out: Path) -> None:
    """Refuse (reading only) when another process holds `out`'s lock."""
    path = out / LOCK
    if out.resolve() in _HELD or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # gone since: free
    try:
        if not try_flock(fd):
            raise busy(out, _pid(fd))
    finally:
        os.close(fd)  # drops the flock just taken, if any


def release(key: Path) -> None:
    fd = _HELD.pop(key)
    (key / LOCK).unlink(missing_ok=True)  # while still holding it: see `acquire`'s same-file check
    os.close(fd)


def busy(out: Path, pid: int | None) -> TaiaError:
    who = f"pid {pid}" if pid else "another process"
    return TaiaError(f"{out} is being written by another taia run ({who}); wait for it or use another out")


def _pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
