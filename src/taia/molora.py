"""MoLoRA, the model side: the layer (a mixture of LoRA experts with a learned top-k router on an FFN
linear) and its file format (`molora.safetensors` + `molora_config.json`, saved beside the PEFT adapter).

Below `train/`, `apply/`, `eval/` and `search/`, which all need it: `taia train cfg.yaml method=molora`
injects and saves it (its load-balancing loss is in train/molora.py), `taia apply` reports the MoLoRA
modules it drops (TAIA keeps the attention LoRA and discards every expert and router, which is why they
live in their own file), `taia eval` loads it and `apply_model` switches it on or off per variant.
Exercised by tests/test_molora.py.

Each wrapped linear W (frozen) computes, for a token x with E experts of rank r:

    y = W x + scaling · Σ_e g_e(x) · B_e A_e dropout(x),        scaling = alpha / r
    p = softmax(router(x))              (fp32, over the E experts)
    S = top-k indices of p
    g_e = p_e / Σ_{j∈S} p_j   for e ∈ S, 0 otherwise            (top_k > 1)
    g_e = p_e                 for e ∈ S, 0 otherwise            (top_k = 1, Switch Transformer)

Renormalising a single selected probability would give g = 1 exactly, with zero gradient to the router
(the flaw of the reference implementation's one-logit top-1 softmax), so top-1 uses the raw probability.
For top_k > 1 the renormalised gates still depend on the chosen logits, so the router is trained by the
LM loss. Load balancing (Switch / Mixtral style), over the T tokens of one forward:

    f_e = |{t : e ∈ S_t}| / (T · k)      (fraction of routing slots given to e; Σ f_e = 1)
    P_e = mean_t p_e(x_t)
    aux = E · Σ_e f_e · P_e              (= 1 for perfectly uniform routing)

f is a count (no gradient); the gradient reaches the router through P. `aux_loss` in train/molora.py
averages the per-module values; the trainer adds `aux_loss_coef · aux` to the LM loss. Padding tokens are
counted too.
With activation checkpointing use the non-reentrant variant (transformers' default): the reentrant one
runs the first forward under no_grad, so the stored aux loss would carry no gradient.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from taia.errors import TaiaError

FORMAT = "taia-molora-v1"
WEIGHTS_FILE = "molora.safetensors"
CONFIG_FILE = "molora_config.json"
# Names of the tensors each MoLoraLinear adds. None contains "lora_", the substring PEFT's state-dict
# filtering keys on, so PEFT never saves (or expects) them in its adapter.
TENSOR_NAMES = ("router.weight", "experts_A", "experts_B")


class MoLoraConfig(BaseModel):
    """Shape and training weights of the FFN expert mixture."""

    model_config = ConfigDict(extra="forbid")
    num_experts: int = Field(4, ge=2)
    top_k: int = Field(2, ge=1)
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    aux_loss_coef: float = Field(0.01, ge=0)

    @model_validator(mode="after")
    def _k_fits(self) -> MoLoraConfig:
        if self.top_k > self.num_experts:
            raise ValueError(f"top_k ({self.top_k}) must be at most num_experts ({self.num_experts})")
        return self


def linear_dims(module: nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of an nn.Linear or a transformers Conv1D (GPT-2), else None."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    # Conv1D stores its weight transposed, (in, out); detect it by its nf/nx attributes rather than by
    # import so that any Conv1D-like layer (several GPT-style models have their own copy) works.
    weight = getattr(module, "weight", None)
    nf, nx = getattr(module, "nf", None), getattr(module, "nx", None)
    if not (isinstance(nf, int) and isinstance(nx, int) and isinstance(weight, torch.Tensor)):
        return None
    if tuple(weight.shape) == (nx, nf):
        return nx, nf
    return None


class MoLoraLinear(nn.Module):
    """A frozen linear (`base_layer`) plus a top-k routed mixture of LoRA experts.

    All experts' A x are computed with one einsum (tokens × E × r) and weighted by a dense (tokens × E)
    gate matrix that is zero off the top-k, then contracted with B. This computes every expert for
    every token — E·r·(in + out) multiply-adds per token, negligible beside the base in·out for the
    small E and r used here — and avoids gather/scatter dispatch, so it is simple, deterministic and
    friendly to torch.compile and activation checkpointing.
    """

    def __init__(self, base_layer: nn.Module, cfg: MoLoraConfig) -> None:
        super().__init__()
        dims = linear_dims(base_layer)
        if dims is None:
            raise TaiaError(f"MoLoRA needs a linear layer, got {type(base_layer).__name__}")
        self.in_features, self.out_features = dims
        self.num_experts, self.top_k, self.r = cfg.num_experts, cfg.top_k, cfg.r
        self.scaling = cfg.alpha / cfg.r
        self.base_layer = base_layer.requires_grad_(False)
        weight = base_layer.get_parameter("weight")
        # Quantised bases store integer weights; the experts still need a float dtype.
        dtype = weight.dtype if weight.is_floating_point() else torch.float32
        kw: dict[str, Any] = {"device": weight.device, "dtype": dtype}
        self.router = nn.Linear(self.in_features, self.num_experts, bias=False, **kw)
        self.experts_A = nn.Parameter(torch.empty(self.num_experts, self.r, self.in_features, **kw))
        self.experts_B = nn.Parameter(torch.zeros(self.num_experts, self.out_features, self.r, **kw))
        self.dropout: nn.Module = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.enabled = True
        self.aux_loss: torch.Tensor | None = None
        self.reset_parameters()
        # A new nn.Module starts in training mode; follow the wrapped layer so that injecting into an
        # eval-mode model does not switch on expert dropout and the aux loss there.
        self.train(base_layer.training)

    def reset_parameters(self) -> None:
        """LoRA's init: A kaiming-uniform per expert, B zero, so the wrapped layer starts unchanged."""
        with torch.no_grad():
            for a in self.experts_A:
                # Per expert: on the 3-D tensor kaiming would take fan_in = r·in instead of in.
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            self.experts_B.zero_()
        self.router.reset_parameters()

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For flat tokens x (T, in): dense gates (T, E), router probs (T, E), top-k indices (T, k)."""
        probs = F.softmax(self.router(x).float(), dim=-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        # top-1: the raw probability (Switch); renormalising would give exactly 1 and no router gradient.
        gates = top_p if self.top_k == 1 else top_p / top_p.sum(-1, keepdim=True)
        return torch.zeros_like(probs).scatter(-1, top_i, gates), probs, top_i

    def balance_loss(self, probs: torch.Tensor, top_i: torch.Tensor) -> torch.Tensor:
        """E · Σ_e f_e · P_e (see the module docstring); 1.0 for perfectly uniform routing."""
        tokens = probs.shape[0]
        if tokens == 0:
            return probs.sum()  # a zero that still belongs to the graph
        # A one-hot count rather than bincount, which has no deterministic CUDA kernel.
        counts = torch.zeros_like(probs).scatter(-1, top_i, 1.0).sum(0)
        frac = counts / (tokens * self.top_k)
        return self.num_experts * (frac * probs.mean(0)).sum()

    def expert_delta(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """scaling · Σ_e g_e B_e A_e x for flat tokens x (T, in) → (T, out)."""
        h = torch.einsum("ti,eri->ter", x, self.experts_A)
        h = h * gates.to(h.dtype).unsqueeze(-1)
        return torch.einsum("ter,eor->to", h, self.experts_B) * self.scaling

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.base_layer(x, *args, **kwargs)
        if not self.enabled:
            self.aux_loss = None
            return out
        flat = x.reshape(-1, x.shape[-1]).to(self.experts_A.dtype)
        gates, probs, top_i = self.route(flat)
        self.aux_loss = self.balance_loss(probs, top_i) if self.training else None
        delta = self.expert_delta(self.dropout(flat), gates)
        return out + delta.reshape(*out.shape[:-1], self.out_features).to(out.dtype)

    def extra_repr(self) -> str:
        return f"experts={self.num_experts}, top_k={self.top_k}, r={self.r}, scaling={self.scaling:g}"


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT PeftModel (paths are relative to it), else `model` itself."""
    from peft import PeftModel  # lazy: peft is slow to import and only needed when it is in use

    return model.get_base_model() if isinstance(model, PeftModel) else model


def _target(root: nn.Module, path: str) -> tuple[nn.Module, tuple[int, int]]:
    """The module at dotted `path` that MoLoRA can wrap and its (in, out), or a TaiaError saying why not."""
    try:
        module = root.get_submodule(path)
    except AttributeError:
        raise TaiaError(f"MoLoRA target {path!r}: no such module in {type(root).__name__}") from None
    if isinstance(module, MoLoraLinear):
        raise TaiaError(f"MoLoRA target {path!r} already has MoLoRA experts")
    dims = linear_dims(module)
    if dims is None:
        raise TaiaError(f"MoLoRA target {path!r} is a {type(module).__name__}, not a linear layer")
    return module, dims


def inject_molora(model: nn.Module, targets: list[str], cfg: MoLoraConfig) -> dict[str, MoLoraLinear]:
    """Wrap each module at a dotted path (relative to the transformers model) in a MoLoraLinear.

    Every target is checked before any is replaced, so an error leaves the model untouched. A PeftModel
    is unwrapped first; inject after `get_peft_model`, which would otherwise freeze the new parameters.
    """
    root = _unwrap(model)
    if len(set(targets)) != len(targets):
        raise TaiaError(f"MoLoRA targets repeat a module: {targets}")
    found = {path: _target(root, path)[0] for path in targets}
    wrapped: dict[str, MoLoraLinear] = {}
    for path, module in found.items():
        parent_path, _, name = path.rpartition(".")
        wrapped[path] = MoLoraLinear(module, cfg)
        setattr(root.get_submodule(parent_path), name, wrapped[path])
    return wrapped


def molora_modules(model: nn.Module) -> dict[str, MoLoraLinear]:
    """Path (relative to the transformers model) → MoLoraLinear, in module order."""
    root = _unwrap(model)
    return {name: m for name, m in root.named_modules() if isinstance(m, MoLoraLinear)}


def set_molora_enabled(model: nn.Module, enabled: bool) -> int:
    """Switch every expert branch off (the model then computes as without MoLoRA) or on; returns the count."""
    modules = molora_modules(model)
    for m in modules.values():
        m.enabled = enabled
    return len(modules)


def molora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The router and expert tensors, keyed "<module path>.<tensor>" with paths relative to the
    transformers model (a PeftModel's "base_model.model." is stripped, as for classifier paths)."""
    out: dict[str, torch.Tensor] = {}
    for path, m in molora_modules(model).items():
        for name in TENSOR_NAMES:
            out[f"{path}.{name}"] = m.get_parameter(name).detach()
    return out


def save_molora(model: nn.Module, out_dir: Path, cfg: MoLoraConfig) -> None:
    """Write out_dir/molora.safetensors and out_dir/molora_config.json (config, targets, format)."""
    from safetensors.torch import save_file

    targets = list(molora_modules(model))
    if not targets:
        raise TaiaError("the model has no MoLoRA modules to save")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.cpu().contiguous() for k, v in molora_state_dict(model).items()}
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": FORMAT})
    meta = {"config": cfg.model_dump(), "targets": targets, "format": FORMAT}
    (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _molora_files(src_dir: Path) -> tuple[Path, Path] | None:
    """(weights, config) of a saved MoLoRA, None when `src_dir` has neither, an error when it has one."""
    src_dir = Path(src_dir)
    weights, config = src_dir / WEIGHTS_FILE, src_dir / CONFIG_FILE
    if not weights.exists() and not config.exists():
        return None
    for p in (weights, config):
        if not p.exists():
            raise TaiaError(f"{src_dir}: incomplete MoLoRA output, {p.name} is missing")
    return weights, config


def _read_meta(config: Path) -> Any:
    try:
        return json.loads(config.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TaiaError(f"{config}: not readable JSON ({e})") from None


def read_molora_tensors(src_dir: Path) -> tuple[dict, dict[str, torch.Tensor]] | None:
    """(config json, tensors) of a saved MoLoRA, or None when `src_dir` has neither file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files = _molora_files(src_dir)
    if files is None:
        return None
    weights, config = files
    meta = _read_meta(config)
    try:
        tensors = load_file(str(weights))
    except (OSError, SafetensorError) as e:
        raise TaiaError(f"{weights}: not a readable safetensors file ({e})") from None
    return meta, tensors


def molora_numels(src_dir: Path) -> dict[str, int] | None:
    """Module path → how many MoLoRA parameters (router + experts) a saved MoLoRA holds there, or None when
    `src_dir` has neither file. Reads only the safetensors header (the shapes), no tensor; the same errors
    as `read_molora_tensors`."""
    from safetensors import SafetensorError, safe_open

    files = _molora_files(src_dir)
    if files is None:
        return None
    weights, config = files
    _read_meta(config)  # an unreadable config is refused here too, as when the MoLoRA is loaded
    numels: dict[str, int] = {}
    try:
        with safe_open(str(weights), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118  (a safe_open handle is not iterable)
                # "<module path>.<tensor name>"; a key with no known tensor name counts as a module itself
                path = next((key[: -len(n) - 1] for n in TENSOR_NAMES if key.endswith(f".{n}")), key)
                numels[path] = numels.get(path, 0) + math.prod(f.get_slice(key).get_shape())
    except (OSError, SafetensorError) as e:
        raise TaiaError(f"{weights}: not a readable safetensors file ({e})") from None
    return numels


def _parse_meta(meta: Any, where: Path) -> tuple[MoLoraConfig, list[str]]:
    """The config and target list of a molora_config.json, validated."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TaiaError(f"{where / CONFIG_FILE}: not a {FORMAT} file")
    targets = meta.get("targets")
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise TaiaError(f"{where / CONFIG_FILE}: 'targets' must be a list of module paths")
    try:
        return MoLoraConfig(**meta.get("config", {})), targets
    except (ValidationError, TypeError) as e:
        raise TaiaError(f"{where / CONFIG_FILE}: invalid MoLoRA config: {e}") from None


def _expected_shapes(root: nn.Module, targets: list[str], cfg: MoLoraConfig) -> dict[str, tuple[int, ...]]:
    """The tensor shapes injecting `cfg` at `targets` will create (checked before touching the model)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in targets:
        n_in, n_out = _target(root, path)[1]
        e, r = cfg.num_experts, cfg.r
        shapes[f"{path}.router.weight"] = (e, n_in)
        shapes[f"{path}.experts_A"] = (e, r, n_in)
        shapes[f"{path}.experts_B"] = (e, n_out, r)
    return shapes


def _check_tensors(tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], where: Path) -> None:
    """Strict load: every expected key present, no extra key, every shape equal."""
    name = where / WEIGHTS_FILE
    for key in shapes:
        if key not in tensors:
            raise TaiaError(f"{name}: missing tensor {key}")
    for key, t in tensors.items():
        if key not in shapes:
            raise TaiaError(f"{name}: unexpected tensor {key} (not in molora_config.json targets)")
        if tuple(t.shape) != shapes[key]:
            raise TaiaError(f"{name}: {key} has shape {tuple(t.shape)}, the model expects {shapes[key]}")


def load_molora(model: nn.Module, src_dir: Path) -> dict[str, MoLoraLinear]:
    """Inject the saved MoLoRA into `model` (a transformers model or a PeftModel) and load its weights.

    All keys and shapes are checked before the model is modified, so a bad file leaves it untouched.
    """
    src_dir = Path(src_dir)
    read = read_molora_tensors(src_dir)
    if read is None:
        raise TaiaError(f"{src_dir}: no MoLoRA files ({WEIGHTS_FILE}, {CONFIG_FILE})")
    meta, tensors = read
    cfg, targets = _parse_meta(meta, src_dir)
    root = _unwrap(model)
    _check_tensors(tensors, _expected_shapes(root, targets, cfg), src_dir)
    wrapped = inject_molora(root, targets, cfg)
    with torch.no_grad():
        for path, m in wrapped.items():
            for name in TENSOR_NAMES:
                m.get_parameter(name).copy_(tensors[f"{path}.{name}"])
    return wrapped
