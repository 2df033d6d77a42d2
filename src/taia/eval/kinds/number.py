"""Numeric answers (`number`: GSM8K, SVAMP): the stated number, compared within a relative tolerance.

Exercised by `taia eval --tasks gsm8k,svamp` and tests/test_extract.py.
"""

from __future__ import annotations

from taia.eval.extract import extract_number, numbers_equal
from taia.eval.kinds.base import Scored, Scoring, TaskKind


class Number(TaskKind):
    name = "number"

    def judge(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        """`extract_number` (strict: only where an answer is stated; flexible: else the last number
        anywhere), compared by `numbers_equal`."""
        got = extract_number(response, strict=how.mode == "strict")
        return got, got is not None and numbers_equal(got, gold)


KIND = Number()
