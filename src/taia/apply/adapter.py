"""TAIA on a PEFT LoRA adapter: keep the selected modules, fold λ into lora_B, drop the rest by name.

The result is a plain PEFT adapter dir (explicit `target_modules`, no `modules_to_save` unless kept)
that PEFT and vLLM load as-is. Exercised by `taia apply --base B --adapter A --out O`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from taia.arith import fold
from taia.check import check_inputs
from taia.classify import ModelMap
from taia.errors import TaiaError
from taia.io.atomic import atomic_dir, check_output
from taia.io.hf import ADAPTER_CONFIG, ADAPTER_SAFE, copy_aux
from taia.lora import LoraModule, group_modules
from taia.molora import molora_numels
from taia.plan import Plan, make_plan, summarize
from taia.provenance import build_report, describe_input, write_report
from taia.spec import TaiaSpec


@dataclass
class FilteredAdapter:
    base_dir: Path  # for a hub base, a snapshot holding only its config
    adapter_dir: Path
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    plan: Plan  # its `modules`: every LoRA and MoLoRA module of the adapter
    kept: list[str]
    dropped: list[str]
    numels: dict[str, int]  # module path → parameters


def filter_adapter(base: str | Path, adapter: str | Path, spec: TaiaSpec, **opts: Any) -> FilteredAdapter:
    """Decide every wrapped module and build the kept, λ-folded adapter (in memory; adapters are small).

    `base_weights=True` in `opts` also checks the base's weights (the merged format loads them)."""
    # The adapter format needs only the base's config: a hub base is not downloaded whole.
    inputs = check_inputs(
        base,
        adapter=adapter,
        specs=[spec],
        allow_pickle=opts.get("allow_pickle", False),
        trust_remote_code=opts.get("trust_remote_code", False),
        base_weights=opts.get("base_weights", False),
    )
    base_dir, adapter_dir, mm = inputs.base_dir, inputs.adapter_dir, inputs.mm
    config, tensors = inputs.adapter_config, inputs.adapter_tensors
    assert adapter_dir is not None
    modules = group_modules(tensors)
    molora = molora_numels(adapter_dir) or {}  # MoLoRA saved beside the adapter (`method=molora`)
    plan = make_plan((), mm, spec, modules=[*modules, *molora])
    _check_molora_dropped(molora, plan)
    out_tensors: dict[str, torch.Tensor] = {}
    kept, dropped = [], [f"{p} (MoLoRA experts + router)" for p in molora]
    for path, m in modules.items():
        lam = plan.lam(path)
        if lam == 0.0:
            dropped.append(path)
            continue
        kept.append(path)
        out_tensors.update(fold(m, lam))
    numels = {p: sum(t.numel() for t in m.tensors.values()) for p, m in modules.items()}
    numels.update(molora)
    new_config = rewrite_config(config, [modules[p] for p in kept], mm)
    return FilteredAdapter(base_dir, adapter_dir, new_config, out_tensors, plan, kept, dropped, numels)


def _check_molora_dropped(molora: dict[str, int], plan: Plan) -> None:
    """Routed expert mixtures have no static weight delta, so no adapter or checkpoint can keep them."""
    kept = [p for p in molora if plan.lam(p) != 0.0]
    if kept:
        raise TaiaError(
            f"{kept[0]} holds MoLoRA experts (routed per token): a PEFT adapter or merged checkpoint cannot "
            "keep them, so the spec must give their group λ=0 (spec taia does); evaluate the whole MoLoRA "
            "model in memory instead"
        )


def rewrite_config(config: dict[str, Any], kept: list[LoraModule], mm: ModelMap) -> dict[str, Any]:
    """Explicit module/parameter paths (GPT-2's two `c_proj` stay apart); PEFT's other filters cleared."""
    new = dict(config)
    param_targets = {m.path: _param_targets(config, m, mm) for m in kept if m.is_lora}
    new["target_modules"] = (
        sorted({m.unwrapped for m in kept if m.is_lora and not param_targets[m.path]}) or None
    )
    new["target_parameters"] = sorted({t for ts in param_targets.values() for t in ts}) or None
    new["modules_to_save"] = sorted({m.path for m in kept if not m.is_lora}) or None
    for key in ("layers_to_transform", "layers_pattern", "exclude_modules"):
        new[key] = None
    return new


def _param_targets(config: dict[str, Any], m: LoraModule, mm: ModelMap) -> list[str]:
    """Full names of the parameters of `m` that the adapter targeted by `target_parameters` (MoE experts)."""
    targets = config.get("target_parameters") or []
    module = mm.find_module(m.unwrapped) or m.unwrapped
    own = [n for n in mm.shapes if n.rpartition(".")[0] == module]
    return [
        n.replace(module, m.unwrapped, 1) for n in own if any(n == t or n.endswith("." + t) for t in targets)
    ]


def apply_adapter(
    base: str | Path,
    adapter: str | Path,
    out: str | Path,
    spec: TaiaSpec,
    overwrite: bool = False,
    **opts: Any,
) -> dict[str, Any]:
    """Write the filtered adapter dir; returns the report."""
    out = Path(out)
    check_output(out, overwrite)
    fa = filter_adapter(base, adapter, spec, **opts)
    if not fa.kept:
        raise TaiaError(
            f"spec {spec.name!r} keeps no adapter module; use --format merged to write the base model"
        )
    with atomic_dir(out, overwrite) as tmp:
        save_file(fa.tensors, str(tmp / ADAPTER_SAFE), metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(fa.config, indent=2) + "\n")
        copy_aux(fa.adapter_dir, tmp)
        report = adapter_report(spec, fa, "adapter")
        write_report(tmp, report, opts.get("extra_files"))
    return report


def adapter_report(spec: TaiaSpec, fa: FilteredAdapter, fmt: str) -> dict:
    inputs = {"base": describe_input(fa.base_dir), "adapter": describe_input(fa.adapter_dir, ADAPTER_CONFIG)}
    return build_report(
        f"lora-{fmt}",
        inputs,
        spec,
        summarize(fa.plan.modules, fa.numels),
        kept_modules=fa.kept,
        dropped_modules=fa.dropped,
    )
