"""What the runner, the `loracl` router and the lm-eval bridge ask of a backend, as typed Protocols.

`HFBackend` and `VLLMBackend` are each a `Backend`, and their variants (`Variants`, `VLLMVariants`) each a
`Switcher`; `make_backend`'s return type makes mypy check both. Exercised by `taia eval --backend hf|vllm`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

OnBatch = Callable[[list[int], list[str]], None]  # (input indices, their outputs) as each batch finishes


class Backend(Protocol):
    """Answers requests with the model as its variants' `switch` last left it."""

    name: str  # "hf" or "vllm"
    tokenizer: Any  # a transformers tokenizer with the chat template answers are built with
    # Indices (into the last `generate` call's prompts) whose logits were NaN or ±Inf at some step: the
    # runner refuses those answers (`taia.eval.scored.check_finite`). Kept up to date as batches finish.
    non_finite: set[int]

    def generate(
        self,
        prompts: Sequence[str],
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_batch: OnBatch | None = None,
        desc: str = "generate",
    ) -> list[str]:
        """Greedy completions of already-templated prompts, in input order."""
        ...

    def loglikelihood(self, pairs: Sequence[tuple[str, str]], desc: str = "score") -> list[tuple[float, int]]:
        """(sum of log p(continuation | context), continuation tokens) per (context, continuation)."""
        ...


class PromptScorer(Backend, Protocol):
    """A backend that also scores prompts' own likelihood (the `loracl` router's perplexities: hf only)."""

    def prompt_nll(self, prompts: Sequence[str], desc: str = "perplexity") -> list[tuple[float, int]]:
        """(sum of −log p(token | tokens before it) over every token but the first, count) per prompt."""
        ...


class Switcher(Protocol):
    """The variants of the one loaded model: `switch(name)` makes the next requests answer as variant
    `name` (a key of the resolved specs); `current` is the variant last switched to, None before any."""

    @property
    def current(self) -> str | None: ...

    def switch(self, name: str) -> object: ...
