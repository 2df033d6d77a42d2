"""TAIA on a model already in memory: a PEFT LoRA model (per-module LoRA scale) or a full fine-tune.

For PEFT models λ becomes each LoRA layer's scale (`set_scale`, absolute, so calling again with another
spec switches variants without reloading). For a full fine-tune the selected tensors are rewritten in
place from a base state dict. Exercised by tests/test_apply_model.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from taia.apply.checkpoint import interpolate
from taia.classify import map_model
from taia.errors import TaiaError
from taia.lora import PEFT_PREFIX
from taia.plan import make_plan, summarize
from taia.spec import TaiaSpec, load_spec


def apply_model(
    model: nn.Module,
    spec: TaiaSpec | str = "taia",
    base: nn.Module | Mapping[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """Apply `spec` in place; returns per-group counts. `base` is needed for a non-PEFT model."""
    spec = load_spec(spec)
    if hasattr(model, "peft_config"):
        return _apply_peft(model, spec)
    if base is None:
        raise TaiaError("a full fine-tune needs `base` (the base model or its state dict) to revert to")
    return _apply_full(model, spec, base.state_dict() if isinstance(base, nn.Module) else base)


def _apply_peft(model: nn.Module, spec: TaiaSpec) -> dict[str, Any]:
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import ModulesToSaveWrapper

    mm = map_model(model)
    layers: dict[str, Any] = {
        n.removeprefix(PEFT_PREFIX): m for n, m in model.named_modules() if isinstance(m, LoraLayer)
    }
    wrappers = {
        n.removeprefix(PEFT_PREFIX): m
        for n, m in model.named_modules()
        if isinstance(m, ModulesToSaveWrapper)
    }
    plan = make_plan([f"{p}.weight" for p in [*layers, *wrappers]], mm, spec)
    for path, layer in layers.items():
        for adapter in layer.scaling:
            layer.set_scale(adapter, plan[f"{path}.weight"].lam)
    for path, wrapper in wrappers.items():
        lam = plan[f"{path}.weight"].lam
        if lam not in (0.0, 1.0):
            raise TaiaError(
                f"λ={lam:g} on {path}: a modules_to_save copy can only be kept (1) or dropped (0)"
            )
        wrapper.enable_adapters(lam == 1.0)
    numels = {f"{p}.weight": _numel(m) for p, m in [*layers.items(), *wrappers.items()]}
    return {"spec": spec.name, "groups": summarize(plan, numels)}


def _numel(module: nn.Module) -> int:
    return sum(t.numel() for t in module.parameters())


@torch.no_grad()
def _apply_full(model: nn.Module, spec: TaiaSpec, base: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    mm = map_model(model)
    params = dict(model.named_parameters())
    plan = make_plan(params, mm, spec)
    for name, d in plan.items():
        if d.lam == 1.0:
            continue
        if name not in base or base[name].shape != params[name].shape:
            raise TaiaError(f"base has no tensor {name} of shape {list(params[name].shape)}")
        params[name].copy_(interpolate(base[name], params[name], d.lam, name))
    return {"spec": spec.name, "groups": summarize(plan, {n: p.numel() for n, p in params.items()})}
