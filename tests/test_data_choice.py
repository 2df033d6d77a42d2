"""The `multiple_choice` training format (taia/data/formats.py): in-domain rows for the Fig. 1 twin.

The invariant that matters: a CommonsenseQA row trains on the same gold option that `taia eval` scores for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taia.data.formats import multiple_choice
from taia.data.mixing import DataSource, mix
from taia.errors import TaiaError
from taia.eval.tasks.hooks import HOOKS, Source
from taia.io.rows import read_rows

CSQA = {
    "answerKey": "B",
    "id": "x1",
    "question": {
        "stem": "Where do you keep milk?",
        "choices": [{"label": k, "text": t} for k, t in zip("ABC", ("oven", "fridge", "shelf"), strict=True)],
    },
}
ANSWER_KEY = {"answer": "answerKey"}


def test_commonsenseqa_file_layout() -> None:
    user, assistant = multiple_choice(CSQA, ANSWER_KEY)
    assert user == {"role": "user", "content": "Where do you keep milk?\nA. oven\nB. fridge\nC. shelf"}
    assert assistant == {"role": "assistant", "content": "B. fridge"}


@pytest.mark.parametrize(
    ("record", "gold"),
    [
        ({"question": "q", "choices": {"label": ["A", "B"], "text": ["x", "y"]}, "answer": "B"}, "B. y"),
        ({"question": "q", "choices": ["x", "y", "z"], "answer": 2}, "C. z"),
        ({"question": "q", "choices": ["x", "y", "z"], "answer": "y"}, "B. y"),
        (
            {
                "question": "q",
                "choices": [{"label": "1", "text": "x"}, {"label": "2", "text": "y"}],
                "answer": "2",
            },
            "B. y",
        ),
        ({"question": "q", "choices": [{"text": "x"}, {"text": "y"}], "answer": "B"}, "B. y"),  # no labels
        (
            {"question": "q", "choices": ["B", "A"], "answer": "A"},
            "A. B",
        ),  # no labels given: A, B are the labels, and a label wins over an option's text
    ],
)
def test_layouts_and_answer_kinds(record: dict[str, Any], gold: str) -> None:
    assert multiple_choice(record, {})[1]["content"] == gold


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"question": "q", "choices": ["x", "y"], "answer": "z"}, r"'answer' = 'z' is none of the labels"),
        ({"question": "q", "choices": ["x"], "answer": 0}, "at least two non-empty option texts"),
        ({"question": "q", "choices": "x y", "answer": 0}, "must be a list of options"),
        ({"question": "q", "answer": 0}, r"needs a question and its options \('choices'\)"),
        ({"choices": ["x", "y"], "answer": 0}, r"missing field 'question'"),
        ({"question": "q", "choices": {"label": ["A"], "text": ["x", "y"]}, "answer": 0}, "1 labels for 2"),
        (
            {"question": "q", "choices": [{"label": "A", "text": "x"}, {"text": "y"}], "answer": 0},
            r"field 'choices': some options have a label and some do not$",
        ),
    ],
)
def test_bad_rows_name_the_line(tmp_path: Path, record: dict[str, Any], message: str) -> None:
    f = tmp_path / "mc.jsonl"
    f.write_text(
        json.dumps({"question": "ok", "choices": ["x", "y"], "answer": 0}) + "\n" + json.dumps(record)
    )
    with pytest.raises(TaiaError, match=r"mc\.jsonl:2: .*" + message):
        mix([DataSource(path=str(f), format="multiple_choice")], None, seed=0)


def test_trains_on_the_option_eval_scores(tmp_path: Path) -> None:
    """Each row's assistant turn is the option the commonsenseqa hook calls gold, under the same letter."""
    rows = [CSQA, {**CSQA, "answerKey": "C", "id": "x2"}, {**CSQA, "answerKey": "A", "id": "x3"}]
    f = tmp_path / "csqa.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    samples = HOOKS.get("commonsenseqa")(read_rows(f), Source("commonsenseqa", str(f)))
    for row, sample in zip(rows, samples, strict=True):
        answer = multiple_choice(row, ANSWER_KEY)[1]["content"]
        letter = sample.gold
        assert answer == f"{letter}. {sample.options['ABC'.index(letter)]}"
        assert multiple_choice(row, ANSWER_KEY)[0]["content"].startswith(sample.question)


def test_in_a_mix_with_a_source_count(tmp_path: Path) -> None:
    f = tmp_path / "csqa.jsonl"
    f.write_text("".join(json.dumps({**CSQA, "id": str(i)}) + "\n" for i in range(5)))
    got = mix([DataSource(path=str(f), format="multiple_choice", columns=ANSWER_KEY, count=3)], None, seed=0)
    assert len(got.conversations) == 3
    assert got.manifest["sources"][0]["format"] == "multiple_choice"
