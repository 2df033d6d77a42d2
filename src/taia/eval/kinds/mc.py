"""Multiple choice (`mc`): options with a gold letter, answered by choosing among the option letters.

`paper` protocol: the question, its lettered options and "answer with the option letter", and the answer is
the letter with the highest next-token log-likelihood (constrained, so never unparseable). `standard`: a
plain "Question: … Answer:" cloze prompt, each option's text scored by its log-likelihood divided by its
length in characters (lm-eval's acc_norm). A generated response (`taia.eval.kinds.score`) is read by
`extract_letter`. Exercised by `taia eval --tasks csqa,mmlu --protocol paper|standard`.
"""

from __future__ import annotations

import re
from typing import Any

from taia.eval.extract import answer_phrase, clean_markup, last_boxed
from taia.eval.kinds.base import Scored, Scoring, TaskKind
from taia.eval.protocol import PAPER_LETTER, Choice, Generation, Protocol, chat, options_block
from taia.eval.task import LETTERS, Sample, Task

# at the start: "(B)", "[B]", "B." / "B)" / "B:" / "B" at the end, or "B " (a word, for A and I)
_LEADING_LETTER_RE = re.compile(
    r"^\s*(?:\(\s*(?P<paren>[A-Za-z])\s*\)|\[\s*(?P<bracket>[A-Z])\s*\]"
    r"|(?P<punct>[A-Z])(?=[.):\]]|\s*$)|(?P<bare>[A-Z])(?=\s))"
)
_OPTION_WORD_RE = re.compile(r"^\s*(?:option|choice|letter)\b\s*:?", re.IGNORECASE)
_ONLY_LETTER_RE = re.compile(r"^[\W_]*([A-Za-z])[\W_]*$")
_ANYWHERE_LETTER_RE = re.compile(r"\(([A-Z])\)|\b(?:[Oo]ption|[Cc]hoice)\s+([A-Z])\b")
_WORD_LETTERS = frozenset("AI")  # one-letter English words: "A dog is …", "I think …"


# a mention the response turns down: "not (A)", "rule out (A)", "(A) is wrong", "(A) can't be right"
_REJECT_BEFORE_RE = re.compile(
    r"(?:\bnot|n't|\bnor|\brul(?:e|ed|ing) out|\bexcept|\beliminat\w*|\bexclud\w*)"
    r"\s*(?:option\s+|choice\s+)?$",
    re.IGNORECASE,
)
_REJECT_AFTER_RE = re.compile(
    r"^[\s.)\]*\"']*(?:is|are|was|seems|looks)?\s*(?:not\b|n't|wrong|incorrect|false|invalid|impossible"
    r"|ruled out|eliminated|can(?:'t|not) be)",
    re.IGNORECASE,
)


def rejected(text: str, start: int, end: int) -> bool:
    """Whether the option mention `text[start:end]` is turned down ("not (A)", "(A) is wrong"), so it
    is no answer."""
    return bool(
        _REJECT_BEFORE_RE.search(text[max(0, start - 30) : start]) or _REJECT_AFTER_RE.match(text[end:])
    )


def _leading_letter(s: str, allow_word: bool) -> str | None:
    """The option letter a string starts with ("(B) …", "B. …", "B) …", "Option B …"), or None; also None
    when the string turns it down ("(A) is wrong, …").

    A bare capital followed by a space ("B is right") counts, except "A"/"I" (an article or pronoun) unless
    `allow_word` (inside an answer phrase).
    """
    s = _OPTION_WORD_RE.sub("", s, count=1)
    m = _LEADING_LETTER_RE.match(s)
    if m is None or rejected(s, m.start(), m.end()):
        return None
    if m["bare"] is not None and m["bare"] in _WORD_LETTERS and not allow_word:
        return None
    letter = m["paren"] or m["bracket"] or m["punct"] or m["bare"]
    return letter.upper()


def mentioned(text: str, pattern: re.Pattern[str]) -> list[str]:
    """The letters `pattern` finds in `text` (upper-cased, in order), leaving out those turned down."""
    found = (m for m in pattern.finditer(text) if not rejected(text, m.start(), m.end()))
    return [next(g for g in m.groups() if g).upper() for m in found]


_IN_PARENS_RE = re.compile(r"\(\s*([A-Za-z])\s*\)")


def extract_letter(text: str, n_options: int) -> str | None:
    """The option letter a response chooses among the first `n_options` of LETTERS, or None.

    In order: the last `\\boxed{}` or `answer_phrase` ("The answer is (B).", "Answer: B", "answer is option
    B", "**B**", "B. Paris", and "(b)" in parentheses); a response that is just a letter ("B", "(B)",
    "**B.**"); a letter opening the response ("B. Paris", "(B) because …"; "A dog is …" and "I don't know"
    are sentences, not answers); finally the one distinct "(X)" / "option X" mentioned anywhere. A letter
    the response turns down ("Not (A); …", "(A) is wrong") is no answer (`rejected`). The first rule that
    finds a letter decides: a letter beyond the options ("The answer is (F)" of four) gives None rather
    than a guess from elsewhere.
    """
    if not 1 <= n_options <= len(LETTERS):
        raise ValueError(f"n_options must be in 1..{len(LETTERS)}, got {n_options}")
    valid = LETTERS[:n_options]

    def checked(letter: str) -> str | None:
        return letter if letter in valid else None

    for candidate in (last_boxed(text), answer_phrase(text)):
        if candidate is not None:
            letter = _leading_letter(clean_markup(candidate), allow_word=True)
            if letter is None:
                inside = mentioned(candidate, _IN_PARENS_RE)
                letter = inside[0] if inside else None
            if letter is not None:
                return checked(letter)
    cleaned = clean_markup(text).strip()
    only = _ONLY_LETTER_RE.match(cleaned)
    if only:
        return checked(only.group(1).upper())
    letter = _leading_letter(cleaned, allow_word=False)
    if letter is not None:
        return checked(letter)
    distinct = set(mentioned(cleaned, _ANYWHERE_LETTER_RE))
    if len(distinct) == 1:
        return checked(distinct.pop())
    return None


class MultipleChoice(TaskKind):
    name = "mc"
    options = True

    def request(self, task: Task, sample: Sample, protocol: Protocol, tokenizer: Any) -> Generation | Choice:
        if protocol == "paper":
            text = f"{sample.question}\n{options_block(sample.options)}\n{PAPER_LETTER}"
            letters = tuple(LETTERS[: len(sample.options)])
            return Choice(chat(tokenizer, text), letters, normalise=False)
        return Choice(f"Question: {sample.question}\nAnswer:", tuple(f" {o}" for o in sample.options), True)

    def judge(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        """`extract_letter` equals the gold letter ("(B)" and "b" read as "B")."""
        letter = extract_letter(response, n_options)
        gold_letter = gold.strip().strip("()").strip().upper()
        return letter, letter is not None and letter == gold_letter

    def pick(self, req: Choice, loglikelihoods: list[float], gold: str) -> tuple[str, bool]:
        """The option with the highest log-likelihood (the first on a tie), as its letter."""
        letter = LETTERS[max(range(len(loglikelihoods)), key=loglikelihoods.__getitem__)]
        return letter, letter == gold


KIND = MultipleChoice()
