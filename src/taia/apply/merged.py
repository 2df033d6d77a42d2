"""LoRA adapter → merged TAIA checkpoint: filter the adapter, then let PEFT merge it into the base.

Exercised by `taia apply --base B --adapter A --out O --format merged`. A full disk while writing (safetensors
raises its own SafetensorError for it) is one line naming the output, and nothing of it is left
(`taia.io.atomic`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from taia.apply.adapter import adapter_report, filter_adapter
from taia.errors import TaiaError
from taia.io.atomic import atomic_dir, check_output, write_errors
from taia.io.hf import ADAPTER_CONFIG, ADAPTER_SAFE, copy_aux, load_kwargs
from taia.provenance import write_report
from taia.spec import TaiaSpec

# save_pretrained writes these itself (from the loaded model); the rest come from the base dir.
_WRITTEN_BY_SAVE = frozenset({"config.json", "generation_config.json"})


def load_causal_lm(path: Path, trust_remote_code: bool = False, allow_pickle: bool = False) -> nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        str(path), dtype="auto", **load_kwargs(allow_pickle, trust_remote_code)
    )


def merge_adapter(model: nn.Module, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Module:
    """PEFT does the merge: write the (filtered) adapter to a temp dir, load it, merge_and_unload."""
    from peft import PeftModel

    with tempfile.TemporaryDirectory(prefix="taia-adapter-") as d:
        with write_errors(Path(d)):  # the temp dir's disk can be full too
            save_file(tensors, str(Path(d) / ADAPTER_SAFE), metadata={"format": "pt"})
            (Path(d) / ADAPTER_CONFIG).write_text(json.dumps(config))
        peft_model = PeftModel.from_pretrained(model, d)
        return peft_model.merge_and_unload()


def non_finite(model: nn.Module, merged: list[str]) -> list[str]:
    """Floating-point parameters under the `merged` module paths that hold NaN or ±Inf.

    Only the merged modules can have gained one: a full isfinite pass over the whole model cost ~4 s of a
    1.2B bf16 merge. aminmax propagates NaN and keeps ±Inf, so its two numbers decide, without isfinite's
    full-size bool mask (~25× slower)."""
    prefixes = tuple(f"{m}." for m in merged)
    bad = []
    for name, p in model.named_parameters():
        if p.is_floating_point() and p.numel() and name.startswith(prefixes):
            lo, hi = torch.aminmax(p.detach())
            if not (torch.isfinite(lo) and torch.isfinite(hi)):
                bad.append(name)
    return bad


def apply_adapter_merged(
    base: str | Path,
    adapter: str | Path,
    out: str | Path,
    spec: TaiaSpec,
    overwrite: bool = False,
    max_shard_size: str = "5GB",
    **opts: Any,
) -> dict[str, Any]:
    """Write a merged HF checkpoint (sharded safetensors, config, tokenizer from base); returns the report."""
    out = Path(out)
    check_output(out, overwrite)
    fa = filter_adapter(base, adapter, spec, base_weights=True, **opts)  # base weights checked too
    base_dir = fa.base_dir
    model = load_causal_lm(base_dir, opts.get("trust_remote_code", False), opts.get("allow_pickle", False))
    if fa.kept:
        model = merge_adapter(model, fa.config, fa.tensors)
    bad = non_finite(model, [m.replace(".base_layer", "") for m in fa.kept])
    if bad:
        raise TaiaError(f"merging produced NaN/Inf in {len(bad)} tensor(s), e.g. {bad[0]}")
    with atomic_dir(out, overwrite) as tmp:
        model.save_pretrained(str(tmp), max_shard_size=max_shard_size)  # type: ignore[operator]
        copy_aux(base_dir, tmp, skip=_WRITTEN_BY_SAVE)
        report = adapter_report(spec, fa, "merged")
        write_report(tmp, report, opts.get("extra_files"))
    return report
