"""All variants (base, vanilla, TAIA, TAIF, any spec) from one loaded model, switched in place.

A LoRA adapter is loaded once with PEFT; a variant sets every LoRA layer's scale to its λ
(`taia.apply.apply_model`), which is absolute, so switching in any order is exact. A full fine-tune is
loaded once, and CPU copies of the base and fine-tuned tensors that any requested variant changes are
kept; a variant writes base + λ·Δ into the live weights. MoLoRA experts are switched on or off as a whole.
Exercised by `taia eval --variants base,vanilla,taia,taif` and tests/test_eval.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from taia.arith import blend
from taia.classify import map_model
from taia.errors import TaiaError
from taia.eval.loracl import ROUTER
from taia.io.hf import load_kwargs
from taia.molora import load_molora, read_molora_tensors
from taia.plan import make_plan
from taia.spec import TaiaSpec, load_spec


@dataclass
class Variants:
    """A loaded model that can become any spec's variant in place."""

    model: nn.Module
    specs: dict[str, TaiaSpec]
    kind: str  # "base" (no fine-tune), "adapter" or "full"
    _base: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _tuned: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    current: str | None = None

    def switch(self, name: str) -> nn.Module:
        """Make the model variant `name` (a key of `specs`) and return it."""
        spec = self.specs[name]
        if self.kind == "adapter":
            _switch_adapter(self.model, spec)
        elif self.kind == "full":
            _switch_full(self.model, spec, self._base, self._tuned)
        elif spec.keeps_anything():
            raise TaiaError(f"variant {name!r} needs a fine-tune: give --adapter or --finetuned")
        self.current = name
        return self.model


def resolve_specs(names: list[str]) -> dict[str, TaiaSpec]:
    """Variant name → spec: presets by name, YAML files by their stem. `loracl` is no spec (it routes
    between base and vanilla, `taia.eval.loracl`) and is skipped: the runner handles it."""
    specs = {}
    for name in names:
        if name == ROUTER:
            continue
        spec = load_spec(name)
        key = spec.name if name.endswith((".yaml", ".yml")) else name
        if key in specs or key == ROUTER:  # results, logs and the report are keyed by this name
            raise TaiaError(f"two variants are named {key!r}: give the spec file another name")
        specs[key] = spec
    return specs


def variant_names(names: list[str], specs: dict[str, TaiaSpec]) -> list[str]:
    """Every variant's key (spec keys and `loracl`) in the order `names` lists them."""
    keys = iter(specs)
    return [ROUTER if name == ROUTER else next(keys) for name in names]


def load_variants(
    model_dir: Path,
    adapter: Path | None,
    finetuned: Path | None,
    specs: dict[str, TaiaSpec],
    dtype: Any,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
) -> Variants:
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype, **load_kwargs(allow_pickle, trust_remote_code)}
    if finetuned is not None:
        model = AutoModelForCausalLM.from_pretrained(str(finetuned), **kwargs)
        base = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs).state_dict()
        moving = _changing_params(model, specs)
        tuned = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if n in moving}
        kept_base = {n: base[n].to("cpu") for n in moving}
        return Variants(model.eval(), specs, "full", kept_base, tuned)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if adapter is None:
        return Variants(model.eval(), specs, "base")
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter))
    _attach_molora(peft_model, adapter)
    return Variants(peft_model.eval(), specs, "adapter")


def _changing_params(model: nn.Module, specs: dict[str, TaiaSpec]) -> set[str]:
    """Parameters whose λ is not 1 in some variant: only these need base and fine-tuned copies."""
    mm = map_model(model)
    names = [n for n, _ in model.named_parameters()]
    plans = [make_plan(names, mm, spec) for spec in specs.values()]
    return {n for plan in plans for n, d in plan.items() if d.lam != 1.0}


@torch.no_grad()
def _switch_full(
    model: nn.Module, spec: TaiaSpec, base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor]
) -> None:
    params = dict(model.named_parameters())
    plan = make_plan(list(params), map_model(model), spec)
    for name, d in plan.items():
        if name in tuned:  # λ ∈ {0, 1} copies bytes, so switching back and forth is exact
            params[name].copy_(blend(base[name], tuned[name], d.lam, name))
        elif d.lam != 1.0:
            raise TaiaError(f"{name} was not prepared for λ={d.lam:g}; load the variants together")


def _switch_adapter(model: nn.Module, spec: TaiaSpec) -> None:
    """LoRA scales, `modules_to_save` copies and MoLoRA experts, all from one plan (`apply_model`)."""
    from taia.apply.model import apply_model

    apply_model(model, spec)


def _attach_molora(peft_model: Any, adapter: Path) -> None:
    if read_molora_tensors(adapter) is not None:
        load_molora(peft_model, adapter)
