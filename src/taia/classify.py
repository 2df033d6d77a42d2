"""Structure-aware parameter classifier: which block of which decoder layer does a tensor belong to?

The group of a parameter comes from the model's *module tree* (built on the meta device, no weights),
not from leaf names: GPT-2 has a `c_proj` under both `attn` and `mlp`, Phi-3 fuses `qkv_proj` and
`gate_up_proj`, MoE blocks hold experts, routers and shared experts. A module inherits the group of the
nearest block above it (attention block → `attn`, MLP block → `ffn`, …), so fused projections are
classified by their parent. Names that are not module paths (checkpoint keys in a legacy layout, PEFT
adapter keys) are first renamed with transformers' own conversion mapping, then looked up by their
longest module prefix.

Exercised by `taia inspect --model PATH` and tests/test_classify.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from taia.errors import TaiaError

Group = Literal["attn", "ffn", "experts", "router", "norm", "embed", "head", "other"]
GROUPS: tuple[Group, ...] = get_args(Group)


@dataclass(frozen=True)
class ParamInfo:
    """Where a parameter lives: its group and its decoder-layer index (None outside the layer stack)."""

    group: Group
    layer: int | None = None


# Block roles recognised from a module's own class name, then from the attribute name its parent
# gives it (for remote-code models whose classes are named e.g. `Block`). Order matters because class
# names carry the family's name: `Qwen2MoeAttention` is attention and `Qwen2MoeMLP` a dense MLP (a shared
# expert), while `Qwen2MoeSparseMoeBlock` is a MoE block.
_CLASS_ROLES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("norm", re.compile(r"norm", re.I)),
    ("attn", re.compile(r"attention|attn", re.I)),
    ("experts", re.compile(r"experts$", re.I)),
    ("router", re.compile(r"router|gate$", re.I)),
    ("ffn", re.compile(r"mlp|feedforward|ffn", re.I)),
    ("moe", re.compile(r"moe|mixtureofexperts", re.I)),
)
_ATTR_ROLES: dict[str, str] = {
    "self_attn": "attn", "attn": "attn", "attention": "attn", "self_attention": "attn",
    "mlp": "ffn", "feed_forward": "ffn", "ffn": "ffn", "block_sparse_moe": "moe", "moe": "moe",
    "experts": "experts", "router": "router",
}  # fmt: skip


def _role(module: nn.Module, attr: str) -> str | None:
    """The block role of one module, or None when it is just a container or a leaf."""
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)):
        return "norm"
    if isinstance(module, nn.Embedding):
        return "embed"
    cls = type(module).__name__
    for role, pattern in _CLASS_ROLES:
        if pattern.search(cls):
            return role
    return _ATTR_ROLES.get(attr)


@dataclass
class ModelMap:
    """Module path → ParamInfo for one architecture, plus a resolver for arbitrary tensor names."""

    modules: dict[str, ParamInfo]
    params: dict[str, ParamInfo]
    shapes: dict[str, tuple[int, ...]]
    num_layers: int
    model_type: str
    base_model_prefix: str = ""
    io_features: dict[str, tuple[int, int]] = field(default_factory=dict)  # Linear-like: (in, out)
    _renamer: Any = field(default=None, repr=False)

    def lookup(self, name: str) -> ParamInfo:
        """Classify any tensor name: a parameter, a checkpoint key or a PEFT adapter key."""
        for candidate in self._candidates(name):
            info = self._longest_prefix(candidate)
            if info is not None:
                return info
        return ParamInfo("other", None)

    def find_module(self, path: str) -> str | None:
        """This model's path for a module named in another layout (with/without base prefix), if any."""
        return next((c for c in self._candidates(path) if c in self.modules), None)

    def _candidates(self, name: str) -> list[str]:
        # Checkpoints may be saved with or without the base-model prefix (GPT-2 hub files have `h.0…`).
        renamed = self._renamer(name) if self._renamer else name
        out = [renamed]
        prefix = f"{self.base_model_prefix}." if self.base_model_prefix else ""
        if prefix and renamed.startswith(prefix):
            out.append(renamed[len(prefix) :])
        elif prefix:
            out.append(prefix + renamed)
        return out

    def _longest_prefix(self, name: str) -> ParamInfo | None:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            info = self.modules.get(".".join(parts[:cut]))
            if info is not None:
                return info
        return None


def _find_layers(model: nn.Module, num_layers: int | None) -> tuple[str, nn.ModuleList]:
    """The decoder-layer stack: the ModuleList of identical blocks that matches the config's depth."""
    best: tuple[str, nn.ModuleList] | None = None
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(m) for m in module}) != 1 or not any(True for _ in module.parameters()):
            continue
        if num_layers is not None and len(module) == num_layers:
            return path, module
        if best is None or len(module) > len(best[1]):
            best = (path, module)
    if best is None:
        raise TaiaError(f"cannot find the decoder-layer stack in {type(model).__name__}")
    return best


_DECISIVE = {"attn", "ffn", "experts", "router", "norm", "embed"}


def _walk_layer(layer: nn.Module, prefix: str, index: int, out: dict[str, ParamInfo]) -> None:
    """Assign every module in one decoder layer to the block it sits in."""
    out[prefix] = ParamInfo("other", index)
    stack: list[tuple[nn.Module, str, str | None, bool]] = [(layer, prefix, None, False)]
    while stack:
        module, path, inherited, in_moe = stack.pop()
        for attr, child in module.named_children():
            child_path = f"{path}.{attr}"
            group = inherited or _child_group(child, attr, in_moe)
            out[child_path] = ParamInfo(_as_group(group), index)
            child_in_moe = in_moe or group == "moe"
            stack.append((child, child_path, group if group in _DECISIVE else None, child_in_moe))


def _child_group(child: nn.Module, attr: str, in_moe: bool) -> str | None:
    role = _role(child, attr)
    if in_moe:
        # Inside a MoE block: the expert bank, the router(s), and dense MLPs (shared experts).
        if role == "experts" or isinstance(child, nn.ModuleList):
            return "experts"
        if role == "ffn" and not _has_experts(child):
            return "ffn"
        if role == "router" or isinstance(child, nn.Linear):
            return "router"  # a bare Linear gate, e.g. Qwen2-MoE's shared_expert_gate
    if role == "ffn" and _has_experts(child):
        return "moe"  # a MoE block whose class is named like an MLP
    return role


def _has_experts(module: nn.Module) -> bool:
    return any(_role(c, a) == "experts" for a, c in module.named_children())


def _as_group(role: str | None) -> Group:
    return next((g for g in GROUPS if g == role), "other")


def _walk_outside(model: nn.Module, layers_path: str, out: dict[str, ParamInfo]) -> None:
    """Embeddings, final norms and the output head: everything outside the layer stack."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    for path, module in model.named_modules():
        if path == layers_path or path.startswith(layers_path + "."):
            continue
        role = _role(module, path.rsplit(".", 1)[-1])
        if head is not None and module is head:
            out[path] = ParamInfo("head")
        elif role in ("embed", "norm"):
            out[path] = ParamInfo(_as_group(role))
        elif path and path not in out:
            parent = out.get(path.rsplit(".", 1)[0]) if "." in path else None
            out[path] = parent if parent and parent.group != "other" else ParamInfo("other")


def map_model(model: nn.Module) -> ModelMap:
    """Classify every module of an instantiated (meta or real) model."""
    model = _unwrap(model)
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if config is not None else None
    num_layers = getattr(text_config, "num_hidden_layers", None)
    layers_path, layers = _find_layers(model, num_layers)
    modules: dict[str, ParamInfo] = {}
    for index, layer in enumerate(layers):
        _walk_layer(layer, f"{layers_path}.{index}", index, modules)
    _walk_outside(model, layers_path, modules)
    mm = ModelMap(
        modules=modules,
        params={},
        shapes={},
        num_layers=len(layers),
        model_type=getattr(config, "model_type", type(model).__name__),
        base_model_prefix=getattr(model, "base_model_prefix", "") or "",
    )
    for name, param in model.named_parameters():
        mm.params[name] = mm.lookup(name)
        mm.shapes[name] = tuple(param.shape)
    for path, module in model.named_modules():
        io = _io_features(module)
        if io is not None:
            mm.io_features[path] = io
    mm._renamer = _checkpoint_renamer(model)
    return mm


def _io_features(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a Linear-like module, as LoRA sees it (A: [r, in], B: [out, r])."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if isinstance(module, nn.Embedding):
        return module.num_embeddings, module.embedding_dim
    if type(module).__name__ == "Conv1D":  # transformers' GPT-2 layer stores weight as [in, out]
        shape = module.get_parameter("weight").shape
        return int(shape[0]), int(shape[1])
    return None


def _unwrap(model: nn.Module) -> nn.Module:
    """A PEFT model is classified as its base architecture (LoRA wrappers hide the original classes)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        base = get_base()
        return meta_model(base.config) if hasattr(base, "config") else base
    return model


def _checkpoint_renamer(model: nn.Module) -> Any:
    """Map legacy checkpoint keys (e.g. Mixtral's `block_sparse_moe.experts.0.w1`) to module paths.

    transformers >= 5 keeps these conversion rules next to each architecture; we reuse them for names
    only. Without them (older versions) names are looked up as they are.
    """
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

        transforms = get_model_conversion_mapping(model)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 — any failure here only loses the legacy-name mapping
        return None
    if not transforms:
        return None
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    return lambda key: rename_source_key(key, renamings, converters)[0]


def meta_model(config: Any, trust_remote_code: bool = False) -> nn.Module:
    """Instantiate the causal-LM for a config on the meta device: the full module tree, no memory."""
    from transformers import AutoModel, AutoModelForCausalLM

    with torch.device("meta"):
        try:
            return AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        except ValueError:
            return AutoModel.from_config(config, trust_remote_code=trust_remote_code)


def model_map(source: nn.Module | Any | str | Path, trust_remote_code: bool = False) -> ModelMap:
    """A ModelMap from a model, a transformers config, or a local path / hub id."""
    if isinstance(source, nn.Module):
        return map_model(source)
    if isinstance(source, (str, Path)):
        from taia.io.hf import load_config

        source = load_config(source, trust_remote_code=trust_remote_code)
    return map_model(meta_model(source, trust_remote_code=trust_remote_code))


def classify(source: nn.Module | Any | str | Path, trust_remote_code: bool = False) -> dict[str, ParamInfo]:
    """`{param_name: ParamInfo(group, layer)}` for a model, a config, or a local path / hub id."""
    return dict(model_map(source, trust_remote_code=trust_remote_code).params)
