"""Checkpoint directories (single or sharded safetensors, or legacy pickle) read lazily, written by streaming.

safetensors has no streaming writer (`save_file` needs every tensor of a shard in memory, then a second
serialised copy), so shards are written here: the 8-byte header length, the JSON header, then each
tensor's bytes — copied straight from the source file's byte range (`os.copy_file_range`, no Python
buffer, bit-exact) or written from a computed tensor. Reading goes through `safetensors.safe_open`.
Exercised by `taia apply --base B --finetuned F --out O` and tests/test_apply_checkpoint.py.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import safe_open

from taia.errors import TaiaError
from taia.io.finite import Span, first_non_finite
from taia.io.validate import check_layout, index_shards, parse_header

SAFE_INDEX = "model.safetensors.index.json"
SAFE_SINGLE = "model.safetensors"
PICKLE_INDEX = "pytorch_model.bin.index.json"
PICKLE_SINGLE = "pytorch_model.bin"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"})


@dataclass(frozen=True)
class TensorRef:
    """One tensor inside a checkpoint: which file, its dtype/shape, and its absolute byte range."""

    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def read_header(path: Path) -> tuple[dict[str, TensorRef], dict[str, str]]:
    """Parse a safetensors header and check it by the format's rules (taia.io.validate) before any use;
    refuse a missing, truncated or corrupt file with one clear line."""
    if not path.is_file():
        raise TaiaError(f"missing weights file {path}")
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise TaiaError(f"truncated safetensors file {path}: {size} bytes, no header")
        (n,) = struct.unpack("<Q", raw)
        if n > min(_MAX_HEADER, size - 8):
            raise TaiaError(f"truncated or corrupt safetensors file {path}: header of {n} bytes")
        entries, metadata = parse_header(path, f.read(n))
    check_layout(path, entries, 8 + n, size)
    refs = {name: TensorRef(path, dtype, shape, 8 + n + s, 8 + n + e) for name, dtype, shape, s, e in entries}
    return refs, metadata


@dataclass
class Checkpoint:
    """A directory of weights: every tensor name → where it is, plus the shard layout."""

    root: Path
    refs: dict[str, TensorRef]
    shards: dict[str, list[str]]  # file name → tensor names, in file order
    pickled: dict[str, torch.Tensor] | None = None  # legacy .bin weights, loaded with weights_only

    def get(self, name: str) -> torch.Tensor:
        if self.pickled is not None:
            return self.pickled[name]
        ref = self.refs[name]
        with safe_open(str(ref.file), framework="pt") as f:
            return f.get_tensor(name)


def open_checkpoint(root: Path, allow_pickle: bool = False) -> Checkpoint:
    """Open a checkpoint dir lazily (headers only); pickle weights need `allow_pickle`."""
    if (root / SAFE_INDEX).is_file():
        files = _index_files(root / SAFE_INDEX)
    elif (root / SAFE_SINGLE).is_file():
        files = [SAFE_SINGLE]
    elif (root / PICKLE_INDEX).is_file() or (root / PICKLE_SINGLE).is_file():
        return _open_pickle(root, allow_pickle)
    else:
        raise TaiaError(f"no model weights in {root} (expected {SAFE_SINGLE} or {SAFE_INDEX})")
    refs: dict[str, TensorRef] = {}
    shards: dict[str, list[str]] = {}
    for name in files:
        file_refs, _ = read_header(root / name)
        shards[name] = sorted(file_refs, key=lambda k: file_refs[k].start)
        refs.update(file_refs)
    return Checkpoint(root, refs, shards)


def _index_files(index: Path) -> list[str]:
    """The shard files of a sharded checkpoint, each checked to lie inside the model dir."""
    try:
        return index_shards(index, json.loads(index.read_text()))
    except (ValueError, KeyError, RecursionError) as e:
        raise TaiaError(f"corrupt index {index}: {e}") from None


def _open_pickle(root: Path, allow_pickle: bool) -> Checkpoint:
    if not allow_pickle:
        raise TaiaError(
            f"{root} has only pickle (.bin) weights, which can run code when loaded; "
            "convert them to safetensors or pass --allow-pickle (loads with weights_only=True)"
        )
    files = _index_files(root / PICKLE_INDEX) if (root / PICKLE_INDEX).is_file() else [PICKLE_SINGLE]
    tensors: dict[str, torch.Tensor] = {}
    shards: dict[str, list[str]] = {}
    for name in files:
        part = load_pickle(root / name)
        shards[name.replace(".bin", ".safetensors").replace("pytorch_model", "model")] = list(part)
        tensors.update(part)
    refs = {k: _pickle_ref(root, t) for k, t in tensors.items()}
    return Checkpoint(root, refs, shards, pickled=tensors)


def load_pickle(path: Path) -> dict[str, torch.Tensor]:
    """Load legacy pickle weights without running arbitrary code (weights_only=True)."""
    if not path.is_file():
        raise TaiaError(f"missing weights file {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — torch raises many types for bad pickles
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise TaiaError(f"cannot load {path} safely (weights_only=True): {first}") from None
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in loaded.items()
    ):
        raise TaiaError(f"corrupt pickle weights {path}: not a mapping of tensor names to tensors")
    return loaded


def _pickle_ref(root: Path, t: torch.Tensor) -> TensorRef:
    size = t.numel() * t.element_size()
    return TensorRef(root, DTYPE_NAMES.get(t.dtype, str(t.dtype)), tuple(t.shape), 0, size)


# A writer item is either a byte range to copy from a source file, or a computed tensor.
Item = tuple[str, TensorRef | torch.Tensor]


def write_shard(
    path: Path, items: Iterable[Item], align_with: int | None = None, check_finite: bool = False
) -> int:
    """Stream one safetensors shard to `path`; returns the number of data bytes written.

    `align_with`: a source file's data start. The header is padded so that our data starts at the same
    offset modulo 4096: the kernel's copy is ~2.5x slower when source and target are misaligned.
    `check_finite`: scan every float tensor copied from a file for NaN/Inf (in a thread, beside the
    kernel copy of the same bytes); computed tensors are their maker's to check.
    """
    items = list(items)
    blob, size = _header(items, align_with)
    try:
        with path.open("wb") as out, ThreadPoolExecutor(1) if check_finite else nullcontext() as pool:
            out.write(blob)
            _copy_and_scan(out, list(_runs(items)), pool)
    except OSError as e:  # the kernel copy's ENOSPC names no file: name the one being written
        raise OSError(e.errno, e.strerror, e.filename or str(path)) from None
    return size


def _header(items: list[Item], align_with: int | None) -> tuple[bytes, int]:
    """The shard's length-prefixed JSON header, and the size of the data after it."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, src in items:
        dtype, shape, size = _describe(src)
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    pad = -len(blob) % 8  # the format pads the header to 8-byte alignment
    if align_with is not None and align_with % 8 == 0:
        pad = (align_with - 8 - len(blob)) % 4096
    blob += b" " * pad
    return struct.pack("<Q", len(blob)) + blob, offset


def _copy_and_scan(out: BinaryIO, runs: list[_Run | torch.Tensor], pool: ThreadPoolExecutor | None) -> None:
    # Every scan is queued first: the scan thread then streams through the shard's source bytes beside
    # the kernel copies instead of meeting them at each run.
    files = [r for r in runs if isinstance(r, _Run)]
    scans = [pool.submit(first_non_finite, r.file, r.spans) for r in files] if pool is not None else []
    try:
        for run in runs:
            _write_run(out, run)
    except BaseException:
        for scan in scans:
            scan.cancel()  # a failed write need not wait for the scans of what it never wrote
        raise
    bad = next(((r.file, name) for r, s in zip(files, scans, strict=False) if (name := s.result())), None)
    if bad is not None:
        raise TaiaError(
            f"{bad[0]} holds NaN/Inf in {bad[1]}; refusing to write it (fix the checkpoint, or pass "
            "--skip-finite-check to write it anyway)"
        )


def _describe(src: TensorRef | torch.Tensor) -> tuple[str, tuple[int, ...], int]:
    if isinstance(src, TensorRef):
        return src.dtype, src.shape, src.end - src.start
    return DTYPE_NAMES[src.dtype], tuple(src.shape), src.numel() * src.element_size()


@dataclass
class _Run:
    """Adjacent byte ranges of one source file: one kernel copy, and the tensors it carries."""

    file: Path
    start: int
    end: int
    spans: list[Span]


def _span(name: str, ref: TensorRef) -> Span:
    return name, DTYPES.get(ref.dtype, torch.uint8), ref.start, ref.end


def _runs(items: list[Item]) -> Iterator[_Run | torch.Tensor]:
    """Merge byte ranges adjacent in one source file: one kernel copy per run, not one per tensor."""
    run: _Run | None = None
    for name, src in items:
        if isinstance(src, TensorRef) and run is not None and src.file == run.file and src.start == run.end:
            run.end = src.end
            run.spans.append(_span(name, src))
            continue
        if run is not None:
            yield run
        run = _Run(src.file, src.start, src.end, [_span(name, src)]) if isinstance(src, TensorRef) else None
        if isinstance(src, torch.Tensor):
            yield src
    if run is not None:
        yield run


def _write_run(out: BinaryIO, src: _Run | torch.Tensor) -> None:
    if isinstance(src, torch.Tensor):
        out.write(src.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data)
        return
    out.flush()
    with src.file.open("rb") as f:
        copy_range(f.fileno(), out.fileno(), src.start, src.end - src.start)
    out.seek(0, os.SEEK_END)


# copy_file_range cannot copy between these two files (other file systems, old kernels): copy by hand
_NO_KERNEL_COPY = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF})


def copy_range(src_fd: int, dst_fd: int, start: int, count: int) -> None:
    """Copy bytes [start, start+count) of src to dst's current end, in the kernel when possible."""
    dst_pos = os.lseek(dst_fd, 0, os.SEEK_END)
    done = 0
    while done < count:
        try:
            n = os.copy_file_range(src_fd, dst_fd, count - done, start + done, dst_pos + done)
        except AttributeError:
            n = _copy_buffered(src_fd, dst_fd, start + done, dst_pos + done, count - done)
        except OSError as e:
            if e.errno not in _NO_KERNEL_COPY:
                raise  # a full disk or an I/O error is the caller's to report, not a reason to retry
            n = _copy_buffered(src_fd, dst_fd, start + done, dst_pos + done, count - done)
        if n == 0:
            raise TaiaError(f"unexpected end of file while copying {count} bytes")
        done += n


def _copy_buffered(src_fd: int, dst_fd: int, src_pos: int, dst_pos: int, count: int) -> int:
    chunk = os.pread(src_fd, min(count, 16 << 20), src_pos)
    return os.pwrite(dst_fd, chunk, dst_pos)


def write_index(root: Path, weight_map: dict[str, str], total_size: int) -> None:
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (root / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n")


def sha256_files(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()
