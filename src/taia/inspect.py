"""`taia inspect`: parameter counts per group × layer, and the relative update norm ‖ΔW‖/‖W‖
when there is a delta.

    taia inspect --model M
    taia inspect --base B --adapter A        # ΔW = scaling · B·A per LoRA module
    taia inspect --base B --finetuned F      # ΔW = W_ft − W_base, streamed tensor by tensor

Exercised by tests/test_inspect.py.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import torch

from taia.check import check_inputs
from taia.classify import GROUPS, ModelMap, ParamInfo
from taia.config import InspectConfig
from taia.io.checkpoint import Checkpoint
from taia.lora import LoraModule, group_modules
from taia.spec import load_spec

Key = tuple[int | None, str]  # (layer, group)


@dataclass
class Cell:
    params: int = 0
    delta_sq: float = 0.0
    weight_sq: float = 0.0

    @property
    def rel_update(self) -> float | None:
        return math.sqrt(self.delta_sq / self.weight_sq) if self.weight_sq > 0 else None


def inspect(cfg: InspectConfig) -> dict[str, Any]:
    """The inspect table as data: one row per (layer, group) with params and, if any, rel_update."""
    path = cfg.model or cfg.base
    assert path is not None
    # The same checks as `taia apply` (a fine-tune must fit the base as `vanilla` would take it whole);
    # a model alone needs no weights: the counts come from its config.
    inputs = check_inputs(
        path,
        cfg.adapter,
        cfg.finetuned,
        [load_spec("vanilla")] if cfg.finetuned else [],
        allow_pickle=cfg.allow_pickle,
        trust_remote_code=cfg.trust_remote_code,
        base_weights=cfg.model is None,
    )
    mm = inputs.mm
    cells: dict[Key, Cell] = defaultdict(Cell)
    for name, shape in mm.shapes.items():
        info = mm.params[name]
        cells[(info.layer, info.group)].params += math.prod(shape)
    if inputs.base is not None and inputs.finetuned is not None:
        _full_deltas(mm, inputs.base, inputs.finetuned, cells)
    elif inputs.base is not None and inputs.adapter_dir is not None:
        _lora_deltas(mm, inputs.base, inputs.adapter_config, inputs.adapter_tensors, cells)
    rows = [
        {"layer": layer, "group": group, "params": c.params, "rel_update": c.rel_update}
        for (layer, group), c in sorted(cells.items(), key=lambda kv: (_layer_order(kv[0][0]), kv[0][1]))
    ]
    has_delta = bool(cfg.finetuned or cfg.adapter)
    return {"model_type": mm.model_type, "num_layers": mm.num_layers, "has_delta": has_delta, "rows": rows}


def _layer_order(layer: int | None) -> int:
    return -1 if layer is None else layer


def _full_deltas(mm: ModelMap, base: Checkpoint, ft: Checkpoint, cells: dict[Key, Cell]) -> None:
    for name, ref in ft.refs.items():
        if name not in base.refs or base.refs[name].shape != ref.shape:
            continue
        b = base.get(name)
        if not b.is_floating_point():
            continue
        b64, f64 = b.to(torch.float64), ft.get(name).to(torch.float64)
        _add(cells, mm.lookup(name), (f64 - b64).square().sum().item(), b64.square().sum().item())


def _lora_deltas(
    mm: ModelMap,
    base: Checkpoint,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    cells: dict[Key, Cell],
) -> None:
    weights = _weight_keys(mm, base)
    for m in group_modules(tensors).values():
        delta_sq = _lora_delta_sq(m, config)
        key = weights.get(mm.find_module(m.unwrapped) or "")
        if delta_sq is None or key is None:
            continue
        w = base.get(key).to(torch.float64)
        _add(cells, mm.lookup(m.path), delta_sq, w.square().sum().item())


def _weight_keys(mm: ModelMap, base: Checkpoint) -> dict[str, str]:
    """Module path → the base checkpoint key of its `weight`."""
    out = {}
    for key in base.refs:
        stem, _, leaf = key.rpartition(".")
        module = mm.find_module(stem)
        if leaf == "weight" and module is not None:
            out[module] = key
    return out


def _lora_delta_sq(m: LoraModule, config: dict[str, Any]) -> float | None:
    """‖scaling · B·A‖² via the r×r Gram matrices: tr((BᵀB)(AAᵀ)), never the full out×in product."""
    a = next((t for k, t in m.tensors.items() if ".lora_A." in k or k.endswith("lora_embedding_A")), None)
    b = next((t for k, t in m.tensors.items() if ".lora_B." in k or k.endswith("lora_embedding_B")), None)
    if a is None or b is None or a.dim() != 2 or b.dim() != 2 or b.shape[1] != a.shape[0]:
        return None
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    scaling = _scaling(m, config, rank=a.shape[0])
    return float(((b64.T @ b64) * (a64 @ a64.T)).sum().item()) * scaling**2


def _scaling(m: LoraModule, config: dict[str, Any], rank: int) -> float:
    alpha = config.get("lora_alpha", rank)
    for pattern, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", m.unwrapped):  # PEFT matches a pattern at the path's end
            alpha = value
            break
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _add(cells: dict[Key, Cell], info: ParamInfo, delta_sq: float, weight_sq: float) -> None:
    cell = cells[(info.layer, info.group)]
    cell.delta_sq += delta_sq
    cell.weight_sq += weight_sq


def render(result: dict[str, Any]) -> str:
    """Text table: one row per layer, one column per group; cells are params, plus ‖ΔW‖/‖W‖ if any."""
    groups = [g for g in GROUPS if any(r["group"] == g for r in result["rows"])]
    table: dict[Any, dict[str, str]] = defaultdict(dict)
    for r in result["rows"]:
        cell = _human(r["params"])
        if result["has_delta"]:
            cell += f" {r['rel_update']:.2e}" if r["rel_update"] is not None else " -"
        table[r["layer"]][r["group"]] = cell
    header = ["layer", *groups]
    lines = [
        [("-" if layer is None else str(layer)), *(row.get(g, "") for g in groups)]
        for layer, row in table.items()
    ]
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=False)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    title = f"{result['model_type']}, {result['num_layers']} layers"
    if result["has_delta"]:
        title += " — cells: params ‖ΔW‖/‖W‖"
    return "\n".join([title, fmt.format(*header), *(fmt.format(*row) for row in lines)])


def _human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)
