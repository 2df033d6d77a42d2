"""The rules a weights file's header and a sharded index must follow before taia uses any of them.

A hostile or corrupt file must end in one line naming it, never in a traceback or, worse, in a loadable
output: two tensors sharing one byte range would give `embed_tokens` the bytes of `lm_head`, a shard named
`../x.safetensors` would be read from outside the model. The header rules are the safetensors format's
own (what `safetensors` refuses, taia refuses, before the header is used): the header is a JSON object of
tensor objects (plus an optional `__metadata__` of strings); each has a known dtype, a shape of
non-negative integers and `data_offsets` whose length is dtype × shape; sorted by offset, the tensors
cover the data contiguously from byte 0 to the end of the file, no gap, no overlap. All of it is checked
on the header alone, in O(tensors log tensors) on data already read: no extra file access on the hot path
of `taia apply`.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath
from typing import Any

from taia.errors import TaiaError

# Bits per element of every dtype the safetensors format defines (sub-byte floats included).
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16,
    "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip

# name, dtype, shape, start, end: offsets relative to the start of the data (after the header)
Entry = tuple[str, str, tuple[int, ...], int, int]


def parse_header(path: Path, raw: bytes) -> tuple[list[Entry], dict[str, str]]:
    """The header's tensors (in file order) and metadata, each entry checked on its own."""
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:  # RecursionError: arrays nested thousands deep
        raise TaiaError(f"corrupt safetensors header in {path}: {' '.join(str(e).split())}") from None
    if not isinstance(header, dict):
        raise TaiaError(f"corrupt safetensors header in {path}: not a JSON object of tensors")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise TaiaError(f"corrupt safetensors header in {path}: __metadata__ must map strings to strings")
    return [_entry(path, k, v) for k, v in header.items()], metadata


def _ints(value: Any) -> tuple[int, ...] | None:
    """A list of non-negative integers (JSON `true` is no integer), else None."""
    if not isinstance(value, list) or not all(type(x) is int and x >= 0 for x in value):
        return None
    return tuple(value)


def _entry(path: Path, name: str, info: Any) -> Entry:
    shape = _ints(info.get("shape")) if isinstance(info, dict) else None
    offsets = _ints(info.get("data_offsets")) if isinstance(info, dict) else None
    if shape is None or offsets is None or len(offsets) != 2 or not isinstance(info.get("dtype"), str):
        raise TaiaError(f"corrupt safetensors header in {path}: bad entry for {name}")
    dtype, (start, end) = info["dtype"], offsets
    if dtype not in DTYPE_BITS:
        raise TaiaError(f"corrupt safetensors header in {path}: {name} has an unknown dtype {dtype!r}")
    numel = 1
    for d in shape:
        numel *= d
    bits = numel * DTYPE_BITS[dtype]
    if start > end or bits % 8 or end - start != bits // 8:
        expected = bits // 8 if bits % 8 == 0 else bits / 8  # a sub-byte dtype may not end mid-byte
        raise TaiaError(
            f"corrupt safetensors header in {path}: {name} spans {end - start} bytes, expected {expected}"
        )
    return name, dtype, shape, start, end


def check_layout(path: Path, entries: list[Entry], data_start: int, size: int) -> None:
    """Sorted by offset, the tensors must tile the data exactly: from byte 0 to the end of the file."""
    pos, prev = 0, ""
    for name, _, _, start, end in sorted(entries, key=lambda e: (e[3], e[4])):
        if start < pos:
            raise TaiaError(
                f"corrupt safetensors header in {path}: {name} overlaps the bytes of {prev} "
                "(two tensors may not share data)"
            )
        if start > pos:
            raise TaiaError(
                f"corrupt safetensors header in {path}: a gap of {start - pos} bytes before {name}"
            )
        pos, prev = end, name
    need = data_start + pos
    if need > size:
        raise TaiaError(f"truncated safetensors file {path}: header needs {need} bytes, file has {size}")
    if need < size:
        raise TaiaError(f"corrupt safetensors file {path}: {size - need} bytes after the last tensor's data")


def index_shards(index: Path, data: Any) -> list[str]:
    """The shard files a parsed `*.index.json` names: a `weight_map` of strings, each a file inside the
    model directory (transformers refuses the others too)."""
    if not isinstance(data, dict):
        raise TaiaError(f"corrupt index {index}: not a JSON object")
    weight_map = data["weight_map"]  # a missing key: the caller's KeyError line
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in weight_map.items()
    ):
        raise TaiaError(f"corrupt index {index}: weight_map must map tensor names to shard file names")
    files = sorted(set(weight_map.values()))
    for name in files:
        _check_inside(index, name)
    return files


def _check_inside(index: Path, name: str) -> None:
    """A shard is a relative path without `..`, and does not resolve (through a symlink) out of the model
    dir — except into the hub cache's `blobs/`, where every snapshot's files link to."""
    if PurePath(name).anchor or ".." in PurePath(name).parts:
        raise TaiaError(f"index {index} names a shard outside the model directory: {name}")
    root = index.parent
    target = (root / name).resolve()
    allowed = [root.resolve()]
    if root.parent.name == "snapshots":
        allowed.append((root.parent.parent / "blobs").resolve())
    if not any(target.is_relative_to(a) for a in allowed):
        raise TaiaError(f"index {index} names a shard {name} that links outside the model directory")
