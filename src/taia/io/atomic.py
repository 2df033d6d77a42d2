"""Atomic outputs: a whole directory (written into a temp dir beside the target, renamed at the end) or one
file (`write_file`: a temp file beside it, renamed over it).

A failed `taia apply` leaves no partial output behind; a file-system error (read-only mount, full disk)
is one line naming the output — also where a writer reports it as its own exception (`os_error`:
safetensors' SafetensorError, torch.save's RuntimeError). The finished output follows the umask, as
`save_pretrained`'s would: `mkdtemp` makes its dir 0700, and the rename would carry that over.

A temp dir is named `.OUT.tmp-PID-…` (`.OUT.old-PID-…` for the output moved aside) and flocked by its
writer while it exists; a writer killed outright (SIGKILL, power loss) leaves it behind, and the next
`atomic_dir` on the same `out` removes those whose writer is gone (pid not alive and lock free), never a
live writer's. One without a pid (taia before issue 19) is left alone: nothing says whose it is.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taia.errors import TaiaError
from taia.io.lock import try_flock


def check_output(out: Path, overwrite: bool) -> None:
    """Fail early (before any work) when the output exists and may not be replaced."""
    if out.exists() and not overwrite:
        raise TaiaError(f"output {out} already exists (pass --overwrite to replace it)")


@contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temp dir in `out`'s parent; on success it replaces `out`, on error it is removed."""
    out = Path(out)
    check_output(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(out)
        tmp = _temp_dir(out, "tmp")
        held = os.open(tmp, os.O_RDONLY)  # flocked while it lives: see remove_stale
    except OSError as e:
        raise write_error(out, e) from None
    try:
        try_flock(held)
        yield tmp
        follow_umask(tmp)
        _replace(tmp, out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        failed = os_error(e)
        if failed is not None:
            raise write_error(out, failed) from None
        raise
    finally:
        os.close(held)


def remove_stale(out: Path) -> list[Path]:
    """Remove the temp dirs beside `out` that a dead writer left (see the module docstring); an `.old-`
    one only once `out` exists (until then it may hold the only copy of the previous output)."""
    removed = []
    pattern = re.compile(rf"\.{re.escape(out.name)}\.(tmp|old)-(\d+)-")
    for path in out.parent.iterdir():
        found = pattern.match(path.name)
        if found is None or not path.is_dir() or path.is_symlink() or _alive(int(found[2])):
            continue
        if found[1] == "old" and not out.exists():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            if try_flock(fd):  # the pid may be another machine's or namespace's: its lock says it lives
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        finally:
            os.close(fd)
    return removed


def _temp_dir(out: Path, kind: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.{kind}-{os.getpid()}-", dir=out.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def write_file(path: Path, data: str | bytes) -> Path:
    """Write `path` through a temp file in its dir, so that a reader (or a crash) never sees half a file;
    text is UTF-8. The file follows the umask (`mkstemp` would leave it 0600). A file-system error is one
    line naming `path` (not the temp file, which is removed)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as e:
        raise write_error(path, e, named=False) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        failed = os_error(e)
        if failed is not None:
            raise write_error(path, failed, named=False) from None
        raise
    return path


# safetensors' writer wraps the OSError in its own exception: "… I/O error: No space left … (os error 28)"
_SAFETENSORS_OS_ERROR = re.compile(r"\(os error (\d+)\)")
# torch.save's zip writer (C++) reports a failed write as a RuntimeError with no errno
_TORCH_WRITE_FAILED = ("PytorchStreamWriter failed writing", "inline_container.cc")


def os_error(e: BaseException) -> OSError | None:
    """The file-system error behind `e`, or None when `e` is something else: `e` itself when an OSError,
    or the one a writer reported as its own exception (safetensors with its errno, torch.save without)."""
    if isinstance(e, OSError):
        return e
    text = str(e)
    found = _SAFETENSORS_OS_ERROR.search(text)
    if type(e).__name__ == "SafetensorError" and found:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    if isinstance(e, RuntimeError) and any(s in text for s in _TORCH_WRITE_FAILED):
        return OSError(None, f"torch.save failed ({text.splitlines()[0][:200]})")
    return None


@contextmanager
def write_errors(path: Path) -> Iterator[None]:
    """Report a file-system error in the block (however its writer raised it) as one line naming `path`."""
    try:
        yield
    except BaseException as e:
        failed = os_error(e)
        if failed is not None:
            raise write_error(path, failed) from None
        raise


def write_error(out: Path, e: OSError, named: bool = True) -> TaiaError:
    """`cannot write O: No space left on device (O/.tmp-…/model.safetensors)` — one line; `named=False`
    leaves out the file the error names (write_file's: a temp file that is gone)."""
    where = f" ({e.filename})" if e.filename and named else ""
    return TaiaError(f"cannot write {out}: {e.strerror or e}{where}")


def follow_umask(root: Path) -> None:
    """Dirs 0777 and files 0666 minus the umask, for `root` and everything in it."""
    mask = umask()
    root.chmod(0o777 & ~mask)
    for p in root.rglob("*"):
        if not p.is_symlink():
            p.chmod((0o777 if p.is_dir() else 0o666) & ~mask)


def umask() -> int:
    """The process umask, read without changing it where Linux says it (/proc), else set and restored."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace(tmp: Path, out: Path) -> None:
    # Move the old output aside first so that the swap itself is two renames, never a half-deleted dir.
    old = None
    if out.exists():
        old = _temp_dir(out, "old")
        out.rename(old / out.name)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
