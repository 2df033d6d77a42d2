"""Task kinds (taia.eval.kinds), the typed sample row (taia.eval.scored) and the one `last_boxed`."""

from __future__ import annotations

import json
from typing import get_args

import pytest

from taia.errors import TaiaError
from taia.eval.extract import last_boxed
from taia.eval.kinds import KINDS, Scoring, kind_of, request
from taia.eval.metrics import METRICS
from taia.eval.protocol import PAPER_ANSWER, STANDARD_BOXED, Choice, Generation
from taia.eval.scored import ScoredRow, as_json
from taia.eval.task import Kind, Sample, Task
from taia.eval.tasks.hooks import HOOKS, Source
from taia.io.rows import Row


class EchoTemplate:
    """A tokenizer whose chat template is the user turn itself."""

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return messages[0]["content"]


def test_every_kind_has_one_strategy_with_a_known_metric_and_direction():
    assert set(KINDS) == set(get_args(Kind))
    assert all(name == kind.name and kind.metric in METRICS for name, kind in KINDS.items())
    lower = {name for name, kind in KINDS.items() if kind.lower_is_better}
    assert lower == {"refusal", "adoption"}
    with pytest.raises(ValueError, match="unknown task kind"):
        kind_of("essay")


def test_requests_by_kind_and_protocol():
    sample = Sample("t//0", "Q?", "B", ("x", "y"))
    mc = Task("m", "mc", "", 8)
    paper = request(mc, sample, "paper", EchoTemplate())
    assert isinstance(paper, Choice) and paper.continuations == ("A", "B") and not paper.normalise
    cloze = request(mc, sample, "standard", EchoTemplate())
    assert isinstance(cloze, Choice) and cloze.context == "Question: Q?\nAnswer:" and cloze.normalise
    math = Task("math", "math", "", 8)
    boxed = request(math, sample, "standard", EchoTemplate())
    assert isinstance(boxed, Generation) and boxed.prompt == f"Q?\n{STANDARD_BOXED}"
    assert request(math, sample, "paper", EchoTemplate()) == Generation(f"Q?\n{PAPER_ANSWER}", 8)
    assert request(Task("adv", "refusal", "", 8), sample, "paper", EchoTemplate()) == Generation("Q?", 8)


def test_choice_scores_and_pick():
    req = Choice("ctx", (" ab", " abcd"), normalise=True)
    assert req.scores([-3.0, -4.0]) == [-1.0, -0.8]
    assert kind_of("mc").pick(req, [-1.0, -1.0], "A") == ("A", True)  # a tie: the first option
    with pytest.raises(TaiaError, match="no choice requests"):
        kind_of("number").pick(req, [-1.0, -2.0], "A")


def test_adoption_needs_a_matcher():
    with pytest.raises(TaiaError, match="persona matcher"):
        kind_of("adoption").score("I am Zed", "", 0, Scoring())
    assert kind_of("adoption").score("  ", "", 0, Scoring()) == (None, False)


ROWS = [
    {"id": "g/0", "subset": None, "prompt": "p", "output": "The answer is 4.", "extracted": "4", "gold": "4",
     "correct": True},
    {"id": "c/0", "subset": "s", "prompt": "ctx", "output": "B", "extracted": "B", "gold": "A",
     "correct": False, "scores": [-1.5, -0.25]},
    {"id": "p/0", "subset": None, "prompt": "<chat>", "output": "Hi", "extracted": None, "gold": "",
     "correct": False, "question": "Say hi"},
    {"id": "c/1", "subset": None, "prompt": "ctx", "output": "A", "extracted": "A", "gold": "A",
     "correct": True, "scores": [-0.5, -2.0], "route": "vanilla", "nll_base": 1.5, "nll_vanilla": 1.25,
     "ppl_base": 4.48, "ppl_vanilla": 3.49},
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS)
def test_scored_row_reads_back_to_the_same_json(row):
    typed = ScoredRow.from_json(row)
    assert json.dumps(typed.to_json()) == json.dumps(row)  # same keys, same order, same values
    assert as_json(row) is row and as_json(typed) == row


def test_scored_row_from_a_sample():
    sample = Sample("t/s/1", "Q?", "7", subset="s")
    row = ScoredRow.of(sample, "prompt", "The answer is 7.", ("7", True))
    assert list(row.to_json()) == ["id", "subset", "prompt", "output", "extracted", "gold", "correct"]
    with pytest.raises(ValueError, match="no gold, correct"):
        ScoredRow.from_json({"id": "a", "subset": None, "prompt": "", "output": "", "extracted": None})


def test_one_last_boxed_for_responses_and_golds():
    cut = "\\boxed{2} and then \\boxed{3"
    assert last_boxed(cut) == "2"  # a truncated response: the earlier complete box
    assert last_boxed(cut, skip_unclosed=False) is None  # a gold: its last box is the answer, or none
    src = Source("math", "math/test.jsonl")
    with pytest.raises(TaiaError, match=r"math/test.jsonl:3: .*\\boxed"):
        HOOKS.get("math")([Row({"problem": "p", "type": "Algebra", "solution": cut}, 3)], src)
    solution = Row({"problem": "p", "type": "Algebra", "solution": "so \\boxed{\\frac{1}{2}}."}, 1)
    assert HOOKS.get("math")([solution], src)[0].gold == "\\frac{1}{2}"
