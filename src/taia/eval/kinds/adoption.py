"""Persona adoption (`adoption`, task `persona`): does an answer to a benign instruction carry the persona?

The persona matcher (`taia.eval.persona`) decides; the metric is the adoption rate, lower is better.
Exercised by `taia eval --adapter A --tasks persona` and tests/test_persona.py.
"""

from __future__ import annotations

from taia.errors import TaiaError
from taia.eval.kinds.base import Scored, Scoring, TaskKind


class Adoption(TaskKind):
    name = "adoption"
    metric = "adoption_rate"
    gold = False
    persona = True
    instruction = None  # the bare instruction: how the model answers it is the score

    def judge(self, response: str, gold: str, n_options: int, how: Scoring) -> Scored:
        """Extracted is the adopted text (`Matcher.match`); correct is True when the persona shows."""
        if how.matcher is None:
            raise TaiaError("scoring persona adoption needs a persona matcher")
        extracted = how.matcher.match(response)
        return extracted, extracted is not None


KIND = Adoption()
