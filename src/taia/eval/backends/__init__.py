"""Backends that answer evaluation requests: `hf` (transformers, CPU or GPU) and `vllm` (optional extra).

Both are a `base.Backend`; `make_backend` loads the configured one. Exercised by
`taia eval --backend hf|vllm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taia.eval.config import EvalConfig
from taia.io.hf import resolve_dir

if TYPE_CHECKING:  # typing only: hf.py and variants.py load torch
    from taia.eval.backends.base import Backend, Switcher
    from taia.eval.backends.hf import HFBackend
    from taia.eval.variants import Variants


def tokenizer_dir(model_dir: Path, adapter: Path | None, finetuned: Path | None) -> Path:
    """The fine-tune's own tokenizer when it saved one (its chat template may differ), else the base's."""
    for d in (adapter, finetuned):
        if d is not None and (d / "tokenizer_config.json").is_file():
            return d
    return model_dir


@dataclass(frozen=True)
class Sources:
    """The resolved local dirs of a base model and its fine-tune (adapter or full checkpoint)."""

    model: Path
    adapter: Path | None
    finetuned: Path | None

    @classmethod
    def resolve(cls, model: str, adapter: str | None, finetuned: str | None) -> Sources:
        return cls(
            resolve_dir(model),
            resolve_dir(adapter) if adapter else None,
            resolve_dir(finetuned) if finetuned else None,
        )


def load_tokenizer(src: Sources, chat_template: str | None, trust_remote_code: bool) -> Any:
    """The tokenizer answers are built with: the fine-tune's own if it saved one, with the chat template."""
    from transformers import AutoTokenizer

    from taia.chat import set_chat_template

    tok_dir = tokenizer_dir(src.model, src.adapter, src.finetuned)
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), trust_remote_code=trust_remote_code)
    set_chat_template(tokenizer, chat_template, str(tok_dir))
    return tokenizer


def load_hf_variants(src: Sources, specs: dict[str, Any], **load: bool) -> Variants:
    """`Variants` on one transformers model: fp32 on CPU, the checkpoint's dtype on a GPU. `load`:
    allow_pickle and trust_remote_code."""
    import torch

    from taia.eval.variants import load_variants

    dtype: Any = "auto" if torch.cuda.is_available() else torch.float32
    variants = load_variants(src.model, src.adapter, src.finetuned, specs, dtype, **load)
    if torch.cuda.is_available():
        variants.model.to("cuda")
    return variants


def make_backend(cfg: EvalConfig, specs: dict[str, Any]) -> tuple[Backend, Switcher]:
    """(backend, its variants) for the configured model, loaded once."""
    if cfg.backend == "vllm":
        from taia.eval.backends.vllm import make_vllm

        src = Sources.resolve(cfg.model, cfg.adapter, cfg.finetuned)
        tokenizer = load_tokenizer(src, cfg.chat_template, cfg.trust_remote_code)
        return make_vllm(cfg, src.model, src.adapter, src.finetuned, tokenizer, specs)
    return make_hf(cfg, specs)


def make_hf(cfg: EvalConfig, specs: dict[str, Any]) -> tuple[HFBackend, Variants]:
    """The transformers backend and its `Variants` (whose `model` the lm-eval bridge wraps)."""
    from taia.eval.backends.hf import HFBackend

    src = Sources.resolve(cfg.model, cfg.adapter, cfg.finetuned)
    tokenizer = load_tokenizer(src, cfg.chat_template, cfg.trust_remote_code)
    variants = load_hf_variants(src, specs, **cfg.load_options())
    return HFBackend(variants.model, tokenizer, cfg.batch_size), variants
