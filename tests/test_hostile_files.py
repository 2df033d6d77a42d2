"""Hostile or corrupt weights files (issue 19): safetensors headers that break the format's rules, adapters
with integer or 1-D LoRA tensors, sharded indexes that point outside the model dir, pickles that hold no
tensors. Each is refused in one line (exit 2) by every verb that reads it, and nothing is written."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from taia.cli import main
from test_errors import copy, fails

ADAPTER_SAFE = "adapter_model.safetensors"
INDEX = "model.safetensors.index.json"
EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def split(path: Path) -> tuple[dict, bytes]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_raw(path: Path, header: object, data: bytes = b"") -> None:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)


def shared_range(path: Path) -> None:
    """embed_tokens made to point at lm_head's bytes, its own bytes cut out: a file that loads."""
    header, data = split(path)
    lo, hi = header[EMBED]["data_offsets"]
    for info in header.values():
        if "data_offsets" in info and info["data_offsets"][0] >= hi:
            info["data_offsets"] = [x - (hi - lo) for x in info["data_offsets"]]
    header[EMBED]["data_offsets"] = header[HEAD]["data_offsets"]
    write_raw(path, header, data[:lo] + data[hi:])


def edit_entry(path: Path, name: str, **changes) -> None:
    header, data = split(path)
    header[name].update(changes)
    write_raw(path, header, data)


def _apply(base, ft, out) -> list:
    return ["apply", "--base", base, "--finetuned", ft, "--out", out]


# ------------------------------------------------------------------------------------- safetensors headers

HOSTILE_HEADERS = {
    "shared range": (shared_range, f"{EMBED} overlaps the bytes of {HEAD}"),
    "a list": (lambda p: write_raw(p, []), "not a JSON object of tensors"),
    "nested deep": (lambda p: write_raw(p, b"[" * 100_000 + b"]" * 100_000), "corrupt safetensors header"),
    "overlap": (
        lambda p: edit_entry(p, EMBED, data_offsets=[16000, 32384]),
        "corrupt safetensors header",
    ),
    "unknown dtype": (lambda p: edit_entry(p, EMBED, dtype="F128"), "unknown dtype 'F128'"),
    "bool in shape": (lambda p: edit_entry(p, EMBED, shape=[True, 4096]), f"bad entry for {EMBED}"),
    "entry not an object": (lambda p: edit_entry_raw(p, EMBED, [1, 2]), f"bad entry for {EMBED}"),
    "metadata of numbers": (lambda p: edit_entry_raw(p, "__metadata__", {"format": 1}), "__metadata__"),
    "trailing bytes": (lambda p: p.write_bytes(p.read_bytes() + b"\0" * 8), "8 bytes after the last tensor"),
}


def edit_entry_raw(path: Path, name: str, value: object) -> None:
    header, data = split(path)
    header[name] = value
    write_raw(path, header, data)


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
@pytest.mark.parametrize("verb", ["apply", "inspect"])
def test_hostile_header_is_refused(llama, tmp_path, capsys, case, verb):
    ft = copy(llama.finetuned, tmp_path / "ft")
    corrupt, says = HOSTILE_HEADERS[case]
    corrupt(ft / "model.safetensors")
    out = tmp_path / "out"
    argv = (
        _apply(llama.base, ft, out)
        if verb == "apply"
        else ["inspect", "--base", llama.base, "--finetuned", ft]
    )
    fails(capsys, argv, out, says, str(ft / "model.safetensors"))


def test_gap_between_tensors_is_refused(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    header, data = split(ft / "model.safetensors")
    for info in header.values():
        if "data_offsets" in info and info["data_offsets"][0] > 0:
            info["data_offsets"] = [x + 4 for x in info["data_offsets"]]
    write_raw(ft / "model.safetensors", header, data[:16384] + b"\0" * 4 + data[16384:])
    out = tmp_path / "out"
    fails(capsys, _apply(llama.base, ft, out), out, "a gap of 4 bytes before", "model.safetensors")


def test_hostile_header_in_the_base(llama, tmp_path, capsys):
    base = copy(llama.base, tmp_path / "base")
    shared_range(base / "model.safetensors")
    out = tmp_path / "out"
    fails(capsys, _apply(base, llama.finetuned, out), out, "overlaps", str(base / "model.safetensors"))
    args = ["apply", "--base", base, "--adapter", llama.adapter, "--out", out, "--format", "merged"]
    fails(capsys, args, out, "overlaps", str(base / "model.safetensors"))


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
def test_hostile_adapter_header(llama, tmp_path, capsys, fmt):
    adapter = copy(llama.adapter, tmp_path / "adapter")
    header, data = split(adapter / ADAPTER_SAFE)
    first, second = [k for k in header if k != "__metadata__"][:2]
    header[second]["data_offsets"] = header[first]["data_offsets"]  # also misses its size: refused either way
    write_raw(adapter / ADAPTER_SAFE, header, data)
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--format", fmt]
    fails(capsys, args, out, "corrupt safetensors header", ADAPTER_SAFE)


# ------------------------------------------------------------------------------------------------ adapters


def _retyped_adapter(llama, tmp_path: Path, change) -> Path:
    adapter = copy(llama.adapter, tmp_path / "adapter")
    tensors = load_file(str(adapter / ADAPTER_SAFE))
    name = next(k for k in sorted(tensors) if "lora_A" in k)
    tensors[name] = change(tensors[name])
    save_file(tensors, str(adapter / ADAPTER_SAFE), metadata={"format": "pt"})
    return adapter


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
def test_integer_adapter_tensor_is_refused(llama, tmp_path, capsys, fmt):
    adapter = _retyped_adapter(llama, tmp_path, lambda t: (t * 1e9).to(torch.int32))
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--format", fmt]
    fails(capsys, args, out, "is I32; adapter weights must be floating point", ADAPTER_SAFE)
    fails(capsys, ["inspect", "--base", llama.base, "--adapter", adapter], None, "is I32")


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
def test_one_dimensional_lora_a_is_refused(llama, tmp_path, capsys, fmt):
    adapter = _retyped_adapter(llama, tmp_path, lambda t: t.reshape(-1).contiguous())
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--format", fmt]
    fails(capsys, args, out, "a LoRA A/B tensor must be 2-D", "lora_A")


def test_integer_pickle_adapter_is_refused(llama, tmp_path, capsys):
    adapter = copy(llama.adapter, tmp_path / "adapter")
    tensors = load_file(str(adapter / ADAPTER_SAFE))
    (adapter / ADAPTER_SAFE).unlink()
    torch.save({k: t.to(torch.int64) for k, t in tensors.items()}, adapter / "adapter_model.bin")
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--allow-pickle"]
    fails(capsys, args, out, "is I64; adapter weights must be floating point", "adapter_model.bin")


def test_pickle_of_no_tensors_is_refused(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    (ft / "model.safetensors").unlink()
    torch.save([1, 2, 3], ft / "pytorch_model.bin")
    out = tmp_path / "out"
    args = [*_apply(llama.base, ft, out), "--allow-pickle"]
    fails(capsys, args, out, "not a mapping of tensor names to tensors", "pytorch_model.bin")


# ------------------------------------------------------------------------------------------ sharded indexes


@pytest.fixture(scope="module")
def sharded(llama, tmp_path_factory) -> Path:
    from transformers import AutoModelForCausalLM

    path = tmp_path_factory.mktemp("hostile-sharded") / "ft"
    AutoModelForCausalLM.from_pretrained(llama.finetuned).save_pretrained(path, max_shard_size="20KB")
    return path


def _point(index: Path, target: str) -> None:
    data = json.loads(index.read_text())
    first = sorted(set(data["weight_map"].values()))[0]
    data["weight_map"] = {k: (target if v == first else v) for k, v in data["weight_map"].items()}
    index.write_text(json.dumps(data))


def _escape(ft: Path, how: str) -> str:
    """Move the first shard out of the model dir and point the index at it as `how` says."""
    first = sorted(set(json.loads((ft / INDEX).read_text())["weight_map"].values()))[0]
    outside = ft.parent / "outside.safetensors"
    os.replace(ft / first, outside)
    if how == "symlink":
        (ft / first).symlink_to(outside)
        return first
    _point(ft / INDEX, "../outside.safetensors" if how == "dotdot" else str(outside))
    return "../outside.safetensors" if how == "dotdot" else str(outside)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
@pytest.mark.parametrize("verb", ["apply", "inspect"])
def test_index_pointing_outside_is_refused(llama, sharded, tmp_path, capsys, how, verb):
    ft = copy(sharded, tmp_path / "ft")
    name = _escape(ft, how)
    out = tmp_path / "out"
    argv = (
        _apply(llama.base, ft, out)
        if verb == "apply"
        else ["inspect", "--base", llama.base, "--finetuned", ft]
    )
    fails(capsys, argv, out, f"index {ft / INDEX} names a shard", name, "outside the model directory")


@pytest.mark.parametrize(
    "weight_map", [["model-00001-of-00002.safetensors"], {"x": 3}, {"x": ["a"]}, "x", {"x": ""}]
)
def test_malformed_weight_map_is_refused(llama, sharded, tmp_path, capsys, weight_map):
    ft = copy(sharded, tmp_path / "ft")
    data = json.loads((ft / INDEX).read_text())
    data["weight_map"] = weight_map
    (ft / INDEX).write_text(json.dumps(data))
    out = tmp_path / "out"
    fails(capsys, _apply(llama.base, ft, out), out, f"corrupt index {ft / INDEX}", "weight_map")
    fails(capsys, ["inspect", "--base", llama.base, "--finetuned", ft], None, "corrupt index")


def test_index_of_a_list_is_refused(llama, sharded, tmp_path, capsys):
    ft = copy(sharded, tmp_path / "ft")
    (ft / INDEX).write_text("[]")
    out = tmp_path / "out"
    fails(capsys, _apply(llama.base, ft, out), out, f"corrupt index {ft / INDEX}: not a JSON object")


def test_hub_cache_symlinks_are_followed(llama, sharded, tmp_path, capsys):
    """A hub snapshot's files are symlinks into the repo's blobs/: that is not an escape."""
    repo = tmp_path / "models--org--ft"
    snap, blobs = repo / "snapshots" / "abc123", repo / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for f in sharded.iterdir():
        (blobs / f.name).write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(Path("../../blobs") / f.name)
    out = tmp_path / "out"
    assert main([str(a) for a in _apply(llama.base, snap, out)]) == 0
    assert (out / INDEX).is_file()
