"""TAIA on a full fine-tune: stream base + fine-tuned checkpoints into a new one, tensor by tensor.

Output shards mirror the fine-tune's. A tensor with λ = 1 is byte-copied from the fine-tune, λ = 0 from
the base (no arithmetic, bit-exact, no Python buffer); a fractional λ is computed in fp32 and cast back.
The output has the fine-tune's dtypes, tensor by tensor (so the fine-tune's config.json stays true): a base
tensor of another float width (an fp32 base of a bf16 fine-tune) is cast to the fine-tune's.
Never more than one tensor pair in memory. The inputs are checked first (taia.check: every base tensor
is written, shapes agree) and every float byte written is scanned for NaN/Inf unless told not to.
Exercised by `taia apply --base B --finetuned F --out O`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from taia.arith import interpolate
from taia.check import Inputs, check_inputs
from taia.errors import TaiaError
from taia.io.atomic import atomic_dir, check_output
from taia.io.checkpoint import (
    DTYPES,
    FLOAT_DTYPES,
    SAFE_INDEX,
    SAFE_SINGLE,
    Checkpoint,
    Item,
    TensorRef,
    write_index,
    write_shard,
)
from taia.io.finite import is_finite
from taia.io.hf import copy_aux
from taia.plan import Plan, summarize
from taia.provenance import build_report, describe_input, write_report
from taia.spec import TaiaSpec


def apply_checkpoint(
    base: str | Path,
    finetuned: str | Path,
    out: str | Path,
    spec: TaiaSpec,
    overwrite: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    extra_files: Mapping[str, str] | None = None,
    check_finite: bool = True,
) -> dict[str, Any]:
    """Write the TAIA checkpoint for (base, finetuned) under `spec` to `out`; returns the report.

    Every tensor of the base is written (a tensor the fine-tune lacks, from the base where λ = 0);
    `check_finite` refuses NaN/Inf in anything written (off: the inputs are trusted)."""
    out = Path(out)
    check_output(out, overwrite)
    inputs = check_inputs(
        base,
        finetuned=finetuned,
        specs=[spec],
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
    )
    ft, bs, ft_dir = inputs.finetuned, inputs.base, inputs.finetuned_dir
    assert ft is not None and bs is not None and ft_dir is not None
    plan = inputs.plans[0]
    layout = _layout(ft, plan)
    with atomic_dir(out, overwrite) as tmp:
        total = _write_shards(tmp, layout, plan, ft, bs, check_finite)
        if (ft_dir / SAFE_INDEX).is_file() or len(layout) > 1:
            write_index(tmp, {n: shard for shard, names in layout.items() for n in names}, total)
        copy_aux(ft_dir, tmp)  # config, generation config, tokenizer, chat template
        report = _report(inputs, spec, plan)
        write_report(tmp, report, extra_files)
    return report


def _report(inputs: Inputs, spec: TaiaSpec, plan: Plan) -> dict[str, Any]:
    ft, bs, ft_dir = inputs.finetuned, inputs.base, inputs.finetuned_dir
    assert ft is not None and bs is not None and ft_dir is not None
    return build_report(
        "full-checkpoint",
        {
            "base": describe_input(inputs.base_dir, index=SAFE_INDEX),
            "finetuned": describe_input(ft_dir, index=SAFE_INDEX),
        },
        spec,
        summarize(plan, {n: (ft.refs.get(n) or bs.refs[n]).numel for n in plan}),
        base_only_tensors=sorted(n for n in plan if n not in ft.refs),  # written from the base
    )


def _layout(ft: Checkpoint, plan: Plan) -> dict[str, list[str]]:
    """Output shard → tensor names: the fine-tune's shards, and the tensors only the base has (λ = 0,
    checked) at the end of the last one, so that the output holds every tensor of the model."""
    layout = {shard: list(names) for shard, names in ft.shards.items()} or {SAFE_SINGLE: []}
    last = next(reversed(layout))
    layout[last] += [n for n in plan if n not in ft.refs]
    return layout


def _write_shards(
    tmp: Path,
    layout: dict[str, list[str]],
    plan: Plan,
    ft: Checkpoint,
    bs: Checkpoint,
    check_finite: bool,
) -> int:
    total, ft_float = 0, _one_float_dtype(ft)
    size = sum((ft.refs[n] if plan[n].lam != 0.0 else bs.refs[n]).numel for n in plan)
    with tqdm(total=size, unit="param", unit_scale=True, desc="taia apply", disable=None) as bar:
        for shard, names in layout.items():
            want = {n: ft.refs[n].dtype if n in ft.refs else ft_float for n in names}
            items: list[Item] = [(n, _source(n, plan[n].lam, ft, bs, check_finite, want[n])) for n in names]
            starts = [ft.refs[n].start for n in names if n in ft.refs]
            align = min(starts) if ft.pickled is None and starts else None
            total += write_shard(tmp / shard, items, align_with=align, check_finite=check_finite)
            bar.update(sum((ft.refs[n] if plan[n].lam != 0.0 else bs.refs[n]).numel for n in names))
    return total


def _one_float_dtype(ft: Checkpoint) -> str | None:
    """The fine-tune's float dtype when all its float tensors share one (what a tensor only the base has
    is written in); None for a mixed fine-tune."""
    found = {r.dtype for r in ft.refs.values() if r.dtype in FLOAT_DTYPES}
    return found.pop() if len(found) == 1 else None


def _source(
    name: str, lam: float, ft: Checkpoint, bs: Checkpoint, check_finite: bool, want: str | None
) -> TensorRef | torch.Tensor:
    """Where the output bytes of one tensor come from: a byte range of a source file, or a new tensor.

    The output has the fine-tune's dtypes (so its config.json, copied from the fine-tune, stays true): a
    float tensor taken from the base (λ = 0) in another width is cast to `want`, the fine-tune's dtype of
    that tensor; a fractional λ is cast to it by `interpolate`."""
    if lam not in (0.0, 1.0):
        return interpolate(bs.get(name), ft.get(name), lam, name)
    ckpt = ft if lam == 1.0 else bs
    ref = ckpt.refs[name]
    cast = want is not None and want in DTYPES and ref.dtype != want and ref.dtype in FLOAT_DTYPES
    if ckpt.pickled is None and not cast:
        return ref  # scanned for NaN/Inf by the writer, beside the copy
    t = ckpt.get(name)
    out = t.to(DTYPES[want]) if cast and want is not None else t
    if check_finite and not is_finite(out):
        if cast and is_finite(t):
            raise TaiaError(
                f"{name} of {ckpt.root} does not fit the fine-tune's {want} (±Inf once cast); refusing to "
                "write it"
            )
        raise TaiaError(f"{ckpt.root} holds NaN/Inf in {name}; refusing to write it")
    return out
