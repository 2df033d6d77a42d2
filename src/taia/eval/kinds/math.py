"""LaTeX answers (`math`: MATH, MATH-500): the last box or stated answer, compared by math-verify.

`standard` protocol asks for the answer in `\\boxed{}`; `paper` for "The answer is …". A gold may list
alternatives joined by `\\text{ or }` (any one is right: MATH's "either point is a correct answer"); a gold
listing several answers separated by commas needs them all. `solution_gold` writes both from a MATH
solution with several boxes. Exercised by `taia eval --tasks math500 --protocol paper|standard` and
tests/test_extract.py, tests/test_scoring.py.
"""

from __future__ import annotations

import math as _math
import re
from collections.abc import Mapping
from typing import ClassVar

from taia.eval.extract import (
    all_boxed,
    answer_phrase,
    extract_number,
    last_boxed,
    lone_number,
    math_answer,
    math_equal,
    normalize_math,
)
from taia.eval.kinds.base import Scored, Scoring, TaskKind
from taia.eval.protocol import PAPER_ANSWER, STANDARD_BOXED

OR = " \\text{ or } "  # between a gold's alternatives
_OR_RE = re.compile(r"\s*\\text\s*\{\s*or\s*\}\s*")
# a problem that asks for every answer ("Find all solutions", "separated by commas")
_ALL_RE = re.compile(r"separated by comma|\b(?:find|enter) all\b", re.IGNORECASE)
# a solution offering another box as equally right ("$\boxed{3}$ is also accepted", "- OR -", "Either …")
_EITHER_RE = re.compile(r"\b(?:or|either|also|alternatively|accept(?:ed|able))\b", re.IGNORECASE)


def solution_gold(problem: str, solution: str) -> str | None:
    """The gold answer of a MATH solution: its last `\\boxed{}`, unless its boxes differ (23 of the 5000
    test solutions): then all of them joined by ", " when the problem asks for every answer ("Find all
    solutions"), or alternatives joined by `OR` when the text after the first box offers another
    ("$\\boxed{3}$ is also accepted", "- OR -"); else still the last box (an earlier one is a step, as in
    "in the form requested, … = \\boxed{161}"). Boxes equal after `normalize_math` and `\\phantom`
    placeholders count once. None when the last box is unclosed or empty."""
    last = last_boxed(solution, skip_unclosed=False)
    if last is None or not last.strip():
        return None
    boxes = [b.strip() for b in all_boxed(solution) if b.strip() and "\\phantom" not in b]
    distinct: dict[str, str] = {}
    for box in boxes:
        distinct.setdefault(normalize_math(box), box)
    if len(distinct) < 2:
        return last
    if _ALL_RE.search(problem):
        return ", ".join(distinct.values())
    after_first = solution[solution.index("\\boxed") :] if "\\boxed" in solution else ""
    return OR.join(distinct.values()) if _EITHER_RE.search(after_first) else last


def _equal(got: str, want: str) -> bool:
    """`math_equal`, or the same number written two ways (0.5 and 1/2 without math-verify too)."""
    if math_equal(got, want):
        return True
    x, y = lone_number(got), lone_number(want)
    return x is not None and y is not None and _math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


class Math(TaskKind):
    name = "math"
    instruction: ClassVar[Mapping[str, str] | None] = {"paper": PAPER_ANSWER, "standard": STANDARD_BOXED}

    def judge(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        """The last `\\boxed{}`, else the `answer_phrase` without prose after it (`math_answer`; flexible:
        else the last number), compared with the gold (a whole solution is reduced to its last box first;
        any of its `OR` alternatives will do) by `math_equal`, or as numbers."""
        got = last_boxed(response)
        if got is None:
            phrase = answer_phrase(response)
            got = math_answer(phrase) if phrase is not None else None
        if got is None and how.mode != "strict":
            got = extract_number(response, strict=False)
        gold_answer = last_boxed(gold) or gold
        return got, got is not None and any(_equal(got, alt) for alt in _OR_RE.split(gold_answer))


KIND = Math()
