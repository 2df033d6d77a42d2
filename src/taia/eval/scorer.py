"""`taia.eval.score(task, response, gold)`: one response to a built-in task's question, scored as `taia eval`
scores it, without a model, a data set or torch.

The task's kind decides the rule (`taia.eval.kinds`) and `mode` picks among the scoring modes the kinds
support (`taia.eval.kinds.MODES`; "strict" by default). `taia score RUN_DIR --mode M` re-scores a whole
eval's stored answers with the same call (`taia.eval.rescore`).
"""

from __future__ import annotations

from taia.errors import TaiaError
from taia.eval.kinds import MODES, Scoring, kind_of
from taia.eval.task import LETTERS
from taia.eval.tasks import get_task, task_family

__all__ = ["score"]


def score(
    task: str, response: str, gold: str, mode: str = "strict", n_options: int | None = None
) -> tuple[str | None, bool]:
    """(the answer read from `response`, whether it is right) for a question of `task`.

    `task` is a task name ("gsm8k", "math", "bbh:navigate", an alias such as "csqa", or a task file);
    `gold` is written as that task's samples store it (`samples/*.jsonl` "gold": "18", "(B)", a MATH
    answer). `n_options` bounds the letters a multiple-choice answer may name; by default any letter, which
    changes what is read only for a letter beyond the options, never whether it is right. For `advbench`
    the bool is True when the model complied (the attack succeeded). Persona adoption needs a matcher
    (`taia eval --tasks persona`) and is refused, as are an unknown task and an unknown mode (TaiaError).
    `mode="reference"` follows the rule of the task's family (a MATH answer judged against `gold` alone:
    `taia eval` also gives the reference the row's whole solution); a task it has no rule for is refused.
    """
    if mode not in MODES:
        raise TaiaError(f"unknown scoring mode {mode!r}; expected one of {', '.join(MODES)}")
    kind = kind_of(get_task(task).kind)
    if kind.persona:
        raise TaiaError(
            f"task {task!r} is scored by a persona matcher (taia eval --tasks {task}), not by score"
        )
    if n_options is None:
        n_options = len(LETTERS) if kind.options else 0
    try:
        return kind.score(response, gold, n_options, Scoring(mode, task=task_family(task)))
    except ValueError as e:  # reference mode: a task without a rule of the paper's code
        raise TaiaError(str(e)) from None
