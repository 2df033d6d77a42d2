"""Where the TAIA reference code looks for an answer: its "answer is" spans and its `\\boxed{` scan.

These are the reference's own reading rules, restated (github pixas/TAIA_LLM, taia/eval/eval_em.py), and
they differ from taia's shared extraction in `taia.eval.extract` on purpose: the first match rather than the
last, case-sensitive phrases, the span ending at the first "." (so "3.5" reads as "3"), no escaped braces.
"""

from __future__ import annotations

import re

# The reference searches two case-sensitive phrases separately, each up to the first "." after it on the
# same line (`.` in a pattern never crosses a newline).
_LOWER_RE = re.compile(r"the answer is (.*?)\.")
_UPPER_RE = re.compile(r"The answer is (.*?)\.")
_BOX = "\\boxed{"


def answer_spans(text: str) -> list[str | None]:
    """The reference's candidate answers: the first "the answer is X." span, then the first "The answer
    is X." span; `[None]` when neither occurs (callers then test `str(None)`, i.e. "None", as it does)."""
    lower, upper = _LOWER_RE.search(text), _UPPER_RE.search(text)
    found = [m.group(1) for m in (lower, upper) if m is not None]
    return found if found else [None]


def first_found(spans: list[str | None]) -> str | None:
    """What to show as extracted: the first span found, or None."""
    return next((s for s in spans if s is not None), None)


def boxes(text: str) -> list[str]:
    """Every closed `\\boxed{…}` content in order, braces counted with no escapes (`\\{` counts as a
    brace). A box inside a box is part of the outer one's content, not listed; a box never closed takes the
    rest of the text, so neither it nor any box after it is listed. Only the exact `\\boxed{` opens one:
    `\\boxed {5}`, `\\boxed 5` and `\\fbox{5}` do not."""
    out = []
    i = 0
    while i < len(text):
        if not text.startswith(_BOX, i):
            i += 1
            continue
        i += len(_BOX)
        start, depth = i, 1
        while i < len(text) and depth > 0:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    out.append(text[start:i])
            i += 1
    return out
