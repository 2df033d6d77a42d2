"""What an evaluation task is: samples with a gold answer, a scoring kind, and where its data lives.

Tasks are defined in YAML (`taia/eval/tasks/*.yaml`) and turned into samples by a small Python hook
(`taia/eval/tasks/hooks.py`), lm-eval style. Prompts are built from the structured fields by the protocol
(`paper` / `standard`), not stored here. Exercised by `taia eval --tasks gsm8k,csqa`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# mc: options + gold letter | number: numeric answer | math: LaTeX answer (math-verify)
# exact: short text answer (BBH) | refusal: harmful request, scored by refusal phrases (AdvBench)
# adoption: benign instruction, scored by whether the answer takes on the fine-tune's persona (persona.py)
Kind = Literal["mc", "number", "math", "exact", "refusal", "adoption"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class Sample:
    """One test item. `id` is unique within its task and stable across runs (results resume by it)."""

    id: str
    question: str  # the full question text (with any passage/context), without the options
    gold: str  # mc: the letter; number: the number; math/exact: the answer text; refusal, adoption: ""
    options: tuple[str, ...] = ()  # mc: option texts in letter order A, B, C, …
    subset: str | None = None  # BBH subtask / MMLU subject, for per-subset and macro averages
    meta: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Task:
    """A named task: its scoring kind and how many tokens an answer may take."""

    name: str
    kind: Kind
    description: str
    max_new_tokens: int
    aggregate: Literal["micro", "macro"] = "micro"  # macro: mean over subsets (BBH, MMLU)
