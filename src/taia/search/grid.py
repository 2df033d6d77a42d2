"""The candidate specs of `taia search`, in preference order, with equivalent ones merged.

Pure functions over a `Grid`, the number of decoder layers and the tensor names the fine-tune changes.
Two candidates that give every changed tensor the same λ are the same model (with a LoRA adapter, whether
norms come from the base or the fine-tune changes nothing: LoRA never touched them), so only the first is
evaluated. The λ come from `make_plan`, as in `taia apply`, so a tensor no group claims is refused with
apply's error. Exercised by `taia search` and tests/test_search.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from taia.classify import ModelMap
from taia.plan import make_plan
from taia.search.config import Grid, Rest
from taia.spec import GroupRule, TaiaSpec

FFN_GROUPS = ("ffn", "experts", "router")
REST_GROUPS = ("norm", "embed", "head")


def candidates(grid: Grid, num_layers: int, all_or_nothing_ffn: bool = False) -> list[TaiaSpec]:
    """Every grid point as a spec, most preferred first (see `preference`).

    `all_or_nothing_ffn`: MoLoRA experts can only be kept or dropped whole, so other FFN points are skipped.
    """
    specs = []
    for lam_ffn in grid.ffn:
        for depth in grid.ffn_depth if lam_ffn != 0 else [1.0]:
            if all_or_nothing_ffn and (lam_ffn not in (0.0, 1.0) or depth < 1.0):
                continue
            for lam_attn in grid.attn:
                for rest in grid.rest:
                    specs.append(make_spec(lam_attn, lam_ffn, _layers(depth, num_layers), rest))
    return sorted(specs, key=lambda s: preference(s, num_layers))


def _layers(depth: float, num_layers: int) -> tuple[int, int] | None:
    """The first ⌈depth·L⌉ layers as an inclusive range; None for all of them."""
    last = math.ceil(depth * num_layers) - 1
    return None if last >= num_layers - 1 else (0, max(last, 0))


def make_spec(lam_attn: float, lam_ffn: float, layers: tuple[int, int] | None, rest: Rest) -> TaiaSpec:
    """One grid point, named after its coordinates (`a1-f0.5-L0-7-rbase`), safe as a file name."""
    ffn = GroupRule(lam=lam_ffn, layers=layers)
    rest_lam = 1.0 if rest == "finetuned" else 0.0
    groups = {"attn": GroupRule(lam=lam_attn), **dict.fromkeys(FFN_GROUPS, ffn)}
    groups |= dict.fromkeys(REST_GROUPS, GroupRule(lam=rest_lam))
    span = f"-L{layers[0]}-{layers[1]}" if layers else ""
    name = f"a{lam_attn:g}-f{lam_ffn:g}{span}-r{'ft' if rest == 'finetuned' else 'base'}"
    description = f"search grid point: attention λ={lam_attn:g}, FFN λ={lam_ffn:g}"
    description += f" on layers {layers[0]}–{layers[1]}" if layers else ""
    description += f", norms/embeddings/head from the {rest}"
    return TaiaSpec(name=name, description=description, groups=groups)


def preference(spec: TaiaSpec, num_layers: int) -> tuple[float, float, float]:
    """Ties on the dev set go to the spec that keeps less of the FFN update (the paper's finding), then
    takes less outside the layer stack from the fine-tune, then has attention λ nearer 1 (TAIA)."""
    ffn = spec.groups["ffn"]
    share = 1.0 if ffn.layers is None else (ffn.layers[1] - ffn.layers[0] + 1) / num_layers
    return (abs(ffn.lam) * share, spec.groups["norm"].lam, abs(1.0 - spec.groups["attn"].lam))


def signature(spec: TaiaSpec, names: Iterable[str], mm: ModelMap) -> tuple[float, ...]:
    """λ of every changed tensor, in a fixed order: equal signatures are the same model. A grid point
    that keeps nothing here is no error: it is the base model, a candidate like any other."""
    plan = make_plan(sorted(names), mm, spec, empty_ok=True)
    return tuple(d.lam for d in plan.values())


def distinct(specs: list[TaiaSpec], names: Iterable[str], mm: ModelMap) -> tuple[list[TaiaSpec], dict]:
    """The first spec of each signature, and {dropped name: the kept spec it equals}."""
    names = list(names)
    seen: dict[tuple[float, ...], TaiaSpec] = {}
    same: dict[str, str] = {}
    for spec in specs:
        key = signature(spec, names, mm)
        if key in seen:
            same[spec.name] = seen[key].name
        else:
            seen[key] = spec
    return list(seen.values()), same
