"""`taia apply --finetuned` when base and fine-tune differ in float width (issue 19): the output has the
fine-tune's dtypes, tensor by tensor, so the config.json it copies from the fine-tune is true; a base
tensor that does not fit the fine-tune's width is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from taia.cli import main
from test_errors import copy, fails

Q = "model.layers.0.self_attn.q_proj.weight"
UP = "model.layers.0.mlp.up_proj.weight"


def _in(path: Path, dtype: torch.dtype) -> Path:
    AutoModelForCausalLM.from_pretrained(path.parent / path.name, dtype=torch.float32).to(
        dtype
    ).save_pretrained(path.parent / f"{path.name}-{str(dtype).split('.')[-1]}")
    return path.parent / f"{path.name}-{str(dtype).split('.')[-1]}"


@pytest.mark.parametrize(
    ("base_dtype", "ft_dtype"), [(torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32)]
)
def test_output_has_the_finetunes_dtype(llama, tmp_path, base_dtype, ft_dtype):
    base = _in(copy(llama.base, tmp_path / "base"), base_dtype)
    ft = _in(copy(llama.finetuned, tmp_path / "ft"), ft_dtype)
    out = tmp_path / "out"
    assert main(["apply", "--base", str(base), "--finetuned", str(ft), "--out", str(out)]) == 0
    written, src = load_file(str(out / "model.safetensors")), load_file(str(base / "model.safetensors"))
    assert {t.dtype for t in written.values()} == {ft_dtype}
    assert json.loads((out / "config.json").read_text())["dtype"] == str(ft_dtype).split(".")[-1]
    assert torch.equal(written[UP], src[UP].to(ft_dtype))  # λ = 0: the base's tensor, cast
    assert torch.equal(written[Q], load_file(str(ft / "model.safetensors"))[Q])  # λ = 1: the fine-tune's


def test_base_tensor_too_large_for_the_finetunes_width(llama, tmp_path, capsys):
    base = copy(llama.base, tmp_path / "base")
    tensors = load_file(str(base / "model.safetensors"))
    tensors[UP] = tensors[UP].clone()
    tensors[UP].view(-1)[0] = 1e6  # finite in fp32, ±Inf in fp16
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    ft = _in(copy(llama.finetuned, tmp_path / "ft"), torch.float16)
    out = tmp_path / "out"
    args = ["apply", "--base", base, "--finetuned", ft, "--out", out]
    fails(capsys, args, out, f"{UP} of {base} does not fit the fine-tune's F16")
