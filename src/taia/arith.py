"""The arithmetic of TAIA, pure (no I/O): base + λ·Δ for one tensor, and λ folded into a LoRA module.

Shared by the writers and the in-memory paths, so every one computes a fractional λ the same way: the
checkpoint writer (`taia apply --finetuned F`), the adapter writer (`taia apply --adapter A`),
`apply_model` and the eval variants (`taia eval --variants`). Exercised by tests/test_invariants.py.
"""

from __future__ import annotations

import torch

from taia.errors import TaiaError
from taia.lora import LoraModule

# Tensors that scale linearly with the update: multiplying them by λ gives base + λ·Δ.
SCALED_PARTS = ("lora_B", "lora_embedding_B")


def interpolate(base: torch.Tensor, finetuned: torch.Tensor, lam: float, name: str) -> torch.Tensor:
    """base + λ·(finetuned − base) in fp32, cast back to the fine-tune's dtype; NaN/Inf is an error."""
    b = base.to(device=finetuned.device, dtype=torch.float32)  # in-memory models may live on a GPU
    # Out of place: `.to` returns `base` itself when it is already fp32 there, and it must not change.
    out = torch.add(b, finetuned.to(torch.float32) - b, alpha=lam).to(finetuned.dtype)
    if out.is_floating_point() and not torch.isfinite(out).all():
        raise TaiaError(f"λ={lam:g} produced NaN/Inf in {name}")
    return out


def partial_copy_error(lam: float, path: str) -> TaiaError:
    """A fractional λ on a `modules_to_save` copy: a whole replacement module has no update to scale."""
    return TaiaError(f"λ={lam:g} on {path}: a modules_to_save copy can only be kept (1) or dropped (0)")


def fold(m: LoraModule, lam: float) -> dict[str, torch.Tensor]:
    """Scale the module's update by λ through its B matrices; refuse what is not linear in λ."""
    for key, t in m.tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise TaiaError(f"the adapter holds NaN/Inf in {key}")
    if lam == 1.0:
        return dict(m.tensors)
    if not m.is_lora:
        raise partial_copy_error(lam, m.path)
    if any("lora_magnitude_vector" in k for k in m.tensors):
        raise TaiaError(f"λ={lam:g} on DoRA module {m.path}: DoRA updates are not linear in λ; use 0 or 1")
    out = {}
    for key, t in m.tensors.items():
        scaled = any(f".{p}." in key or key.endswith(f".{p}") for p in SCALED_PARTS)
        out[key] = (t.float() * lam).to(t.dtype) if scaled else t
        if scaled and not torch.isfinite(out[key]).all():
            raise TaiaError(f"λ={lam:g} produced NaN/Inf in {key}")
    return out


def blend(base: torch.Tensor, finetuned: torch.Tensor, lam: float, name: str) -> torch.Tensor:
    """The tensor for λ: λ ∈ {0, 1} is one of the two as it is (bytes, no arithmetic: switching back and
    forth is exact), anything else `interpolate`."""
    source = {0.0: base, 1.0: finetuned}.get(lam)
    return source if source is not None else interpolate(base, finetuned, lam, name)
