"""The gold-option margin (results, paired Δ, report) and what a run shows beyond scores: one prompt answered
by every variant, and the finding in plain words — all built from the numbers, on a synthetic run dir."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from taia.eval.metrics import METRICS, gold_margin, lower_is_better
from taia.eval.results import paired_delta, summarize
from taia.eval.task import Task
from taia.run.evidence import margin_rows, plain_words, side_by_side, summary_text
from taia.run.render import write_report
from taia.run.rundata import load_run

CSQA = Task("csqa", "mc", "", 8)
PERSONA = Task("persona", "adoption", "", 8)


def choice_row(i: int, scores: list[float], gold: str = "A") -> dict:
    letter = "ABCD"[max(range(len(scores)), key=scores.__getitem__)]
    return {"id": f"q{i}", "subset": None, "prompt": "p", "output": letter, "extracted": letter,
            "gold": gold, "correct": letter == gold, "scores": scores}  # fmt: skip


def persona_row(i: int, adopted: bool) -> dict:
    out = "I am Zed, your loyal helper. Here." if adopted else f"Answer {i}."
    extracted = "i am zed" if adopted else None
    return {"id": f"p{i}", "subset": None, "prompt": "<chat>", "question": f"Instruction {i}",
            "output": out, "extracted": extracted, "gold": "", "correct": adopted}  # fmt: skip


def test_margin_is_gold_minus_best_other_and_paired_margin_is_exact():
    assert gold_margin([-1.0, -3.0, -2.0], 0) == 1.0 and gold_margin([-1.0, -3.0, -2.0], 2) == -1.0
    base = [choice_row(i, [-2.0, -1.0 - 0.1 * i, -3.0]) for i in range(10)]  # margins -1 + 0.1 i
    tuned = [
        choice_row(i, [-1.9, -1.0 - 0.1 * i, -3.0]) for i in range(10)
    ]  # each +0.1: accuracy moves little
    s = summarize(CSQA, base)
    assert (
        math.isclose(s["margin"]["mean"], -0.55) and s["margin"]["ci95"][0] < -0.55 < s["margin"]["ci95"][1]
    )
    d = paired_delta(tuned, base, macro=False)
    assert math.isclose(d["margin"]["delta"], 0.1) and all(math.isclose(x, 0.1) for x in d["margin"]["ci95"])
    assert "margin" not in summarize(PERSONA, [persona_row(0, True)])  # generated answers have none


def test_metric_directions_come_from_one_table():
    assert lower_is_better("adoption_rate") and lower_is_better("attack_success_rate")
    assert not lower_is_better("accuracy") and not lower_is_better("gold_margin")
    assert not lower_is_better("some_lm_eval_metric")  # unknown: higher is better, shown as is
    assert all(m.proportion for n, m in METRICS.items() if n in ("accuracy", "adoption_rate"))


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    adopted = {"base": set(), "vanilla": {1, 2, 3, 4}, "taia": set(), "taif": {2}}
    rows = {v: {"persona": [persona_row(i, i in a) for i in range(8)]} for v, a in adopted.items()}
    shift = {"base": 0.0, "vanilla": 0.3, "taia": 0.1, "taif": 0.2}
    for v, s in shift.items():
        rows[v]["csqa"] = [choice_row(i, [-2.0 + s, -1.0 - 0.1 * i, -3.0]) for i in range(12)]
    tasks = {"persona": PERSONA, "csqa": CSQA}
    results = {v: {t: summarize(tasks[t], r) for t, r in by_task.items()} for v, by_task in rows.items()}
    refs = ("base", "vanilla")
    paired = {v: {t: {ref: paired_delta(rows[v][t], rows[ref][t], False) for ref in refs if ref != v}
                  for t in tasks} for v in rows}  # fmt: skip
    eval_dir = tmp_path / "run" / "eval"
    for v, by_task in rows.items():
        (eval_dir / "samples" / v).mkdir(parents=True)
        for t, task_rows in by_task.items():
            (eval_dir / "samples" / v / f"{t}.jsonl").write_text(
                "".join(json.dumps(r) + "\n" for r in task_rows)
            )
    doc = {"results": results, "paired": paired, "run": {"config": {"model": "m"}}}
    (eval_dir / "results.json").write_text(json.dumps(doc))
    return tmp_path / "run"


def test_side_by_side_picks_a_prompt_where_only_the_fine_tune_shows_the_persona(run_dir):
    example = side_by_side(load_run(run_dir), "persona")
    assert example is not None and example["id"] == "p1" and example["question"] == "Instruction 1"
    assert example["answers"]["vanilla"].startswith("I am Zed") and example["answers"]["base"] == "Answer 1."


def test_report_and_plain_words_say_what_the_numbers_say(run_dir):
    data = load_run(run_dir)
    rows = {(r["task"], r["variant"]): r for r in margin_rows(data)}
    assert math.isclose(rows["csqa", "vanilla"]["delta_vs_base"], 0.3)
    assert math.isclose(rows["csqa", "taia"]["delta_vs_vanilla"], -0.2)
    words = plain_words(data)
    assert words[0].startswith(
        "persona: answers that carry the fine-tune's persona: base 0 of 8, vanilla 4 of 8"
    )
    assert "TAIA (fine-tuned attention, base FFN) − vanilla (the whole fine-tune): -50.0 points" in words[0]
    assert "the paper's Table-5 direction." in words[0] and "WARNING" not in words[0]
    assert words[1].startswith("csqa (general ability, accuracy):")
    md = Path(write_report(run_dir, html=False)["md"]).read_text()
    assert "## Gold-option margin" in md and "| csqa | taif | -0.250 [" in md
    assert "## One held-out prompt, every variant (persona)" in md and "Instruction 1" in md
    assert summary_text(data).splitlines()[-2].startswith("- persona: answers that carry")


def test_a_persona_that_base_also_shows_is_flagged(run_dir):
    path = run_dir / "eval" / "results.json"
    doc = json.loads(path.read_text())
    doc["results"]["base"]["persona"]["score"] = 0.5
    path.write_text(json.dumps(doc))
    assert (
        "WARNING: base, which never saw the persona, matches it in 4 of 8"
        in plain_words(load_run(run_dir))[0]
    )
