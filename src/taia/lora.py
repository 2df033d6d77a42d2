"""A LoRA adapter's tensors grouped by the base-model module they wrap, and whether they fit a base.

Used by the input checker (taia.check) of every verb that takes `--adapter`, by `taia apply` and by
`taia inspect`. Exercised by `taia apply --base B --adapter A --out O` and tests/test_errors.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from taia.classify import ModelMap
from taia.errors import TaiaError

PEFT_PREFIX = "base_model.model."


@dataclass
class LoraModule:
    """All adapter tensors that belong to one wrapped module of the base model."""

    path: str  # module path in the base model, e.g. model.layers.0.self_attn.q_proj
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # adapter key → tensor

    @property
    def is_lora(self) -> bool:
        return any(".lora_" in k for k in self.tensors)

    @property
    def unwrapped(self) -> str:
        # PEFT nests one ParamWrapper per targeted parameter of a module (`experts.base_layer.lora_A`).
        return self.path.replace(".base_layer", "")


def group_modules(tensors: dict[str, torch.Tensor]) -> dict[str, LoraModule]:
    """Adapter keys grouped by the module they wrap (`…q_proj.lora_A.weight` → `…q_proj`)."""
    modules: dict[str, LoraModule] = {}
    for key, t in tensors.items():
        parts = key.removeprefix(PEFT_PREFIX).split(".")
        cut = next((i for i, p in enumerate(parts) if p.startswith("lora_")), len(parts) - 1)
        if cut == len(parts) - 1 and parts[cut - 1] == "base_layer":
            cut -= 1  # PEFT saves a LoRA'd embedding's base weight beside its A/B: it travels with them
        path = ".".join(parts[:cut])
        modules.setdefault(path, LoraModule(path)).tensors[key] = t
    return modules


def check_fits(m: LoraModule, mm: ModelMap) -> None:
    """The wrapped module must exist in the base and agree on in/out features (A: [r, in], B: [out, r])."""
    path = mm.find_module(m.unwrapped)
    if path is None:
        raise TaiaError(f"adapter does not fit this base ({mm.model_type}): it has no module {m.path}")
    if not m.is_lora:
        _check_full_copy(m, path, mm)
        return
    io = mm.io_features.get(path)
    if io is None:
        return  # a parameter-targeted or custom layer: existence is all we can check
    for key, t in m.tensors.items():
        part = key.rsplit(".", 2)[-2] if key.endswith(".weight") else key.rsplit(".", 1)[-1]
        want = _EXPECTED.get(part)
        if want and t.dim() == 2 and t.shape[want[0]] != io[want[1]]:
            raise TaiaError(
                f"adapter does not fit this base ({mm.model_type}): {key} has shape {list(t.shape)}, "
                f"module {m.path} has in/out features {list(io)}"
            )


def _check_full_copy(m: LoraModule, path: str, mm: ModelMap) -> None:
    """A `modules_to_save` copy must have the base parameter's shape (e.g. not a resized vocabulary)."""
    for key, t in m.tensors.items():
        want = mm.shapes.get(f"{path}.{key.rsplit('.', 1)[-1]}")
        if want is not None and tuple(t.shape) != want:
            raise TaiaError(
                f"adapter does not fit this base ({mm.model_type}): {key} has shape {list(t.shape)}, "
                f"the base's is {list(want)}"
            )


# LoRA part → (tensor dim, index into (in, out)) that must agree with the base module.
_EXPECTED = {"lora_A": (1, 0), "lora_B": (0, 1), "lora_embedding_A": (1, 0), "lora_embedding_B": (0, 1)}
