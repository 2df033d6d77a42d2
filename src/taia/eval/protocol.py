"""Prompts: the paper's zero-shot protocol and a standard one, from a sample's structured fields.

`paper` (TAIA §5): zero-shot, the model's chat template, the paper's suffixes. Free-form answers end with
"The answer is {answer}."; multiple choice lists the options and asks for the letter, and the answer is
*constrained* to the option letters (the letter with the highest next-token probability).
`standard`: multiple choice by length-normalised log-likelihood of each option's *text* after a plain
"Question: … Answer:" cloze prompt (lm-eval's acc_norm); free-form answers in `\\boxed{}` (MATH) or after
"The answer is" (numbers, BBH), extracted strictly. AdvBench prompts and the persona task's instructions
are the bare request in both. Which request a sample gets is its task kind's (`taia.eval.kinds`); this
module holds the request types and the prompt pieces. Exercised by `taia eval --protocol paper|standard`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from taia.eval.task import LETTERS

Protocol = Literal["paper", "standard"]
PAPER_ANSWER = "Please format the final answer at the end of the response as: The answer is {answer}."
PAPER_LETTER = "Please answer with option letter directly, do not output other information."
STANDARD_BOXED = "Please reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class Generation:
    prompt: str  # rendered with the chat template, ending in the assistant's turn
    max_new_tokens: int


@dataclass(frozen=True)
class Choice:
    context: str
    continuations: tuple[str, ...]
    normalise: bool  # divide each log-likelihood by the continuation's length in characters

    def scores(self, totals: list[float]) -> list[float]:
        """Each continuation's score from its summed log-likelihood (length-normalised when asked)."""
        return [
            total / (len(c) if self.normalise else 1)
            for total, c in zip(totals, self.continuations, strict=True)
        ]


def prompt_text(req: Generation | Choice) -> str:
    """The text the model reads before it answers: a generation prompt, or a choice's shared context
    (what `loracl` scores for perplexity and `taia inspect --hidden-states` feeds the model)."""
    return req.context if isinstance(req, Choice) else req.prompt


def options_block(options: tuple[str, ...]) -> str:
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))


def chat(tokenizer: Any, user: str) -> str:
    """One user turn through the chat template, ready for the assistant's answer."""
    messages = [{"role": "user", "content": user}]
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
