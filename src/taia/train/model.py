"""Load the base model and make exactly the chosen parameters trainable.

LoRA (all blocks, or attention only = TOA, FFN only = TOF) goes through PEFT with classifier-derived
targets; MoLoRA adds mixture-of-LoRA-experts modules on the FFN linears of that PEFT model; full
fine-tuning freezes everything outside the chosen blocks. Exercised by `taia train cfg.yaml method=...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from taia.classify import ModelMap, map_model
from taia.errors import TaiaError
from taia.io.hf import load_kwargs
from taia.train.config import TrainConfig
from taia.train.targets import BLOCKS, Targets, freeze_except, select, trainable_by_group


def load_base(model_dir: Path, trust_remote_code: bool = False, allow_pickle: bool = False) -> nn.Module:
    """fp32 on CPU (bf16 matmuls there are slow and lossy); the checkpoint's own dtype on GPU."""
    from transformers import AutoModelForCausalLM

    dtype: Any = "auto" if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=dtype, **load_kwargs(allow_pickle, trust_remote_code)
    )
    if getattr(model, "is_quantized", False) or getattr(model, "hf_quantizer", None) is not None:
        raise TaiaError(f"{model_dir} is a quantized checkpoint; taia trains plain (de-quantized) weights")
    return model


def build(cfg: TrainConfig, model: nn.Module) -> tuple[nn.Module, dict[str, Any]]:
    """The model to hand to the trainer, and a description of what it trains (for the report)."""
    mm = map_model(model)
    if cfg.method == "full":
        freeze_except(model, mm, BLOCKS[cfg.only] if cfg.only else None)
        return model, {"trainable": trainable_by_group(model, mm)}
    lora_blocks = BLOCKS["attn"] if cfg.method == "molora" else BLOCKS[cfg.only]
    targets = select(mm, lora_blocks)
    peft_model = _with_lora(cfg, model, targets)
    info: dict[str, Any] = {
        "lora_target_modules": targets.regex(),
        "lora_target_parameters": list(targets.parameters),
        "lora_modules": len(targets.modules) + len(targets.parameters),
    }
    if cfg.method == "molora":
        info["molora_modules"] = _with_molora(cfg, peft_model, mm)
    if cfg.activation_checkpointing:
        peft_model.enable_input_require_grads()  # frozen embeddings would cut the checkpointed graph
    info["trainable"] = trainable_by_group(peft_model, mm)
    return peft_model, info


def _with_lora(cfg: TrainConfig, model: nn.Module, targets: Targets) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=targets.regex() if targets.modules else None,
        target_parameters=list(targets.parameters) or None,
        # GPT-2's Conv1D stores weights transposed; say so rather than have PEFT warn and flip it.
        fan_in_fan_out=any(type(model.get_submodule(p)).__name__ == "Conv1D" for p in targets.modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _with_molora(cfg: TrainConfig, peft_model: Any, mm: ModelMap) -> list[str]:
    from taia.molora import inject_molora

    ffn = [p for p in select(mm, BLOCKS["ffn"]).modules if mm.modules[p].group == "ffn"]
    if not ffn:
        raise TaiaError("molora needs dense FFN linear layers; this model's FFN has none (fused experts?)")
    inject_molora(peft_model.get_base_model(), ffn, cfg.molora)
    return ffn
