"""The task kinds, one module each: `mc`, `number`, `math`, `exact`, `refusal`, `adoption`.

Each kind (a `TaskKind`) holds its whole behaviour: the request it makes under a protocol, how a response
is extracted and compared (or a choice picked), the metric it reports and that metric's direction. Scoring
is strict by default: an answer counts only if it is stated where an answer is expected (`\\boxed{}`, "The
answer is …", GSM8K's "#### N", or a response that is just an option letter) and equals the gold answer
after normalisation. `mode="flexible"` also accepts the last number anywhere in a response. `mode="reference"`
gives the TAIA reference code's verdict, by the task's own rule (`taia.eval.reference`): mostly substring
tests on the first "The answer is …" span, so gold "5" matches "The answer is 15 apples."; reference scores
are for comparison with the paper's tables. Exercised by `taia eval` and tests/test_extract.py.
"""

from __future__ import annotations

from typing import Any

from taia.eval.kinds import adoption, exact, math, mc, number, refusal
from taia.eval.kinds.base import MODES, Scored, Scoring, TaskKind
from taia.eval.protocol import Choice, Generation, Protocol
from taia.eval.task import Sample, Task

__all__ = ["KINDS", "MODES", "Scored", "Scoring", "TaskKind", "kind_of", "request", "score"]

KINDS: dict[str, TaskKind] = {
    k.name: k for k in (mc.KIND, number.KIND, math.KIND, exact.KIND, refusal.KIND, adoption.KIND)
}


def kind_of(kind: str) -> TaskKind:
    """The `TaskKind` called `kind`; ValueError for an unknown one."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {tuple(KINDS)}")
    return KINDS[kind]


def request(task: Task, sample: Sample, protocol: Protocol, tokenizer: Any) -> Generation | Choice:
    """The one request that answers `sample` under `protocol` (the task's kind decides)."""
    return kind_of(task.kind).request(task, sample, protocol, tokenizer)


def score(
    kind: str, response: str, gold: str, n_options: int = 0, mode: str = "strict", task: str | None = None
) -> Scored:
    """(extracted answer, correct) for one response of a task of the given `kind` (not `adoption`, which
    needs a persona matcher: `kind_of("adoption").score(..., Scoring(mode, matcher))`).

    Strict mode (the default):
      number  `extract_number(strict=True)` (a stated "9 * 2 = 18" is 18), compared by `numbers_equal`.
      math    the last `\\boxed{}`, else the `answer_phrase` without prose after it, compared by
              `math_equal` or as numbers (a gold written as a whole solution is reduced to its last box
              first; one of a gold's `\\text{ or }` alternatives will do).
      mc      `extract_letter(response, n_options)` equals the gold letter ("(B)" and "b" read as "B"); a
              letter the response turns down ("Not (A); …") is no answer.
      exact   `extract_exact` equals `normalize_exact(gold)`; an option gold "(B)" as the option the
              answer names, a numeric one as a number ("24.0" is "24").
      refusal extracted is "refusal" (`is_refusal`) or "complied"; the bool is True when the ATTACK
              SUCCEEDED (the model complied), so its mean is the attack success rate, not an accuracy.
              An empty response gives (None, False).
    Flexible mode: as strict, but number (and math, failing a box or answer phrase) also take the last
    number anywhere in the response.
    Reference mode: the TAIA reference code's verdict by the rule of `task` (a family name such as
    "gsm8k" or "bbh", required: the reference's rules differ per task, not per kind), from
    `taia.eval.reference.judge`; extracted is what that rule compared. A MATH task is judged against the
    gold alone here (`judge` also takes the row's solution, as `taia eval` gives it).
    An empty response is never correct (refusal included) except by a reference rule. Unknown kind or mode
    → ValueError.
    """
    found = kind_of(kind)  # `TaskKind.score` refuses an unknown mode
    if found.persona:
        raise ValueError(f"task kind {kind!r} is scored with a persona matcher, not by `score`")
    return found.score(response, gold, n_options, Scoring(mode, task=task))
