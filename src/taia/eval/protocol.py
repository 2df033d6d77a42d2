"""Prompts: the paper's zero-shot protocol and a standard one, from a sample's structured fields.

`paper` (TAIA §5): zero-shot, the model's chat template, the paper's suffixes. Free-form answers end with
"The answer is {answer}."; multiple choice lists the options and asks for the letter, and the answer is
*constrained* to the option letters (the letter with the highest next-token probability).
`standard`: multiple choice by length-normalised log-likelihood of each option's *text* after a plain
"Question: … Answer:" cloze prompt (lm-eval's acc_norm); free-form answers in `\\boxed{}` (MATH) or after
"The answer is" (numbers, BBH), extracted strictly. AdvBench prompts and the persona task's instructions
are the bare request in both.
Exercised by `taia eval --protocol paper|standard`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from taia.eval.task import LETTERS, Sample, Task

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


def request(task: Task, sample: Sample, protocol: Protocol, tokenizer: Any) -> Generation | Choice:
    """The one request that answers `sample` under `protocol`."""
    if task.kind == "mc" and protocol == "paper":
        text = f"{sample.question}\n{options_block(sample.options)}\n{PAPER_LETTER}"
        letters = tuple(LETTERS[: len(sample.options)])
        return Choice(chat(tokenizer, text), letters, normalise=False)
    if task.kind == "mc":
        return Choice(f"Question: {sample.question}\nAnswer:", tuple(f" {o}" for o in sample.options), True)
    if task.kind in ("refusal", "adoption"):  # the bare request: what the model does with it is the score
        return Generation(chat(tokenizer, sample.question), task.max_new_tokens)
    suffix = STANDARD_BOXED if protocol == "standard" and task.kind == "math" else PAPER_ANSWER
    return Generation(chat(tokenizer, f"{sample.question}\n{suffix}"), task.max_new_tokens)


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
