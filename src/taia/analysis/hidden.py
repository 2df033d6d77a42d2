"""How far each variant's hidden states move from the base model's, per layer (TAIA paper Figs. 4c, 5).

    taia inspect --base B --adapter A --hidden-states --tasks csqa,mmlu --limit 50 --out runs/hidden

Inputs are the prompts `taia eval` would send for those tasks (`taia.eval.kinds.request`, standard
protocol by default): a generation request's templated prompt, or a multiple-choice request's context
(the options are not appended). Prompts are tokenized without added special tokens, left-padded in
batches, and only real (non-pad) tokens are measured. The base model is the reference; each variant
(`vanilla`, `taia`, `taif`, any spec) is the same loaded model switched in place (`load_variants`).

**Cosine to base.** For hidden-state index i of `output_hidden_states=True` (i = 0: the embeddings, row
`emb`; i = ℓ + 1: the output of decoder layer ℓ, where transformers reports the last one *after* the
final norm, i.e. what the LM head reads), the cosine between the variant's and the base's vector at
each real prompt token; averaged over a prompt's tokens, then over prompts (each prompt weighs the same).

**Rank ratio after attention.** R_ℓ = h_ℓ + attn_ℓ(h_ℓ): decoder layer ℓ's input plus its attention
block's output — the residual stream right after the attention add (for pre-norm models such as Llama
and GPT-2 exactly the tensor the FFN branch reads; with a norm on the attention output, e.g. Gemma 2,
it is the un-normed sum). For each prompt, the effective rank of its tokens × hidden matrix R_ℓ (Roy &
Vetterli 2007: exp of the entropy of the singular values normalised to sum 1; no centering, so one
high-norm token can dominate it), averaged over prompts; the ratio is that mean for the variant over the
base's mean at the same layer. The layer and its attention block are found from the module map
(`taia.classify.map_model`), never from leaf names. Effective rank, not numerical rank: hidden states in
floating point are numerically full-rank, so a tolerance rank would report min(tokens, hidden) everywhere.

Memory: per batch of prompts, the base's hidden states are kept while every variant runs on the same
batch, and only per-layer sums go on; the ranks are computed inside the hooks as the forward runs.
Exercised by tests/test_hidden.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from taia.check import check_inputs
from taia.classify import map_model
from taia.config import InspectConfig
from taia.errors import TaiaError
from taia.eval.kinds import request
from taia.eval.protocol import prompt_text
from taia.eval.task import Sample
from taia.eval.tasks import get_task, load_samples
from taia.eval.variants import Variants, resolve_specs
from taia.io.rows import data_root
from taia.spec import TaiaSpec

REF = "base"  # the reference variant every other is measured against
Blocks = list[tuple[nn.Module, nn.Module]]  # (decoder layer, its attention block) per layer


# ------------------------------------------------------------------------------------------ measures


def effective_rank(x: torch.Tensor) -> float:
    """Roy & Vetterli's effective rank of a matrix: exp(−Σ pᵢ log pᵢ), pᵢ = σᵢ / Σσ (0 for a zero matrix).

    1 for a rank-1 matrix, k for k equal singular values; in fp64, so tiny singular values are exact."""
    s = torch.linalg.svdvals(x.detach().to(torch.float64))
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def token_cosines(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row of (batch, tokens, hidden) states: the mean cosine of a and b over the real tokens (fp64)."""
    cos = nn.functional.cosine_similarity(a.to(torch.float64), b.to(torch.float64), dim=-1)
    real = mask.bool()
    cos = torch.where(real, cos, torch.zeros_like(cos))  # pads may hold anything, NaN included
    return cos.sum(1) / real.sum(1)


# ------------------------------------------------------------------------------------ one forward pass


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T), left-padded
    mask: torch.Tensor  # (B, T), 1 on real tokens


def encode(tokenizer: Any, prompts: list[str], device: torch.device | str = "cpu") -> Batch:
    """Left-padded ids and mask, tokenized as the HF eval backend does (no added special tokens)."""
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if any(not x for x in ids):
        raise TaiaError("a prompt tokenizes to nothing; cannot measure its hidden states")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(map(len, ids))
    rows = [[pad] * (width - len(x)) + list(x) for x in ids]
    mask = [[0] * (width - len(x)) + [1] * len(x) for x in ids]
    return Batch(torch.tensor(rows, device=device), torch.tensor(mask, device=device))


def attention_blocks(model: nn.Module) -> Blocks:
    """(decoder layer, its attention block) per layer, from the module map: the layer is the shortest
    module path of its index, the attention block the shortest path in it classified `attn`."""
    mm = map_model(model)  # a PEFT model maps as its base architecture, with the same paths
    get_base = getattr(model, "get_base_model", None)
    live = get_base() if callable(get_base) else model
    blocks = []
    for index in range(mm.num_layers):
        paths = sorted(
            (p for p, i in mm.modules.items() if i.layer == index), key=lambda p: (p.count("."), p)
        )
        attn = next((p for p in paths if mm.modules[p].group == "attn"), None)
        if not paths or attn is None:
            raise TaiaError(f"{mm.model_type}: layer {index} has no attention block in its module map")
        blocks.append((live.get_submodule(paths[0]), live.get_submodule(attn)))
    return blocks


class _ResidualRanks:
    """Hooks that turn h + attn(h) of every layer into per-prompt effective ranks during the forward."""

    def __init__(self, blocks: Blocks, mask: torch.Tensor) -> None:
        self.mask = mask.bool()
        self.ranks: list[list[float]] = [[] for _ in blocks]
        self._inputs: dict[int, torch.Tensor] = {}
        self.handles: list[Any] = []  # RemovableHandle, removed after the forward
        for i, (layer, attn) in enumerate(blocks):
            self.handles.append(layer.register_forward_pre_hook(partial(self._keep, i), with_kwargs=True))
            self.handles.append(attn.register_forward_hook(partial(self._rank, i)))

    def _keep(self, i: int, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._inputs[i] = args[0] if args else kwargs["hidden_states"]

    def _rank(self, i: int, module: nn.Module, args: tuple, output: Any) -> None:
        attn_out = output[0] if isinstance(output, tuple) else output
        residual = self._inputs.pop(i) + attn_out
        self.ranks[i] = [effective_rank(residual[b][self.mask[b]]) for b in range(residual.shape[0])]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@dataclass
class Pass:
    hidden: tuple[torch.Tensor, ...]  # output_hidden_states: (layers + 1) × (B, T, hidden)
    ranks: list[list[float]]  # [layer][prompt] effective rank after the attention residual


@torch.inference_mode()
def forward(model: nn.Module, batch: Batch, blocks: Blocks) -> Pass:
    """One forward of a left-padded batch: all hidden states and the per-layer residual ranks."""
    hooks = _ResidualRanks(blocks, batch.mask)
    try:
        out = model(
            input_ids=batch.input_ids,
            attention_mask=batch.mask,
            position_ids=(batch.mask.cumsum(1) - 1).clamp(min=0),  # as unpadded; GPT-2 needs it
            output_hidden_states=True,
            use_cache=False,
            logits_to_keep=1,  # the logits are not used; skip the full-vocabulary projection
        )
    finally:
        hooks.remove()
    if any(not r for r in hooks.ranks):
        raise TaiaError("an attention block did not run in the forward pass; cannot measure its residual")
    return Pass(tuple(out.hidden_states), hooks.ranks)


# ------------------------------------------------------------------------------------------ the sweep


def _plus(a: list[float], b: list[float]) -> list[float]:
    """Elementwise sum; an empty list is a zero of any length."""
    if not a or not b:
        return list(a or b)
    return [x + y for x, y in zip(a, b, strict=True)]


@dataclass
class Sums:
    """Per-layer sums over prompts (one term per prompt), so only one batch of states is ever held."""

    cosine: list[float] = field(default_factory=list)  # per hidden-state index; 0 = embeddings
    erank: list[float] = field(default_factory=list)  # per decoder layer
    prompts: int = 0
    tokens: int = 0

    def add(self, cosines: list[torch.Tensor] | None, ranks: list[list[float]], mask: torch.Tensor) -> None:
        if cosines is not None:  # None for the reference: its cosine to itself is 1 by definition
            self.cosine = _plus(self.cosine, [float(c.sum()) for c in cosines])
        self.erank = _plus(self.erank, [sum(r) for r in ranks])
        self.prompts += int(mask.shape[0])
        self.tokens += int(mask.sum())

    def __add__(self, other: Sums) -> Sums:
        return Sums(
            _plus(self.cosine, other.cosine),
            _plus(self.erank, other.erank),
            self.prompts + other.prompts,
            self.tokens + other.tokens,
        )


@dataclass
class TaskSums:
    """One task's sums: the reference's ranks, and each variant's cosines and ranks (a variant may be
    `base` itself, so the reference is kept apart)."""

    ref: Sums = field(default_factory=Sums)
    variants: dict[str, Sums] = field(default_factory=dict)

    def __add__(self, other: TaskSums) -> TaskSums:
        names = dict.fromkeys([*self.variants, *other.variants])
        both = {n: self.variants.get(n, Sums()) + other.variants.get(n, Sums()) for n in names}
        return TaskSums(self.ref + other.ref, both)


def measure_batch(variants: Variants, batch: Batch, blocks: Blocks, names: list[str], sums: TaskSums) -> None:
    """Base first (its states kept for this batch only), then every variant against it."""
    ref = forward(variants.switch(REF), batch, blocks)
    sums.ref.add(None, ref.ranks, batch.mask)
    for name in names:
        run = forward(variants.switch(name), batch, blocks)
        cosines = [token_cosines(h, r, batch.mask) for h, r in zip(run.hidden, ref.hidden, strict=True)]
        sums.variants.setdefault(name, Sums()).add(cosines, run.ranks, batch.mask)


def measure(
    variants: Variants, tokenizer: Any, prompts: dict[str, list[str]], names: list[str], batch_size: int
) -> dict[str, TaskSums]:
    """task → its sums, over every task's prompts in batches of `batch_size`."""
    from tqdm.auto import tqdm

    blocks = attention_blocks(variants.model)
    device = next(variants.model.parameters()).device
    out = {task: TaskSums() for task in prompts}
    with tqdm(total=sum(map(len, prompts.values())), desc="hidden states", unit="prompt") as bar:
        for task, texts in prompts.items():
            ordered = sorted(texts, key=len, reverse=True)  # similar lengths together: less padding
            for start in range(0, len(ordered), batch_size):
                chunk = ordered[start : start + batch_size]
                measure_batch(variants, encode(tokenizer, chunk, device), blocks, names, out[task])
                bar.update(len(chunk))
    return out


# ------------------------------------------------------------------------------------------- results


def rows(sums: TaskSums, names: list[str], task: str) -> list[dict[str, Any]]:
    """Table rows of one scope: per variant, `emb` (layer None: cosine only) then each decoder layer."""
    ref = sums.ref
    out = []
    for name in names:
        s = sums.variants[name]
        out.append({"task": task, "variant": name, "layer": None, "cosine": s.cosine[0] / s.prompts,
                    "erank": None, "base_erank": None, "rank_ratio": None})  # fmt: skip
        for layer, erank in enumerate(s.erank):
            mean, base = erank / s.prompts, ref.erank[layer] / ref.prompts
            out.append({"task": task, "variant": name, "layer": layer,
                        "cosine": s.cosine[layer + 1] / s.prompts, "erank": mean, "base_erank": base,
                        "rank_ratio": mean / base if base > 0 else None})  # fmt: skip
    return out


def result(sums: dict[str, TaskSums], names: list[str], model_type: str, num_layers: int) -> dict[str, Any]:
    """The JSON-able result: rows for all prompts together, and per task when there are several."""
    total = TaskSums()
    for task_sums in sums.values():
        total = total + task_sums
    table = rows(total, names, "all")
    if len(sums) > 1:
        table += [r for task, task_sums in sums.items() for r in rows(task_sums, names, task)]
    return {
        "model_type": model_type,
        "num_layers": num_layers,
        "reference": REF,
        "variants": names,
        "tasks": {task: task_sums.ref.prompts for task, task_sums in sums.items()},
        "tokens": total.ref.tokens,
        "rows": table,
    }


# -------------------------------------------------------------------------------------------- driver


def load(cfg: InspectConfig, specs: dict[str, TaiaSpec]) -> tuple[Variants, Any]:
    """The variants on one loaded model, and the tokenizer `taia eval` would use."""
    from taia.eval.backends import Sources, load_hf_variants, load_tokenizer

    assert cfg.base is not None
    src = Sources.resolve(cfg.base, cfg.adapter, cfg.finetuned)
    load = {"allow_pickle": cfg.allow_pickle, "trust_remote_code": cfg.trust_remote_code}
    return load_hf_variants(src, specs, **load), load_tokenizer(src, cfg.chat_template, cfg.trust_remote_code)


def inspect_hidden(cfg: InspectConfig, samples: dict[str, list[Sample]] | None = None) -> dict[str, Any]:
    """Cosine to base and rank ratio per layer × variant on the tasks' prompts; writes `cfg.out` if set.

    `samples` (task → samples) replaces loading `cfg.tasks` from the data root."""
    from taia.analysis.hidden_outputs import write_outputs

    assert cfg.tasks is not None and cfg.base is not None
    tasks = {name: get_task(name) for name in cfg.tasks}
    specs = resolve_specs(cfg.variants)  # spec files are named by their stem
    names = list(specs)
    check_inputs(
        cfg.base, cfg.adapter, cfg.finetuned, list(specs.values()),
        allow_pickle=cfg.allow_pickle, trust_remote_code=cfg.trust_remote_code,
    )  # fmt: skip
    if samples is None:
        root = data_root(cfg.data_dir)
        samples = {name: load_samples(name, root, cfg.limit, cfg.seed) for name in cfg.tasks}
    if cfg.out and Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise TaiaError(f"out {cfg.out} exists and is not a directory")
    variants, tokenizer = load(cfg, {**resolve_specs([REF]), **specs})
    prompts = {
        name: [prompt_text(request(tasks[name], s, cfg.protocol, tokenizer)) for s in samples[name]]
        for name in cfg.tasks
    }
    if not any(prompts.values()):
        raise TaiaError(f"no prompts in {', '.join(cfg.tasks)}")
    sums = measure(variants, tokenizer, {k: v for k, v in prompts.items() if v}, names, cfg.batch_size)
    mm = map_model(variants.model)
    out = result(sums, names, mm.model_type, mm.num_layers)
    if cfg.out:
        write_outputs(out, cfg, Path(cfg.out))
    return out
