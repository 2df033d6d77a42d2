"""What every task kind answers: the request it makes, how a response is scored, its metric and direction.

A kind (`taia.eval.task.Kind`) is one `TaskKind` object in its own module beside this one; the runner asks
the task's kind instead of branching on its name. Exercised by `taia eval --tasks gsm8k,csqa,advbench`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from taia.errors import TaiaError
from taia.eval import reference
from taia.eval.metrics import metric
from taia.eval.persona import Matcher
from taia.eval.protocol import PAPER_ANSWER, Choice, Generation, Protocol, chat
from taia.eval.task import Sample, Task

MODES = ("strict", "flexible", "reference")
Scored = tuple[str | None, bool]  # (the extracted answer, correct)


@dataclass(frozen=True)
class Scoring:
    """How generated answers are judged: the extraction mode, the persona matcher adoption needs, and the
    task (its family, "bbh" for "bbh:navigate") that `reference` mode picks its rule by."""

    mode: str = "strict"
    matcher: Matcher | None = None
    task: str | None = None


class TaskKind:
    """One task kind. Subclasses set `name` (and `metric` when it is not accuracy) and `judge`; the
    request is a generation: the question with the `instruction` of the protocol (by default the paper's
    "The answer is …" in both), or the bare question when `instruction` is None."""

    name: ClassVar[str]
    metric: ClassVar[str] = "accuracy"  # a key of `taia.eval.metrics.METRICS`
    gold: ClassVar[bool] = True  # scored against a gold answer (a task file must map one)
    options: ClassVar[bool] = False  # its samples have options (mc), and only its samples do
    # Scored by the persona matcher (adoption): the run needs one, its held-out samples leave out the
    # training prompts, stored answers are scored again on every run (a changed pattern needs no new
    # answers), and the row keeps the question, shown beside the answer in reports.
    persona: ClassVar[bool] = False
    instruction: ClassVar[Mapping[str, str] | None] = {"paper": PAPER_ANSWER, "standard": PAPER_ANSWER}

    @property
    def lower_is_better(self) -> bool:
        """The metric's direction, from the one metric table."""
        return metric(self.metric).lower_is_better

    def request(self, task: Task, sample: Sample, protocol: Protocol, tokenizer: Any) -> Generation | Choice:
        """The one request that answers `sample` under `protocol`."""
        suffix = self.instruction[protocol] if self.instruction is not None else None
        user = f"{sample.question}\n{suffix}" if suffix is not None else sample.question
        return Generation(chat(tokenizer, user), task.max_new_tokens)

    def score(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        """(extracted answer, correct) of a generated response; an empty one is never correct, except
        where the reference code's rule says otherwise (`reference` mode: `taia.eval.reference`)."""
        if how.mode not in MODES:
            raise ValueError(f"unknown scoring mode {how.mode!r}; expected one of {MODES}")
        if how.mode == "reference":
            if how.task is None:
                raise ValueError("reference scoring follows the task's rule: give the task")
            verdict = reference.judge(how.task, response, gold)
            return verdict.extracted, verdict.correct
        if not response.strip():
            return None, False
        return self.judge(response, gold, n_options, how)

    def judge(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        raise NotImplementedError

    def pick(self, req: Choice, loglikelihoods: list[float], gold: str) -> tuple[str, bool]:
        """(chosen option, correct) of a choice request from its options' log-likelihoods (as scored)."""
        raise TaiaError(f"task kind {self.name!r} makes no choice requests")
