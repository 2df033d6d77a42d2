"""Short exact answers (`exact`, BBH): the answer after "The answer is", compared after normalisation.

Exercised by `taia eval --tasks bbh` and tests/test_extract.py.
"""

from __future__ import annotations

import math
import re

from taia.eval.extract import answer_phrase, clean_markup, last_boxed, lone_number
from taia.eval.kinds.base import Scored, Scoring, TaskKind
from taia.eval.kinds.mc import mentioned

_END_PUNCT = " \t\n.,;:!?\"'`*"


def normalize_exact(s: str) -> str:
    """Normalise a short answer for exact comparison.

    Unwraps `\\text{}`, drops `**`, `$` and backticks, lowercases, reads "−" as "-", collapses whitespace,
    strips whitespace and ".,;:!?'\"`*" at both ends (brackets are kept: BBH's Dyck answers are "] ) }"),
    and reduces a leading single-letter option "(A)" / "(A) Paris" to "a". Idempotent.
    """
    s = clean_markup(s).lower().replace("\u2212", "-")  # a unicode minus is "-"
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


_OPTION_RE = re.compile(r"^\(([a-z])\)$")
_MENTION_RE = re.compile(r"\(([a-z])\)")


def _option_letter(got: str) -> str | None:
    """The option a stated answer names: itself when it is a letter ("b", from "(B) Bob"), else the one
    "(x)" it mentions and does not turn down ("bob (b)", "(b), not (a)"); None otherwise."""
    if len(got) == 1:
        return got
    letters = {x.lower() for x in mentioned(got, _MENTION_RE)}
    return letters.pop() if len(letters) == 1 else None


def _same(got: str, gold: str) -> bool:
    """Strict equality of a stated answer and the gold: an option gold ("(B)") is matched as an option,
    a numeric one as a number ("24.0" is "24"), any other as the normalised string."""
    want = normalize_exact(gold)
    if _OPTION_RE.match(gold.strip().lower()):
        return _option_letter(got) == want
    x, y = lone_number(got), lone_number(want)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    return got == want


class Exact(TaskKind):
    name = "exact"

    def judge(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        """`extract_exact` equals the gold (`_same`: as an option, a number, or the normalised string)."""
        got = extract_exact(response)
        return got, got is not None and _same(got, gold)


KIND = Exact()
