"""LaTeX answers (`math`: MATH, MATH-500): the last box or stated answer, compared by math-verify.

`standard` protocol asks for the answer in `\\boxed{}`; `paper` for "The answer is …". Exercised by
`taia eval --tasks math500 --protocol paper|standard` and tests/test_extract.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from taia.eval.extract import answer_phrase, extract_number, last_boxed, math_equal
from taia.eval.kinds.base import Scored, Scoring, TaskKind
from taia.eval.protocol import PAPER_ANSWER, STANDARD_BOXED


class Math(TaskKind):
    name = "math"
    instruction: ClassVar[Mapping[str, str] | None] = {"paper": PAPER_ANSWER, "standard": STANDARD_BOXED}

    def judge(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        """The last `\\boxed{}`, else the `answer_phrase` (flexible: else the last number), compared by
        `math_equal` with the gold (a gold written as a whole solution is reduced to its last box first)."""
        got = last_boxed(response)
        if got is None:
            got = answer_phrase(response)
        if got is None and how.mode != "strict":
            got = extract_number(response, strict=False)
        gold_answer = last_boxed(gold) or gold
        return got, got is not None and math_equal(got, gold_answer)


KIND = Math()
