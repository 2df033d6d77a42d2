"""`metric_mode=reference`: the verdict the TAIA paper's own scoring code gives, task by task.

The paper scored generated answers with one function per data set (github pixas/TAIA_LLM,
taia/eval/eval_em.py; AdvBench with eval_advbench.py). This package restates those rules for the tasks taia
ships, rule for rule, including where they differ from what a task intends (gold "51" matches an answer of
"151" in SVAMP; MMedBench takes the first capital A-E of the response). The rules read the response
stripped of surrounding whitespace (the reference's generator stores it so). Where the reference raises
(LogiQA without "The answer is", MedQA without a capital A-E, a MATH solution without a box it can read) the
answer counts wrong and `Verdict.error` says so; `taia eval` writes it to the row as `reference_error`.
docs/evaluation.md lists each task's rule beside strict's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from taia.errors import TaiaError
from taia.eval.reference import rules
from taia.eval.reference.rules import Verdict
from taia.eval.scored import ScoredRow
from taia.eval.task import Sample

__all__ = ["RULES", "Verdict", "check_tasks", "judge", "scored_row"]

Rule = Callable[[str, str], Verdict]

# taia task (its family: `bbh:navigate` is `bbh`) → the reference's rule for the data set it names
RULES: dict[str, Rule] = {
    "gsm8k": rules.gsm8k,  # gsm8k_acc
    "svamp": rules.svamp,  # svamp_acc (the gold as the float SVAMP.json holds)
    "math": lambda response, gold: rules.math_answer(response, gold, None),  # math_acc
    "math500": lambda response, gold: rules.math_answer(response, gold, None),  # math_acc ("math_500")
    "commonsenseqa": rules.commonsenseqa,  # commonsense_qa_acc
    "logiqa": rules.logiqa,  # logiqa_en
    "bbh": rules.bbh,  # bbh_acc
    "mmlu": rules.mmlu,  # mmlu_acc (mc_acc)
    "medqa": rules.medqa,  # mmedbench_acc ("mmedbench_en" is MedQA-USMLE, 4 options)
    "advbench": rules.advbench,  # eval_advbench.py's prefix match
}
_MATH = ("math", "math500")


def judge(task: str, response: str, gold: str, solution: str | None = None) -> Verdict:
    """The reference's verdict on `response` to a sample of `task` (a family name: "bbh", not
    "bbh:navigate"), with `gold` as taia's loader gives it. MATH tasks compare against the row's full
    `solution` when given (the reference reads its first box, and in one case the whole solution); without
    it, against the gold alone. ValueError for a task the reference has no rule for."""
    if task not in RULES:
        raise ValueError(f"no reference rule for task {task!r}; the reference scores {', '.join(RULES)}")
    text = response.strip()
    if task in _MATH:
        return rules.math_answer(text, gold, solution)
    return RULES[task](text, gold)


def scored_row(task: str, sample: Sample, prompt: str, output: str) -> ScoredRow:
    """The row of `sample` answered by `output`, as the reference judges it (a MATH row against its full
    solution); `reference_error` / `reference_note` keys say where it crashed or taia did not run sympy."""
    verdict = judge(task, output, sample.gold, sample.meta.get("solution"))
    row = ScoredRow.of(sample, prompt, output, (verdict.extracted, verdict.correct))
    notes = {"reference_error": verdict.error, "reference_note": verdict.note}
    extra = {k: v for k, v in notes.items() if v is not None}
    return replace(row, extra=extra) if extra else row


def check_tasks(mode: str, families: Mapping[str, str]) -> None:
    """Under `mode` "reference", refuse (before anything is written) a task the reference has no rule for
    (persona adoption, a task file): its reference score would be made up. `families`: each task as
    given → its family (`taia.eval.tasks.task_family`)."""
    if mode != "reference":
        return
    for ref, family in families.items():
        if family not in RULES:
            raise TaiaError(
                f"metric_mode=reference: task {ref!r} has no rule in the reference code (it scores "
                f"{', '.join(RULES)}); use metric_mode=strict or flexible"
            )
