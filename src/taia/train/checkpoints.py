"""Trainer checkpoints (`out/checkpoints/checkpoint-N/`): which one `resume=true` continues from, and what a
failed checkpoint write leaves behind.

A checkpoint is complete when every file resume reads is there and whole — checked without reading the
tensors: trainer_state.json (the Trainer writes it last) and every JSON file parse; optimizer.pt and
scheduler.pt are there (DeepSpeed / FSDP keep theirs in sub-dirs instead); every safetensors header fits
its file (`read_header`); every .pt / .pth opens with `torch.load(weights_only=True, mmap=True)`, the way
resume loads it, so a truncated zip fails here and a pickle that would run code is refused without
running; taia's own extras (MoLoRA experts, regularize θ0 / F) are there too. training_args.bin is a full
pickle that resume never loads: it is not opened.

    resume_point(ckpt_dir, extras)   the newest complete checkpoint; newer incomplete ones (a crash, a full
                                     disk) are named on stderr and removed; none complete → one-line refusal
    writing(ckpt_dir, extras)        around training: a file-system error is one line naming the file,
                                     and the incomplete checkpoint it left is removed
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import sys
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taia.errors import TaiaError
from taia.io.atomic import os_error, write_error
from taia.io.checkpoint import read_header

_STEP = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR naming
_WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
_SKIPPED = frozenset({"training_args.bin"})


def checkpoints(ckpt_dir: Path) -> list[Path]:
    """The checkpoint-N dirs in `ckpt_dir`, newest (highest N) first."""
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found, reverse=True)]


def problem(ckpt: Path, extras: tuple[str, ...] = ()) -> str | None:
    """What keeps `ckpt` from being resumed (naming the file), or None when it is complete. A file that
    weights_only loading refuses is not a crash's leftover: it is refused (TaiaError), never skipped."""
    try:
        entries = sorted(ckpt.iterdir())
    except FileNotFoundError:  # another process's main one removed it as incomplete meanwhile
        return f"{ckpt} is gone"
    names = {p.name for p in entries}
    nested = any(p.is_dir() for p in entries)  # DeepSpeed / FSDP: weights and optimizer in sub-dirs
    wanted = ["trainer_state.json", *extras, *(() if nested else ("optimizer.pt", "scheduler.pt"))]
    missing = [n for n in wanted if n not in names]
    if missing:
        return f"{ckpt / missing[0]} is missing"
    if not nested and not names.intersection(_WEIGHTS):
        return f"{ckpt} holds no weights ({' / '.join(_WEIGHTS)})"
    for path in entries:
        found = _file_problem(path) if path.is_file() and path.name not in _SKIPPED else None
        if found:
            return found
    return None


def _file_problem(path: Path) -> str | None:
    if path.suffix == ".safetensors":
        try:
            read_header(path)
        except TaiaError as e:
            return str(e)
    elif path.suffix in (".pt", ".pth"):
        return _pickle_problem(path)
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError):  # OSError: removed meanwhile (see `problem`)
            return f"{path} is truncated or not JSON"
        if path.name.endswith(".index.json"):
            return _shards_problem(path, data)
    return None


def _pickle_problem(path: Path) -> str | None:
    import torch
    from transformers.trainer_pt_utils import safe_globals

    try:
        with safe_globals():  # the numpy types the Trainer's RNG state holds, as its own loader allows
            torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        why = next((x for x in str(e).splitlines() if "unsupported" in x.lower()), "not plain tensors")
        raise TaiaError(
            f"{path} holds pickled objects that weights_only loading refuses ({why.strip()}); "
            "it was not loaded: set overwrite=true to start the run over"
        ) from None
    except Exception as e:  # noqa: BLE001 — a truncated zip fails in many ways (OSError, RuntimeError, …)
        return f"{path} is truncated or corrupt ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    return None


def _shards_problem(index: Path, data: object) -> str | None:
    files = set(data.get("weight_map", {}).values()) if isinstance(data, dict) else set()
    missing = sorted(f for f in files if not (index.parent / f).is_file())
    return f"{index.parent / missing[0]} is missing (listed in {index.name})" if missing else None


def resume_point(ckpt_dir: Path, extras: tuple[str, ...] = (), main: bool = True) -> str | None:
    """The newest complete checkpoint to resume from (None: there is none yet). Newer incomplete ones are
    named on stderr and (by the main process) removed, so that the Trainer never sees them."""
    found = checkpoints(ckpt_dir)
    if not found:
        print(f"taia: no checkpoint in {ckpt_dir} yet; training from the start")
        return None
    skipped: list[tuple[Path, str]] = []
    for ckpt in found:
        why = problem(ckpt, extras)
        if why is None:
            break
        skipped.append((ckpt, why))
    else:
        raise TaiaError(
            f"cannot resume from {ckpt_dir}: no complete checkpoint ({skipped[0][1]}); "
            "set overwrite=true to start the run over"
        )
    if skipped and main:
        names = ", ".join(p.name for p, _ in skipped)
        print(
            f"taia: resuming from {ckpt.name}: {names} incomplete ({skipped[0][1]}), removed", file=sys.stderr
        )
        for p, _ in skipped:
            shutil.rmtree(p, ignore_errors=True)
    return str(ckpt)


@contextmanager
def writing(ckpt_dir: Path, extras: tuple[str, ...] = (), main: bool = True) -> Iterator[None]:
    """Around training: a file-system error (a full disk mid-checkpoint) is one line naming the file; the
    incomplete checkpoint it left is removed, so the newest one left is whole and resume=true continues
    from it."""
    try:
        yield
    except BaseException as e:
        failed = os_error(e)
        if failed is None:
            raise
        partial = [p for p in checkpoints(ckpt_dir) if _incomplete(p, extras)] if main else []
        for p in partial:
            shutil.rmtree(p, ignore_errors=True)
        if partial or not failed.filename:
            error = write_error(partial[0] if partial else ckpt_dir.parent, failed)
        else:
            error = write_error(Path(failed.filename), failed, named=False)
        left = checkpoints(ckpt_dir)
        then = f"; resume=true continues from {left[0].name}" if left else ""
        raise TaiaError(f"{error}{then}") from None


def _incomplete(ckpt: Path, extras: tuple[str, ...]) -> bool:
    try:
        return problem(ckpt, extras) is not None
    except TaiaError:  # refused pickles are not this run's own writes: left for resume to refuse
        return False
