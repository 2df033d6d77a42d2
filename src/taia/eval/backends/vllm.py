"""The vLLM backend (`pip install 'taia[vllm]'`): one engine, each variant one LoRA request.

Every variant's adapter is written once by `taia apply` (λ folded into lora_B, dropped modules removed),
then served by a single `LLM(enable_lora=True)`; `base` is a request without LoRA. Full fine-tunes and
MoLoRA experts cannot be LoRA requests: use the `hf` backend for those. Log-likelihoods come from vLLM's
prompt log-probs. Exercised by `taia eval --backend vllm` on a GPU machine; not run in CI (no GPU there).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from taia.errors import TaiaError


class VLLMVariants:
    """Switching a variant = choosing which LoRA request the next calls use."""

    def __init__(self, requests: dict[str, Any]) -> None:
        self.requests = requests  # variant → its LoRARequest; None for base
        self.current: str | None = None

    def switch(self, name: str) -> None:
        if name not in self.requests:  # fail here, not at the next request
            raise KeyError(name)
        self.current = name

    @property
    def request(self) -> Any:
        """The LoRA request of the current variant (None: the base model, and before any switch)."""
        return None if self.current is None else self.requests[self.current]


class VLLMBackend:
    """A `taia.eval.backends.base.Backend` on one vLLM engine."""

    name = "vllm"

    def __init__(self, llm: Any, tokenizer: Any, variants: VLLMVariants) -> None:
        self.llm, self.tokenizer, self.variants = llm, tokenizer, variants
        self.non_finite: set[int] = set()  # vLLM hands back no logits here: generation is not checked

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_batch: Callable[[list[int], list[str]], None] | None = None,
        desc: str = "generate",
    ) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop) or None)
        outs = self.llm.generate(list(prompts), params, lora_request=self.variants.request, use_tqdm=True)
        texts = [o.outputs[0].text for o in outs]
        if on_batch is not None:
            on_batch(list(range(len(texts))), texts)
        return texts

    def loglikelihood(self, pairs: Sequence[tuple[str, str]], desc: str = "score") -> list[tuple[float, int]]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        ctx_lens = [len(self.tokenizer(c, add_special_tokens=False)["input_ids"]) for c, _ in pairs]
        prompts = [
            {"prompt_token_ids": self.tokenizer(c + x, add_special_tokens=False)["input_ids"]}
            for c, x in pairs
        ]
        outs = self.llm.generate(prompts, params, lora_request=self.variants.request, use_tqdm=True)
        scores = []
        for out, n_ctx, prompt in zip(outs, ctx_lens, prompts, strict=True):
            ids = prompt["prompt_token_ids"]
            cont = range(min(n_ctx, len(ids) - 1), len(ids))
            scores.append((sum(out.prompt_logprobs[i][ids[i]].logprob for i in cont), len(cont)))
        return scores


def make_vllm(
    cfg: Any, model_dir: Path, adapter: Path | None, finetuned: Path | None, tokenizer: Any, specs: dict
) -> tuple[VLLMBackend, VLLMVariants]:
    try:
        from vllm import LLM
        from vllm.lora.request import LoRARequest
    except ImportError:
        raise TaiaError("the vllm backend needs vLLM: pip install 'taia[vllm]' (GPU machines)") from None
    if finetuned is not None:
        raise TaiaError(
            "the vllm backend serves variants as LoRA requests; a full fine-tune needs --backend hf"
        )
    from taia.apply import apply_adapter

    tmp = Path(tempfile.mkdtemp(prefix="taia-vllm-"))
    requests: dict[str, Any] = {}
    for i, (name, spec) in enumerate(specs.items(), start=1):
        if not spec.keeps_anything():
            requests[name] = None
            continue
        if adapter is None:
            raise TaiaError(f"variant {name!r} needs a fine-tune: give --adapter")
        apply_adapter(model_dir, adapter, tmp / name, spec, **cfg.load_options())
        requests[name] = LoRARequest(name, i, str(tmp / name))
    lora = {"max_loras": 1, "max_lora_rank": lora_rank(adapter)} if adapter is not None else {}
    # The pickle rule of every loader: safetensors only unless pickle is allowed; remote code as configured.
    load = {
        "load_format": "auto" if cfg.allow_pickle else "safetensors",
        "trust_remote_code": cfg.trust_remote_code,
    }
    llm = LLM(model=str(model_dir), enable_lora=adapter is not None, seed=cfg.seed, **lora, **load)
    variants = VLLMVariants(requests)
    return VLLMBackend(llm, tokenizer, variants), variants


_VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM's LoRAConfig accepts


def lora_rank(adapter: Path) -> int:
    """The smallest rank vLLM accepts that holds the adapter's largest LoRA rank (r and rank_pattern)."""
    import json

    cfg = json.loads((adapter / "adapter_config.json").read_text())
    rank = max([int(cfg.get("r") or 8), *map(int, (cfg.get("rank_pattern") or {}).values())])
    return next((r for r in _VLLM_RANKS if r >= rank), rank)
