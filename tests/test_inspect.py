"""`taia inspect`: parameter counts per (layer, group) and ‖ΔW‖/‖W‖, checked against hand computations."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import lora_adapter, tiny_model
from taia.classify import classify
from taia.cli import main
from taia.config import InspectConfig
from taia.inspect import inspect

PEFT_PREFIX = "base_model.model."


def load(path: Path):
    return AutoModelForCausalLM.from_pretrained(str(path)).eval()


def by_cell(result: dict) -> dict[tuple[int | None, str], dict]:
    cells = {(r["layer"], r["group"]): r for r in result["rows"]}
    assert len(cells) == len(result["rows"]), "duplicate (layer, group) rows"
    return cells


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


# ------------------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_param_counts_match_classify(saved, arch):
    s = saved(arch)
    result = inspect(InspectConfig(model=str(s.base)))
    assert result["model_type"] == arch and result["num_layers"] == 2 and result["has_delta"] is False
    assert all(r["rel_update"] is None for r in result["rows"])

    model = load(s.base)
    info = classify(model)
    want_cell: dict[tuple[int | None, str], int] = defaultdict(int)
    want_group: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        want_cell[(info[name].layer, info[name].group)] += p.numel()
        want_group[info[name].group] += p.numel()

    got_group: dict[str, int] = defaultdict(int)
    for r in result["rows"]:
        got_group[r["group"]] += r["params"]
    assert dict(got_group) == dict(want_group)
    assert {k: r["params"] for k, r in by_cell(result).items()} == dict(want_cell)
    assert sum(r["params"] for r in result["rows"]) == sum(p.numel() for p in model.parameters())
    assert {"attn", "ffn"} <= set(got_group)


def test_rows_are_ordered_outside_layers_first(llama):
    rows = inspect(InspectConfig(model=str(llama.base)))["rows"]
    layers = [-1 if r["layer"] is None else r["layer"] for r in rows]
    assert layers == sorted(layers)
    assert [r["layer"] for r in rows if r["group"] == "attn"] == [0, 1]


# ------------------------------------------------------------------------------- full fine-tune deltas


def hand_full(base_path: Path, ft_path: Path) -> dict[tuple[int | None, str], float | None]:
    """sqrt(Σ‖W_ft − W_base‖²) / sqrt(Σ‖W_base‖²) per (layer, group), from two loaded models."""
    base, ft = load(base_path), load(ft_path)
    info = classify(base)
    fsd = dict(ft.named_parameters())
    delta: dict[tuple[int | None, str], float] = defaultdict(float)
    weight: dict[tuple[int | None, str], float] = defaultdict(float)
    for name, w in base.named_parameters():
        key = (info[name].layer, info[name].group)
        b64, f64 = w.detach().double(), fsd[name].detach().double()
        delta[key] += (f64 - b64).square().sum().item()
        weight[key] += b64.square().sum().item()
    return {k: math.sqrt(delta[k]) / math.sqrt(weight[k]) if weight[k] else None for k in weight}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_full_rel_update_matches_hand_computation(saved, arch):
    s = saved(arch)
    result = inspect(InspectConfig(base=str(s.base), finetuned=str(s.finetuned)))
    assert result["has_delta"] is True
    want = hand_full(s.base, s.finetuned)
    got = {k: r["rel_update"] for k, r in by_cell(result).items()}
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert value is not None and value > 0
        assert got[key] is not None and close(got[key], value), (key, got[key], value)


def test_base_against_itself_is_zero(llama):
    result = inspect(InspectConfig(base=str(llama.base), finetuned=str(llama.base)))
    assert result["rows"]
    for r in result["rows"]:
        assert r["rel_update"] == 0.0, r


def test_rel_update_scales_linearly(llama, tmp_path):
    """A fine-tune halfway between base and the fixture fine-tune has exactly half the relative update."""
    base, ft = load(llama.base), load(llama.finetuned)
    fsd = dict(ft.named_parameters())
    with torch.no_grad():
        for name, p in base.named_parameters():
            p.add_(fsd[name] - p, alpha=0.5)
    base.save_pretrained(tmp_path / "half")
    full = by_cell(inspect(InspectConfig(base=str(llama.base), finetuned=str(llama.finetuned))))
    half = by_cell(inspect(InspectConfig(base=str(llama.base), finetuned=str(tmp_path / "half"))))
    for key, r in full.items():
        assert close(half[key]["rel_update"], 0.5 * r["rel_update"], rel=1e-5), key


# ------------------------------------------------------------------------------------ LoRA adapter deltas


def test_lora_rel_update_layer0_attn_by_hand(llama):
    config = json.loads((llama.adapter / "adapter_config.json").read_text())
    tensors = load_file(str(llama.adapter / "adapter_model.safetensors"))
    base = load_file(str(llama.base / "model.safetensors"))
    scaling = config["lora_alpha"] / config["r"]
    delta_sq = weight_sq = 0.0
    modules = sorted(
        {k.removeprefix(PEFT_PREFIX).split(".lora_")[0] for k in tensors if ".layers.0.self_attn." in k}
    )
    assert [m.rsplit(".", 1)[-1] for m in modules] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    for m in modules:
        a = tensors[f"{PEFT_PREFIX}{m}.lora_A.weight"].double()
        b = tensors[f"{PEFT_PREFIX}{m}.lora_B.weight"].double()
        delta_sq += (scaling * b @ a).square().sum().item()
        weight_sq += base[f"{m}.weight"].double().square().sum().item()
    want = math.sqrt(delta_sq / weight_sq)

    result = inspect(InspectConfig(base=str(llama.base), adapter=str(llama.adapter)))
    assert result["has_delta"] is True
    assert close(by_cell(result)[(0, "attn")]["rel_update"], want)


def peft_cells(base_path: Path, adapter_path: Path) -> dict[tuple[int | None, str], float]:
    """‖ΔW‖/‖W‖ per cell with ΔW from PEFT itself (get_delta_weight), over the modules it wraps."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    model = PeftModel.from_pretrained(load(base_path), str(adapter_path)).eval()
    info = classify(load(base_path))
    delta: dict[tuple[int | None, str], float] = defaultdict(float)
    weight: dict[tuple[int | None, str], float] = defaultdict(float)
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or not module.lora_A:
            continue
        path = name.removeprefix(PEFT_PREFIX)
        key = (info[f"{path}.weight"].layer, info[f"{path}.weight"].group)
        with torch.no_grad():
            d = module.get_delta_weight("default").double()
        delta[key] += d.square().sum().item()
        weight[key] += module.get_base_layer().weight.detach().double().square().sum().item()
    return {k: math.sqrt(delta[k] / weight[k]) for k in delta}


def _check_against_peft(base_path: Path, adapter_path: Path) -> None:
    want = peft_cells(base_path, adapter_path)
    got = by_cell(inspect(InspectConfig(base=str(base_path), adapter=str(adapter_path))))
    assert want
    for key, value in want.items():
        assert close(got[key]["rel_update"], value, rel=1e-5), (key, got[key]["rel_update"], value)
    for key, r in got.items():
        if key not in want:
            assert r["rel_update"] is None, (key, r)  # no LoRA module in the cell: no number


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_lora_rel_update_matches_peft_delta_weight(saved, arch):
    s = saved(arch)
    _check_against_peft(s.base, s.adapter)


def _adapter(path: Path, **lora_kwargs) -> Path:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(lora_dropout=0.0, **lora_kwargs)
    peft_model = get_peft_model(tiny_model("llama"), cfg)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    peft_model.save_pretrained(path)
    return path


def test_lora_rank_alpha_patterns_and_rslora_match_peft(llama, tmp_path):
    adapter = _adapter(
        tmp_path / "a",
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj"],
        rank_pattern={"v_proj": 2},
        alpha_pattern={"q_proj": 32, "down_proj": 3},
        use_rslora=True,
    )
    _check_against_peft(llama.base, adapter)


def test_alpha_pattern_is_matched_like_peft(llama, tmp_path):
    adapter = _adapter(
        tmp_path / "a", r=4, lora_alpha=8, target_modules=["q_proj"], alpha_pattern={"self_attn": 32}
    )
    _check_against_peft(llama.base, adapter)


def test_lora_rel_update_only_where_adapter_wraps(llama, tmp_path):
    adapter = tmp_path / "a"
    lora_adapter(tiny_model("llama"), target_modules=["q_proj"]).save_pretrained(adapter)
    cells = by_cell(inspect(InspectConfig(base=str(llama.base), adapter=str(adapter))))
    for key, r in cells.items():
        if key[1] == "attn":
            assert r["rel_update"] is not None and r["rel_update"] > 0, key
        else:
            assert r["rel_update"] is None, key
    _check_against_peft(llama.base, adapter)


# ------------------------------------------------------------------------------------------ CLI == API


def test_cli_table(llama, capsys):
    assert main(["inspect", "--model", str(llama.base)]) == 0
    out = capsys.readouterr().out
    assert "attn" in out and "ffn" in out and "llama" in out
    assert "3.1k" in out and "6.1k" in out  # layer 0 attn / ffn param counts, humanised


def test_cli_table_with_delta(llama, capsys):
    assert main(["inspect", "--base", str(llama.base), "--adapter", str(llama.adapter)]) == 0
    out = capsys.readouterr().out
    assert "‖ΔW‖/‖W‖" in out and "attn" in out and "ffn" in out
    assert "e-" in out or "e+" in out


@pytest.mark.parametrize("source", ["model", "finetuned", "adapter"])
def test_cli_json_equals_api(llama, capsys, source):
    if source == "model":
        kwargs = {"model": str(llama.base)}
    else:
        kwargs = {"base": str(llama.base), source: str(getattr(llama, source))}
    argv = ["inspect", *(x for k, v in kwargs.items() for x in (f"--{k}", v)), "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == inspect(InspectConfig(**kwargs))


def test_cli_json_via_config_file(llama, tmp_path, capsys):
    cfg = tmp_path / "inspect.yaml"
    cfg.write_text(f"base: {llama.base}\nfinetuned: {llama.finetuned}\n")
    assert main(["inspect", str(cfg), "json_output=true"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == inspect(InspectConfig(base=str(llama.base), finetuned=str(llama.finetuned)))


def test_cli_inspect_needs_one_source(llama, capsys):
    assert main(["inspect", "--base", str(llama.base)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taia: error: ") and err.count("\n") == 1
