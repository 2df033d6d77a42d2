"""What taia refuses (docs/refusals.md), one test per row, on tiny models: each asserts exit code 2, one
`taia: error:` line naming the input, and that nothing was written. Here issue #13's defects 1-3 (what
`taia apply --finetuned` writes), each on a single-file and on a sharded fine-tune; defects 4-10 are in
tests/test_refusals_verbs.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from taia.cli import main
from test_errors import copy, fails, read_tensors

Q = "model.layers.0.self_attn.q_proj.weight"
K = "model.layers.0.self_attn.k_proj.weight"
UP = "model.layers.0.mlp.up_proj.weight"
DOWN = "model.layers.1.mlp.down_proj.weight"
INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def sharded(llama, tmp_path_factory) -> Path:
    """The llama fine-tune re-saved in several small shards (read-only: copy to corrupt)."""
    path = tmp_path_factory.mktemp("sharded-ft") / "ft"
    AutoModelForCausalLM.from_pretrained(llama.finetuned).save_pretrained(path, max_shard_size="20KB")
    assert len(set(json.loads((path / INDEX).read_text())["weight_map"].values())) >= 3
    return path


@pytest.fixture(params=["single", "sharded"])
def ft_kind(request) -> str:
    return request.param


def ft_copy(llama, sharded, kind: str, dst: Path) -> Path:
    return copy(llama.finetuned if kind == "single" else sharded, dst)


def _file_of(ckpt: Path, name: str) -> Path:
    if (ckpt / INDEX).is_file():
        weight_map = json.loads((ckpt / INDEX).read_text())["weight_map"]
        return ckpt / weight_map.get(name, weight_map[Q])  # a new tensor goes beside Q
    return ckpt / "model.safetensors"


def edit(ckpt: Path, name: str, new: torch.Tensor | None) -> None:
    """Replace, add or (with None) delete one tensor of a single-file or sharded checkpoint in place."""
    file = _file_of(ckpt, name)
    tensors = load_file(str(file))
    if new is None:
        del tensors[name]
    else:
        tensors[name] = new
    save_file(tensors, str(file), metadata={"format": "pt"})
    if (ckpt / INDEX).is_file():
        index = json.loads((ckpt / INDEX).read_text())
        index["weight_map"].pop(name, None)
        if new is not None:
            index["weight_map"][name] = file.name
        (ckpt / INDEX).write_text(json.dumps(index))


def poke(ckpt: Path, name: str, value: float) -> None:
    t = load_file(str(_file_of(ckpt, name)))[name].clone()
    t.view(-1)[3] = value
    edit(ckpt, name, t)


def apply_args(base, ft, out, *extra) -> list:
    return ["apply", "--base", base, "--finetuned", ft, "--out", out, *extra]


# ---------------------------------------------------------- 1. a tensor missing from / extra in the fine-tune


@pytest.mark.parametrize("name", [K, Q])
def test_missing_kept_tensor_is_refused(llama, sharded, ft_kind, tmp_path, capsys, name):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, name, None)
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out, "--spec", "taia-ref"), out, name, str(ft), "no tensor")


def test_missing_reverted_tensor_comes_from_the_base(llama, sharded, ft_kind, tmp_path, capsys):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, UP, None)
    out = tmp_path / "out"
    assert main([str(a) for a in apply_args(llama.base, ft, out, "--spec", "taia-ref")]) == 0
    written, base = read_tensors(out), read_tensors(llama.base)
    assert written.keys() == base.keys()  # every tensor of the model, none random on load
    assert torch.equal(written[UP], base[UP])
    assert json.loads((out / "taia_report.json").read_text())["base_only_tensors"] == [UP]
    if ft_kind == "sharded":
        assert UP in json.loads((out / INDEX).read_text())["weight_map"]
    AutoModelForCausalLM.from_pretrained(out)  # loads, no missing keys
    fails(capsys, apply_args(llama.base, ft, tmp_path / "o2", "--spec", "vanilla"), tmp_path / "o2", UP)


def test_extra_tensor_needs_an_override(llama, sharded, ft_kind, tmp_path, capsys):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, "model.layers.0.self_attn.extra_bias", torch.zeros(4))
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out), out, "extra_bias", "lacks", "override")
    spec = tmp_path / "keep.yaml"
    spec.write_text(
        yaml.safe_dump({"groups": {"attn": 1.0}, "overrides": [{"pattern": "extra", "lambda": 1}]})
    )
    assert main([str(a) for a in apply_args(llama.base, ft, out, "--spec", spec)]) == 0
    assert "model.layers.0.self_attn.extra_bias" in read_tensors(out)
    half = tmp_path / "half.yaml"  # λ ≠ 1 needs the base's copy, which does not exist
    half.write_text(
        yaml.safe_dump({"groups": {"attn": 1.0}, "overrides": [{"pattern": "extra", "lambda": 0.5}]})
    )
    o2 = tmp_path / "o2"
    fails(
        capsys, apply_args(llama.base, ft, o2, "--spec", half), o2, "base checkpoint", "extra_bias", "λ=0.5"
    )


# ----------------------------------------------------------------------------- 2. NaN/Inf in a copied tensor


@pytest.mark.parametrize(
    ("name", "value", "spec"), [(Q, float("nan"), "taia"), (DOWN, float("inf"), "vanilla")]
)
def test_non_finite_copied_tensor_is_refused(llama, sharded, ft_kind, tmp_path, capsys, name, value, spec):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    poke(ft, name, value)
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out, "--spec", spec), out, "NaN/Inf", name, str(ft))
    assert main([str(a) for a in apply_args(llama.base, ft, out, "--spec", spec, "--skip-finite-check")]) == 0
    assert not torch.isfinite(read_tensors(out)[name]).all()  # the opt-out writes what it was given


def test_non_finite_base_tensor_is_refused(llama, tmp_path, capsys):
    base = copy(llama.base, tmp_path / "base")
    poke(base, UP, float("-inf"))
    out = tmp_path / "out"
    fails(capsys, apply_args(base, llama.finetuned, out), out, "NaN/Inf", UP, str(base))


def test_non_finite_pickle_tensor_is_refused(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    tensors = load_file(str(ft / "model.safetensors"))
    tensors[Q][0, 0] = float("nan")
    torch.save(tensors, ft / "pytorch_model.bin")
    (ft / "model.safetensors").unlink()
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out, "--allow-pickle"), out, "NaN/Inf", Q, str(ft))


# ---------------------------------------------------------------------- 3. wrong shape or dtype kind


@pytest.mark.parametrize("spec", ["taia", "taif"])
def test_wrong_shape_is_refused(llama, sharded, ft_kind, tmp_path, capsys, spec):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, Q, torch.zeros(16, 32))
    out = tmp_path / "out"
    fails(
        capsys,
        apply_args(llama.base, ft, out, "--spec", spec),
        out,
        "shape mismatch",
        Q,
        "[16, 32]",
        "[32, 32]",
    )


def test_wrong_dtype_kind_is_refused(llama, sharded, ft_kind, tmp_path, capsys):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, Q, torch.zeros(32, 32, dtype=torch.int32))
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out), out, "dtype mismatch", Q, "I32")


def test_other_float_width_is_accepted(llama, tmp_path):
    """An fp32 fine-tune of a bf16 base is common: float widths may differ, only the kind may not."""
    ft = copy(llama.finetuned, tmp_path / "ft")
    edit(ft, Q, load_file(str(ft / "model.safetensors"))[Q].to(torch.bfloat16))
    assert main([str(a) for a in apply_args(llama.base, ft, tmp_path / "out")]) == 0
    assert read_tensors(tmp_path / "out")[Q].dtype == torch.bfloat16
