"""One answered sample as `taia eval` writes it to OUT/samples/<variant>/<task>.jsonl: the typed row.

Every writer builds a `ScoredRow` and every reader (summaries, resume, reports) gets one back; the JSON is
the row's fields in this order, with `scores` (choice requests) or `question` (persona adoption) only where
they apply, `identity` (what produced the answer, `taia.eval.identity`; rows stored before it have none),
then any keys a router added (`loracl`: route, nll_*, ppl_*). Exercised by `taia eval ... --out DIR` and
tests/test_eval.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from taia.errors import TaiaError
from taia.eval.task import Sample


@dataclass(frozen=True)
class ScoredRow:
    """A sample's prompt, the model's output, what was extracted from it and whether that is correct."""

    id: str
    subset: str | None
    prompt: str  # the templated generation prompt, or a choice request's shared context
    output: str  # the generated text, or the chosen option's letter
    extracted: str | None
    gold: str
    correct: bool  # refusal: the attack succeeded; adoption: the persona shows
    scores: tuple[float, ...] | None = None  # choice requests: each option's log-likelihood, as scored
    question: str | None = None  # adoption: the instruction, shown beside the answer in reports
    identity: str | None = None  # what produced the answer (`taia.eval.identity`); None: stored before
    extra: Mapping[str, Any] = field(default_factory=dict)  # keys a router adds (`loracl`), kept in order

    @classmethod
    def of(cls, sample: Sample, prompt: str, output: str, scored: tuple[str | None, bool]) -> ScoredRow:
        """The row of `sample` answered by `output` and scored as (extracted, correct)."""
        return cls(sample.id, sample.subset, prompt, output, scored[0], sample.gold, bool(scored[1]))

    def to_json(self) -> dict[str, Any]:
        """The row as written: the same keys, in the same order, as it is read back."""
        row: dict[str, Any] = {
            "id": self.id, "subset": self.subset, "prompt": self.prompt, "output": self.output,
            "extracted": self.extracted, "gold": self.gold, "correct": self.correct,
        }  # fmt: skip
        if self.scores is not None:
            row["scores"] = list(self.scores)
        if self.question is not None:
            row["question"] = self.question
        if self.identity is not None:
            row["identity"] = self.identity
        return row | dict(self.extra)

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> ScoredRow:
        """A row read back; ValueError naming the keys a scored row needs and this one lacks."""
        missing = [k for k in _REQUIRED if k not in row]
        if missing:
            raise ValueError(f"not a scored sample row: no {', '.join(missing)} (has {', '.join(row)})")
        scores = row.get("scores")
        return cls(
            **{k: row[k] for k in _REQUIRED},
            scores=tuple(scores) if scores is not None else None,
            question=row.get("question"),
            identity=row.get("identity"),
            extra={k: v for k, v in row.items() if k not in _FIELDS},
        )


def check_finite(desc: str, sample_id: str, values: Iterable[float], what: str) -> None:
    """Refuse a score that is NaN or ±Inf (`what`: which, e.g. "log-likelihoods"): such a model (a NaN
    fine-tune, a λ that overflows the weights) answers at random, and its accuracy would look like any
    other. The one check of every task kind: choice scores, generation logits, router perplexities."""
    if not all(math.isfinite(v) for v in values):
        raise TaiaError(
            f"{desc}: the model's {what} for sample {sample_id!r} are not finite (NaN or Inf): refused, "
            "not scored (are the fine-tune's weights finite, and every λ of the spec in range?)"
        )


_FIELDS = tuple(f.name for f in fields(ScoredRow) if f.name != "extra")
_REQUIRED = _FIELDS[:7]  # id … correct: every row has them


RowLike = ScoredRow | Mapping[str, Any]  # a row, typed or as JSON (read from a file, or built by a test)


def as_json(row: RowLike) -> Mapping[str, Any]:
    """A row's JSON: what aggregates read, so that they also take rows with only the keys they need."""
    return row.to_json() if isinstance(row, ScoredRow) else row
