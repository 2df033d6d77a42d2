"""TAIA on a model already in memory: a PEFT LoRA model (per-module LoRA scale) or a full fine-tune.

For PEFT models λ becomes each LoRA layer's scale (`set_scale`, absolute, so calling again with another
spec switches variants without reloading); `modules_to_save` copies and MoLoRA experts (taia.molora) are
kept or dropped whole. For a full fine-tune the selected tensors are rewritten in place from a base state
dict. Exercised by `taia eval --variants` (through taia.eval.variants) and tests/test_invariants.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from taia.arith import interpolate, partial_copy_error
from taia.classify import map_model
from taia.errors import TaiaError
from taia.lora import PEFT_PREFIX
from taia.molora import TENSOR_NAMES, MoLoraLinear
from taia.plan import Plan, make_plan, summarize
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

    modules = {n.removeprefix(PEFT_PREFIX): m for n, m in model.named_modules()}
    layers: dict[str, Any] = {p: m for p, m in modules.items() if isinstance(m, LoraLayer)}
    wrappers = {p: m for p, m in modules.items() if isinstance(m, ModulesToSaveWrapper)}
    experts = {p: m for p, m in modules.items() if isinstance(m, MoLoraLinear)}
    plan = make_plan((), map_model(model), spec, modules=[*layers, *wrappers, *experts])
    _check_whole(plan, list(wrappers), list(experts))  # before anything changes
    for path, layer in layers.items():
        for adapter in layer.scaling:
            layer.set_scale(adapter, plan.lam(path))
    for path, wrapper in wrappers.items():
        wrapper.enable_adapters(plan.lam(path) == 1.0)
    for path, m in experts.items():
        m.enabled = plan.lam(path) == 1.0  # the same for all (_check_whole)
    numels = {p: _numel(m) for p, m in {**layers, **wrappers}.items()}
    numels |= {p: sum(m.get_parameter(t).numel() for t in TENSOR_NAMES) for p, m in experts.items()}
    return {"spec": spec.name, "groups": summarize(plan.modules, numels)}


def _check_whole(plan: Plan, wrappers: list[str], experts: list[str]) -> None:
    """A `modules_to_save` copy can only be kept or dropped, and the routed MoLoRA experts all together."""
    for path in wrappers:
        lam = plan.lam(path)
        if lam not in (0.0, 1.0):
            raise partial_copy_error(lam, path)
    lams = {plan.lam(p) for p in experts}
    if not lams <= {0.0, 1.0} or len(lams) > 1:
        raise TaiaError(f"spec {plan.spec.name!r}: MoLoRA experts can only be all kept or all dropped")


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
