"""Conversations → a dataset TRL's SFTTrainer trains on with loss on the assistant's tokens only.

Three routes, all ending in TRL's own label building (labels = -100 outside the mask):

1. every conversation is single-turn (the usual instruction data): conversational prompt/completion rows,
   masked by TRL's `completion_only_loss` — works with any chat template;
2. multi-turn, and the template has (or TRL can patch in) `{% generation %}` markers: `messages` rows with
   TRL's `assistant_only_loss`;
3. multi-turn with a template TRL cannot patch (e.g. SmolLM2's ChatML): rows pre-tokenised here with an
   `assistant_masks` column, each assistant turn located as the tokens its rendering adds to the
   rendering of the conversation before it (which must be a prefix; else an error says so).

Exercised by `taia train cfg.yaml` and the label-mask tests in tests/test_train_data.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taia.data.formats import Conversation
from taia.errors import TaiaError


@dataclass
class Prepared:
    """Rows for SFTTrainer, how they are masked, and the SFTConfig flags that masking needs."""

    rows: list[dict[str, Any]]
    masking: str
    completion_only_loss: bool | None
    assistant_only_loss: bool


def prepare(conversations: list[Conversation], tokenizer: Any) -> Prepared:
    """Choose the masking route (see the module docstring) and build the rows."""
    if all(_single_turn(c) for c in conversations):
        rows = [{"prompt": c[:-1], "completion": c[-1:]} for c in conversations]
        return Prepared(rows, "completion-only (TRL prompt/completion)", True, False)
    if _trl_can_mark(tokenizer):
        rows = [{"messages": c} for c in conversations]
        return Prepared(rows, "assistant-only (TRL generation markers)", None, True)
    tokenized: list[dict[str, Any]] = [tokenize_with_mask(c, tokenizer) for c in conversations]
    return Prepared(tokenized, "assistant-only (prefix-rendered turns)", None, False)


def check_rows(conversations: list[Conversation], tokenizer: Any, max_length: int, template: str) -> None:
    """Before anything is written: the chat template (named `template`) renders the first row, and some
    row's prompt leaves room for answer tokens within `max_length` (TRL drops every row whose answer is
    truncated away; with none left it fails deep inside the Trainer). Stops at the first row that fits."""
    if conversations:
        _checked_render(tokenizer, conversations[0], False, template, 0)
    shortest = None
    for row, conv in enumerate(conversations):
        first = next((i for i, m in enumerate(conv) if m["role"] == "assistant"), 0)
        n = len(_checked_render(tokenizer, conv[:first], True, template, row))
        if n < max_length:
            return
        shortest = n if shortest is None else min(shortest, n)
    if shortest is not None:
        raise TaiaError(
            f"max_length={max_length} is shorter than every prompt (the shortest renders to {shortest} "
            "tokens): no answer token would be trained; raise max_length"
        )


def _checked_render(
    tokenizer: Any, messages: Conversation, prompt: bool, template: str, row: int
) -> list[int]:
    try:
        return _render(tokenizer, messages, generation_prompt=prompt)
    except Exception as e:  # noqa: BLE001 — jinja's syntax errors, raise_exception(), the template's own code
        line = getattr(e, "lineno", None)
        where = f" (template line {line})" if line else ""
        raise TaiaError(
            f"{template} cannot render training row {row}: {type(e).__name__}: {e}{where}"
        ) from None


def _single_turn(conv: Conversation) -> bool:
    return sum(m["role"] == "assistant" for m in conv) == 1 and conv[-1]["role"] == "assistant"


def _trl_can_mark(tokenizer: Any) -> bool:
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if has_generation_markers(tokenizer.chat_template):
        return True
    try:
        return get_training_chat_template(tokenizer) is not None
    except ValueError:  # TRL has no patched version of this template
        return False


def tokenize_with_mask(conv: Conversation, tokenizer: Any) -> dict[str, list[int]]:
    """input_ids of the whole conversation and a 0/1 mask over the assistant turns' own tokens."""
    ids: list[int] = []
    mask: list[int] = []
    for i, message in enumerate(conv):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, conv[:i], generation_prompt=True)
        upto = _render(tokenizer, conv[: i + 1], generation_prompt=False)
        if before[: len(ids)] != ids or upto[: len(before)] != before:
            raise TaiaError(
                "the chat template renders earlier turns differently once later turns are added, so "
                "assistant tokens cannot be located; set chat_template= to a prefix-preserving template"
            )
        mask += [0] * (len(before) - len(ids)) + [1] * (len(upto) - len(before))
        ids = upto
    return {"input_ids": ids, "assistant_masks": mask}


def _render(tokenizer: Any, messages: Conversation, generation_prompt: bool) -> list[int]:
    if not messages:
        return []
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, add_generation_prompt=generation_prompt
    )
    return list(out["input_ids"])
