"""Short exact answers (`exact`, BBH): the answer after "The answer is", compared after normalisation.

Exercised by `taia eval --tasks bbh` and tests/test_extract.py.
"""

from __future__ import annotations

import re

from taia.eval.extract import answer_phrase, clean_markup, last_boxed
from taia.eval.kinds.base import Scored, Scoring, TaskKind

_END_PUNCT = " \t\n.,;:!?\"'`*"


def normalize_exact(s: str) -> str:
    """Normalise a short answer for exact comparison.

    Unwraps `\\text{}`, drops `**`, `$` and backticks, lowercases, collapses whitespace, strips whitespace
    and ".,;:!?'\"`*" at both ends (brackets are kept: BBH's Dyck answers are "] ) }"), and reduces a leading
    single-letter option "(A)" / "(A) Paris" to "a". Idempotent.
    """
    s = clean_markup(s).lower()
    s = re.sub(r"\s+", " ", s).strip(_END_PUNCT)
    m = re.match(r"^\(\s*([a-z])\s*\)(?:\s|$)", s)
    return m.group(1) if m else s


def extract_exact(text: str) -> str | None:
    """The short answer of a response, normalised by `normalize_exact`, or None.

    From the last `\\boxed{}`, else the `answer_phrase`, else the whole response when it is one line.
    """
    candidate = last_boxed(text)
    if candidate is None:
        candidate = answer_phrase(text)
    if candidate is None and text.strip() and "\n" not in text.strip():
        candidate = text
    if candidate is None:
        return None
    return normalize_exact(candidate) or None


class Exact(TaskKind):
    name = "exact"

    def judge(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        """`extract_exact` equals `normalize_exact(gold)`."""
        got = extract_exact(response)
        want = normalize_exact(gold)
        return got, got is not None and got == want


KIND = Exact()
