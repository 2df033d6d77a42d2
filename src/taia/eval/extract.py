"""Answer extraction helpers the task kinds share: pure functions from a model's response to an answer.

Where an answer is stated (`\\boxed{}`, "The answer is …", GSM8K's "#### N"), numbers (read, compared),
markup cleaning, and LaTeX comparison (math-verify, or normalised strings without it). Each task kind's own
scoring (strict, flexible, reference) is in `taia.eval.kinds`. Exercised by `taia eval` and
tests/test_extract.py.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "MATH_VERIFY",
    "all_boxed",
    "answer_phrase",
    "clean_markup",
    "extract_number",
    "format_number",
    "last_boxed",
    "lone_number",
    "math_answer",
    "math_equal",
    "normalize_math",
    "numbers_equal",
    "parse_number",
]

log = logging.getLogger(__name__)

# True when math-verify and its ANTLR LaTeX runtime are installed (`pip install "taia[eval]"` plus
# `math-verify[antlr4_13_2]`). Without them `math_equal` compares normalised strings; reports should say so.
# Checked without importing (importing math-verify costs ~0.5 s); reset to False if the import fails on use.
MATH_VERIFY: bool = (
    importlib.util.find_spec("math_verify") is not None and importlib.util.find_spec("antlr4") is not None
)

# --------------------------------------------------------------------------------------------------------
# Where the answer is stated

# "The answer is X", "The final answer is X", "Answer: X", "**Final Answer:** X", "answer is: X".
_ANSWER_RE = re.compile(r"\banswer(?:\*\*|__)?\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
_GSM8K_RE = re.compile(r"####\s*([^\n]*)")
_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_MAX_NESTING = 8  # wrapper / \\text{} layers undone, at most
_WRAPPERS = (("**", "**"), ("__", "__"), ("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("`", "`"))


def _strip_wrappers(s: str) -> str:
    """Strip whitespace, trailing sentence punctuation, and markdown/math wrappers (`**x**`, `$x$`, …)."""
    for _ in range(_MAX_NESTING):  # bounded: a degenerate "$$$$…" line must not cost quadratic time
        prev = s
        s = s.strip().rstrip(".,;!").strip()
        for left, right in _WRAPPERS:
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left) : len(s) - len(right)]
        # an unpaired marker left over from "**Answer:** 5" or "Answer: **5"
        for mark in ("**", "__"):
            if s.startswith(mark) and mark not in s[len(mark) :]:
                s = s[len(mark) :]
            if s.endswith(mark) and mark not in s[: -len(mark)]:
                s = s[: -len(mark)]
        if s == prev:
            break
    return s


def answer_phrase(text: str) -> str | None:
    """The answer stated after the last "the answer is" / "answer:" / "final answer:" (case-insensitive).

    Takes the rest of that line (or the next non-empty line when the phrase ends its line), up to the end
    of the sentence (a "." followed by whitespace, so decimals survive), then strips trailing ".", ",", ";",
    whitespace, and `**…**`, `$…$`, `\\(…\\)` wrappers; a phrase that is just `\\boxed{X}` becomes X.
    Occurrences with nothing after them are skipped in favour of the previous one. None when there is none.
    """
    for m in reversed(list(_ANSWER_RE.finditer(text))):
        start = m.end()
        while start < len(text) and text[start].isspace():
            start += 1
        stop = text.find("\n", start)
        line = text[start : stop if stop >= 0 else len(text)]
        end = _SENTENCE_END_RE.search(line)
        phrase = _strip_wrappers(line[: end.start()] if end else line)
        boxed = last_boxed(phrase)
        if boxed is not None and _strip_wrappers(phrase) in (f"\\boxed{{{boxed}}}", f"\\fbox{{{boxed}}}"):
            phrase = boxed.strip()
        if phrase:
            return phrase
    return None


def _closing_braces(text: str, start: int = 0) -> dict[int, int]:
    """Index of each "{" from `start` on → index of its matching "}" (`\\{`, `\\}` are not groups)."""
    closes: dict[int, int] = {}
    stack: list[int] = []
    i = start
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2  # an escaped character never opens or closes a group
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            closes[stack.pop()] = i
        i += 1
    return closes


def last_boxed(text: str, skip_unclosed: bool = True) -> str | None:
    """The content of the last complete `\\boxed{…}` or `\\fbox{…}`, nested braces included.

    `\\boxed{\\frac{1}{2}}` gives `\\frac{1}{2}`; `\\{`, `\\}` are literal braces, not groups; the brace-less
    `\\boxed 5` gives `5`. A box left unclosed (a truncated response) is skipped in favour of an earlier
    complete one; with `skip_unclosed=False` it gives None instead, as golds need: a solution's answer is
    its last box, and an earlier one is not it. None when there is none.
    """
    boxes = list(_BOX_RE.finditer(text))
    if not boxes:
        return None
    closes = _closing_braces(text, boxes[0].start())
    for m in reversed(boxes):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            if i in closes:
                return text[i + 1 : closes[i]]
            if not skip_unclosed:
                return None
        elif i > m.end():  # "\boxed 5": one token, up to whitespace or "$"
            token = re.match(r"[^\s$]+", text[i:])
            if token:
                return token.group(0)
    return None


def all_boxed(text: str) -> list[str]:
    """The contents of every complete `\\boxed{…}` / `\\fbox{…}`, in order (an unclosed one is left out)."""
    boxes = list(_BOX_RE.finditer(text))
    closes = _closing_braces(text, boxes[0].start()) if boxes else {}
    out = []
    for m in boxes:
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i in closes and text[i] == "{":
            out.append(text[i + 1 : closes[i]])
    return out


# --------------------------------------------------------------------------------------------------------
# Numbers

_NUM = r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
# a sign counts only when it does not follow a word or ")" ("3-4" is 3 and 4, "x = -4" is -4)
_NUMBER_RE = re.compile(rf"(?P<sign>(?<![\w)])[-+])?(?P<num>{_NUM})(?:[ ]{{0,2}}/[ ]{{0,2}}(?P<den>{_NUM}))?")
_LATEX_FRAC_RE = re.compile(
    rf"(?P<sign>(?<![\w)])[-+])?[ ]{{0,2}}(?:(?<!\d)(?P<whole>\d+)[ ]{{0,2}})?\\frac\s*"
    rf"(?:\{{\s*(?P<a>[-+]?{_NUM})\s*\}}|(?P<a1>\d))\s*(?:\{{\s*(?P<b>[-+]?{_NUM})\s*\}}|(?P<b1>\d))"
)
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
# LaTeX left after numeric fractions are evaluated that makes a short answer not a plain number
_NOT_A_NUMBER = ("\\frac", "\\sqrt", "\\pi", "\\infty")


_MARKUP_RE = re.compile(r"\*\*|__|`|\$")


def clean_markup(text: str) -> str:
    """Unwrap `\\text{}`-like commands; drop `**`, `__`, backticks and `$` (option letters, short answers)."""
    text = _TEXT_CMD_RE.sub(r"\1", text)
    return _MARKUP_RE.sub("", text)


def _to_float(num: str) -> float:
    return float(num.replace(",", ""))


def _fraction(m: re.Match[str]) -> str:
    """Replace a numeric `\\frac{a}{b}` (or mixed `2\\frac{1}{2}`) with its decimal value."""
    a, b = _to_float(m["a"] or m["a1"]), _to_float(m["b"] or m["b1"])
    if b == 0:
        return m.group(0)  # left as LaTeX, so `parse_number` refuses it
    value = (_to_float(m["whole"]) if m["whole"] else 0.0) + a / b
    return ("-" if m["sign"] == "-" else "") + repr(value)


def _normalize_numeric(s: str) -> str:
    """Rewrite units, currency, thin spaces and numeric LaTeX fractions so `_NUMBER_RE` reads the numbers."""
    s = s.replace("\u2212", "-").replace("\u00a0", " ").replace("\u2009", " ")
    s = s.replace("{,}", "")  # 1{,}000
    s = re.sub(r"\\[!,;:]", "", s)  # 1\!000, 1\,000
    s = s.replace("\\ ", " ").replace("\\$", " ").replace("$", " ").replace("\\%", " ").replace("%", " ")
    s = s.replace("\\left", "").replace("\\right", "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    for _ in range(_MAX_NESTING):  # nested \text{\textbf{…}}
        s, n = _TEXT_CMD_RE.subn(r" \1 ", s)
        if n == 0:
            break
    return _LATEX_FRAC_RE.sub(_fraction, s)


def _numbers(normalized: str) -> list[float]:
    """Every number in an already-normalised string, in order (fractions a/b evaluated)."""
    out = []
    for m in _NUMBER_RE.finditer(normalized):
        value = _to_float(m["num"])
        if m["den"] is not None:
            den = _to_float(m["den"])
            if den == 0:
                continue
            value /= den
        out.append(-value if m["sign"] == "-" else value)
    return out


def parse_number(s: str) -> float | None:
    """The first number in a short answer string, or None.

    Reads "1,234", "$1,234.50", "\\$5", "-3", "−3" (unicode minus), "3.", ".5", "1e3", "3/4", "12 apples",
    "50%" (50: a percent sign is ignored, as GSM8K golds are written without it), "\\frac{3}{4}",
    "\\dfrac34", "-2\\frac{1}{2}" (a mixed number: -2.5), "12\\text{ cm}", "1\\!000" and "1{,}000".
    Returns None when the string has no number, or holds LaTeX that is not a plain number
    ("\\frac{\\sqrt{2}}{2}", "2\\pi") rather than misreading a digit inside it.
    """
    t = _normalize_numeric(s)
    if any(cmd in t for cmd in _NOT_A_NUMBER):
        return None
    found = _numbers(t)
    return found[0] if found else None


def format_number(x: float) -> str:
    """A canonical string for a number: "1234" for integral values, else Python's shortest repr."""
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def lone_number(s: str) -> float | None:
    """The value of a string that is one number and nothing else ("24.0", "−50", "$1,000", "1/2",
    "\\frac{1}{2}"), or None: "12 apples" and "3, 5" are not lone numbers (`parse_number` reads their
    first)."""
    t = _normalize_numeric(_strip_wrappers(s)).strip().rstrip(".").strip()
    if any(cmd in t for cmd in _NOT_A_NUMBER):
        return None
    m = _NUMBER_RE.fullmatch(t)
    return _numbers(t)[0] if m and _numbers(t) else None


def _result(candidate: str) -> str:
    """A stated expression's result: of "9 * 2 = 18" the side that is a lone number (the last such),
    else the last side; a candidate without "=" as it is."""
    sides = candidate.split("=")
    if len(sides) == 1:
        return candidate
    lone = [side for side in sides if lone_number(side) is not None]
    return lone[-1] if lone else sides[-1]


def extract_number(text: str, strict: bool = True) -> str | None:
    """The numeric answer of a response, as a canonical string (`format_number`), or None.

    Looks, in order, in the last `\\boxed{}`, the `answer_phrase`, and the last GSM8K "#### N"; the first of
    these that holds a number wins; a stated expression is read as its result ("9 * 2 = 18" is 18). With
    `strict=False` ("flexible"), falls back to the last number anywhere in the response. Compare the result
    with `numbers_equal`.
    """
    gsm8k = _GSM8K_RE.findall(text)
    for candidate in (last_boxed(text), answer_phrase(text), gsm8k[-1] if gsm8k else None):
        if candidate is not None:
            value = parse_number(_result(candidate))
            if value is not None:
                return format_number(value)
    if not strict:
        found = _numbers(_normalize_numeric(text))
        if found:
            return format_number(found[-1])
    return None


def numbers_equal(a: str | float, b: str | float, rel_tol: float = 1e-6) -> bool:
    """Whether two numbers (strings read by `parse_number`, or floats) are equal within `rel_tol`.

    "1,000" equals "1000.0"; an absolute tolerance of 1e-9 lets values near zero compare. A side that is
    not a number makes the answer False.
    """
    x = parse_number(a) if isinstance(a, str) else float(a)
    y = parse_number(b) if isinstance(b, str) else float(b)
    if x is None or y is None:
        return False
    return math.isclose(x, y, rel_tol=rel_tol, abs_tol=1e-9)


# --------------------------------------------------------------------------------------------------------
# LaTeX math answers (MATH)


def normalize_math(s: str) -> str:
    """A LaTeX answer reduced for string comparison (the fallback when math-verify is not installed).

    Unwraps `\\text{}`-like commands; strips `$` wrappers, `\\left`/`\\right`, `\\!`, `\\,`, `\\;`,
    `\\displaystyle`, degree marks and all whitespace, turns `\\dfrac`/`\\tfrac` into `\\frac`, and drops
    a trailing ".".
    """
    s = _strip_wrappers(s)
    for _ in range(_MAX_NESTING):  # \\text{Evelyn} is Evelyn
        s, n = _TEXT_CMD_RE.subn(r"\1", s)
        if n == 0:
            break
    for token in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle", "^\\circ", "^{\\circ}"):
        s = s.replace(token, "")
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".")


# where prose starts after an answer: a lower-case word ("since", "which", "dollars"), but not "and" / "or"
_PROSE_RE = re.compile(r"[,;:]?\s+(?=(?!(?:and|or)\b)[a-z]{2,}\b)")


def math_answer(phrase: str) -> str:
    """A stated LaTeX answer without the prose after it: "$\\frac{1}{2}$, which is …" gives `\\frac{1}{2}`,
    "x+11 since …" gives "x+11". The answer ends before the first lower-case word outside braces
    (`\\text{ cm}` stays), "and" and "or" excepted; then its `$…$`-like wrappers are stripped."""
    groups = _closing_braces(phrase).items()
    for m in _PROSE_RE.finditer(phrase):
        if m.start() > 0 and not any(a < m.start() < b for a, b in groups):
            return _strip_wrappers(phrase[: m.start()])
    return phrase


_MAX_MATH_CHARS = 1000  # longer "answers" are rambling, not LaTeX: not worth math-verify's time
_math_verify_fns: tuple[Callable[..., Any], Callable[..., Any]] | None = None


def _math_verify() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """(parse, verify) from math-verify, imported on first use; None when unavailable."""
    global MATH_VERIFY, _math_verify_fns
    if _math_verify_fns is None and MATH_VERIFY:
        try:
            from math_verify import parse, verify
        except ImportError as e:  # e.g. installed without its ANTLR runtime
            log.warning("math-verify unusable (%s); MATH answers are compared as normalised strings", e)
            MATH_VERIFY = False
            return None
        _math_verify_fns = (parse, verify)
    return _math_verify_fns


def math_equal(pred: str, gold: str, timeout_s: int = 5) -> bool:
    """Whether a LaTeX answer equals the gold one: normalised strings first, then math-verify.

    math-verify compares symbolically: "0.5" = "\\frac{1}{2}" = "1/2", "\\sqrt{2}/2" = "\\frac{\\sqrt{2}}{2}",
    "[1,3)" ≠ "(1,3)", and an equation "x=3" = "3" (it compares a solved variable's value; MATH golds
    never need the variable). Both sides are wrapped in `\\boxed{}` so bare LaTeX parses. Each parse and the
    comparison are limited to `timeout_s` seconds on the main thread (math-verify's SIGALRM timeout cannot
    run elsewhere, so other threads run without one); any error counts as not equal, and so does a side
    longer than 1000 characters. `MATH_VERIFY` says whether math-verify was available.
    """
    if normalize_math(pred) == normalize_math(gold):
        return True
    fns = _math_verify()
    if fns is None or len(pred) > _MAX_MATH_CHARS or len(gold) > _MAX_MATH_CHARS:
        return False
    parse, verify = fns
    timeout = timeout_s if threading.current_thread() is threading.main_thread() else None
    try:
        gold_parsed = parse(f"\\boxed{{{gold.replace('$', '')}}}", parsing_timeout=timeout)
        pred_parsed = parse(f"\\boxed{{{pred.replace('$', '')}}}", parsing_timeout=timeout)
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception as e:  # noqa: BLE001 — math-verify raises assorted sympy/antlr/timeout errors
        log.debug("math-verify failed on %r vs %r: %s", pred, gold, e)
        return False
