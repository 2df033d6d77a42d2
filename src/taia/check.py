"""The one input checker of every verb that loads weights: `taia apply`, `inspect` (with or without
`--hidden-states`), `eval`, `search` and `run` call `check_inputs` before they write anything.

From configs and safetensors headers only (an adapter, being small, is read whole) it refuses, in one line
naming the input: a path that is neither a local dir nor on the hub; pickle weights without allow_pickle;
a missing, truncated or corrupt weights file; a fine-tune of another architecture; an adapter whose
modules or shapes do not fit the base; a spec whose layer range the model does not have; and, for a full
fine-tune under each spec (`full_plan`), a tensor the spec takes from a checkpoint that lacks it, an extra
fine-tune tensor that no override assigns, or a shape or dtype kind that differs from the base's.
Exercised by tests/test_refusals.py and tests/test_refusals_verbs.py (the table in docs/refusals.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from taia.classify import ModelMap, model_map
from taia.errors import TaiaError
from taia.io.checkpoint import FLOAT_DTYPES, Checkpoint, open_checkpoint
from taia.io.hf import CONFIG_ONLY, load_adapter, load_config, resolve_dir
from taia.lora import check_fits, group_modules
from taia.molora import molora_numels
from taia.plan import Plan, check_layers, make_plan
from taia.spec import TaiaSpec


@dataclass
class Inputs:
    """What the checker resolved and opened; the verb reuses it, so nothing is read twice."""

    base_dir: Path
    mm: ModelMap
    base: Checkpoint | None = None  # None when only the base's config was needed
    finetuned_dir: Path | None = None
    finetuned: Checkpoint | None = None
    adapter_dir: Path | None = None
    adapter_config: dict[str, Any] = field(default_factory=dict)
    adapter_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    plans: list[Plan] = field(default_factory=list)  # one per spec, for a full fine-tune


def check_inputs(
    base: str | Path,
    adapter: str | Path | None = None,
    finetuned: str | Path | None = None,
    specs: Sequence[TaiaSpec] = (),
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    base_weights: bool = True,
) -> Inputs:
    """Resolve and check a base, at most one fine-tune of it, and the specs it will be used with.

    `base_weights=False`: only the base's config is needed (a hub base is not downloaded whole)."""
    need_base = base_weights or finetuned is not None
    base_dir = resolve_dir(base, allow_patterns=None if need_base else CONFIG_ONLY)
    ft_dir = resolve_dir(finetuned) if finetuned is not None else None
    config = load_config(base_dir, trust_remote_code)
    if ft_dir is not None:
        check_same_arch(base_dir, config, ft_dir, load_config(ft_dir, trust_remote_code))
    mm = model_map(config, trust_remote_code=trust_remote_code)
    for spec in specs:
        check_layers(spec, mm)
    inputs = Inputs(base_dir, mm)
    if need_base:
        inputs.base = open_checkpoint(base_dir, allow_pickle)
    if adapter is not None:
        _check_adapter(inputs, resolve_dir(adapter), allow_pickle)
        _check_adapter_plans(inputs, specs)
    if ft_dir is not None and inputs.base is not None:
        inputs.finetuned_dir, inputs.finetuned = ft_dir, open_checkpoint(ft_dir, allow_pickle)
        inputs.plans = [full_plan(inputs.base, inputs.finetuned, mm, spec) for spec in specs]
    return inputs


def check_same_arch(base_dir: Path, base_cfg: Any, ft_dir: Path, ft_cfg: Any) -> None:
    if base_cfg.model_type != ft_cfg.model_type:
        raise TaiaError(
            f"base {base_dir} is a {base_cfg.model_type} model but the fine-tune {ft_dir} is a "
            f"{ft_cfg.model_type} model"
        )


def _check_adapter(inputs: Inputs, adapter_dir: Path, allow_pickle: bool) -> None:
    """A LoRA adapter whose every module exists in the base with matching in/out features."""
    config, tensors = load_adapter(adapter_dir, allow_pickle)
    if config.get("peft_type", "LORA") != "LORA":
        raise TaiaError(
            f"{adapter_dir}: only LoRA adapters are supported, got peft_type={config.get('peft_type')}"
        )
    for m in group_modules(tensors).values():
        check_fits(m, inputs.mm)
    inputs.adapter_dir, inputs.adapter_config, inputs.adapter_tensors = adapter_dir, config, tensors


def _check_adapter_plans(inputs: Inputs, specs: Sequence[TaiaSpec]) -> None:
    """Each spec decided over the adapter's modules (and any MoLoRA beside it), as `apply_model` and
    `filter_adapter` will: an override that matches nothing, or an unassigned module, is refused here,
    before any output exists. A spec that keeps nothing is left to the verb (a search grid point may)."""
    assert inputs.adapter_dir is not None
    modules = [*group_modules(inputs.adapter_tensors), *(molora_numels(inputs.adapter_dir) or {})]
    for spec in specs:
        make_plan((), inputs.mm, spec, modules=modules, empty_ok=True)


def full_plan(bs: Checkpoint, ft: Checkpoint, mm: ModelMap, spec: TaiaSpec) -> Plan:
    """One decision per tensor of base ∪ fine-tune, each checked against what the output needs (headers
    only): every base tensor is written (from the base where λ = 0), so the output is always complete."""
    names = [*ft.refs, *(n for n in bs.refs if n not in ft.refs)]
    plan = make_plan(names, mm, spec)
    for name, d in plan.items():
        _check_tensor(name, d.lam, bs, ft, spec)
    return plan


def _check_tensor(name: str, lam: float, bs: Checkpoint, ft: Checkpoint, spec: TaiaSpec) -> None:
    b, f = bs.refs.get(name), ft.refs.get(name)
    if f is None:
        if lam != 0.0:
            raise TaiaError(
                f"fine-tune {ft.root} has no tensor {name}, which spec {spec.name!r} takes from it "
                f"(λ={lam:g}); is the checkpoint complete?"
            )
        return
    if b is None:
        if not any(o.matches(name) for o in spec.overrides):
            raise TaiaError(
                f"fine-tune {ft.root} has a tensor {name} that the base {bs.root} lacks; "
                "keep it with a spec override (pattern + lambda: 1) or remove it"
            )
        if lam != 1.0:
            raise TaiaError(f"base checkpoint {bs.root} has no tensor {name} (needed for λ={lam:g})")
        return
    if b.shape != f.shape:
        raise TaiaError(
            f"shape mismatch for {name}: base {list(b.shape)} vs fine-tune {list(f.shape)} in {ft.root} "
            "(is this the fine-tune's base model?)"
        )
    if _kind(b.dtype) != _kind(f.dtype):
        raise TaiaError(f"dtype mismatch for {name}: base {b.dtype} vs fine-tune {f.dtype} in {ft.root}")


def _kind(dtype: str) -> str:
    """Float widths may differ (an fp32 fine-tune of a bf16 base is common); float vs integer may not."""
    return "float" if dtype in FLOAT_DTYPES else dtype
