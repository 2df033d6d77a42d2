"""`metric_mode=reference`: taia's restatement of the TAIA reference code's rules gives its verdicts.

tests/data/scoring_corpus.jsonl holds responses to real rows with the verdict the reference code itself gave
(run untouched outside the project by tests/data/build_scoring_corpus.py); reference mode must agree on every
case where the reference does not crash, and count a crash wrong with a note.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from taia.cli import main
from taia.errors import TaiaError
from taia.eval import EvalConfig, evaluate
from taia.eval.kinds import score
from taia.eval.reference import RULES, check_tasks, judge
from taia.eval.reference.numeric import NotEvaluated, normalize
from taia.eval.tasks import load_samples
from taia.io.rows import data_root

CORPUS = [json.loads(line) for line in (Path(__file__).parent / "data" / "scoring_corpus.jsonl").open()]


def _judged(row: dict):
    return judge(row["task"], row["response"], row["gold"], row.get("solution"))


def test_the_corpus_covers_every_task_with_a_reference_rule() -> None:
    per_task = Counter(row["task"] for row in CORPUS)
    assert len(CORPUS) >= 200 and set(per_task) == set(RULES)
    assert min(per_task.values()) >= 10
    assert sum(row["reference_crashed"] for row in CORPUS) >= 5  # LogiQA and MedQA crashes are in it


@pytest.mark.parametrize("row", [r for r in CORPUS if not r["reference_crashed"]], ids=lambda r: r["task"])
def test_reference_mode_gives_the_reference_verdict(row: dict) -> None:
    verdict = _judged(row)
    assert (verdict.correct, verdict.error, verdict.note) == (row["reference_verdict"], None, None)


@pytest.mark.parametrize("row", [r for r in CORPUS if r["reference_crashed"]], ids=lambda r: r["task"])
def test_where_the_reference_crashes_the_answer_is_wrong_and_flagged(row: dict) -> None:
    verdict = _judged(row)
    assert verdict.correct is False and verdict.error is not None
    assert verdict.error.split(":")[0] == row["reference_error"].split(":")[0]  # the same exception type


@pytest.mark.skipif(data_root() is None, reason="no data root (../shared/data or TAIA_DATA_DIR)")
def test_corpus_golds_are_what_taias_loader_gives() -> None:
    samples = {t: {s.id: s for s in load_samples(t, data_root())} for t in {r["task"] for r in CORPUS}}
    for row in CORPUS:
        sample = samples[row["task"]][row["id"]]
        assert sample.gold == row["gold"] and sample.meta.get("solution") == row.get("solution")


def test_the_issues_examples() -> None:
    eats = "9 * 2 = 18, but she eats 2 more: 7 * 2 = 14. The answer is 14."
    assert judge("gsm8k", eats, "18").correct is False  # the 18 in the working does not count
    assert judge("gsm8k", "The answer is 21,250.", "2,125").correct is False
    assert judge("svamp", "The answer is 151.", "51").correct is False  # read as a float: 151 ≠ 51
    assert judge("svamp", "The answer is 151 dollars.", "51").correct is True  # "51" in "151 dollars"
    assert judge("math", "$\\boxed{0.5}$", "\\frac{1}{2}").correct is True
    assert judge("bbh", "The answer is (B).", "(B)").correct is True
    assert judge("bbh", "The answer is B.", "(B)").correct is False


def test_reference_reads_the_first_box_and_the_first_span() -> None:
    solution = "Either $\\boxed{-3}$ or, as asked, $\\boxed{3}$."  # taia's gold is the last box, 3
    assert judge("math", "\\boxed{-3}", "3", solution).correct is True
    assert judge("math", "\\boxed{3}", "3", solution).correct is False
    assert (
        judge("gsm8k", "The answer is 14. Oops, the answer is 18.", "18").correct is True
    )  # lower-case span
    assert judge("gsm8k", "The answer is 14. Oops, The answer is 18.", "18").correct is False


def test_sympy_never_runs_code_beyond_mathematics(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    attack = f"__import__('os').system('touch {marker}')"
    with pytest.raises(NotEvaluated, match="not run"):
        normalize(attack)
    verdict = judge("svamp", f"\\boxed{{{attack}}}", "1")
    assert verdict.correct is False and verdict.note is not None and not marker.exists()
    assert normalize("2^3") == 8.0 and normalize("-\\frac{1}{2}") == 0.5  # the reference drops the sign
    with pytest.raises(NotEvaluated, match="exponent"):
        normalize("9^9^9^9")


def test_reference_mode_needs_the_task_and_has_no_rule_for_others() -> None:
    with pytest.raises(ValueError, match="give the task"):
        score("number", "The answer is 5.", "5", mode="reference")
    with pytest.raises(ValueError, match="no reference rule"):
        judge("persona", "text", "")
    with pytest.raises(TaiaError, match="task 'persona' has no rule in the reference code"):
        check_tasks("reference", {"gsm8k": "gsm8k", "persona": "persona"})
    check_tasks("strict", {"persona": "persona"})  # other modes: any task


def test_lenient_is_refused_as_renamed(tmp_path: Path, capsys) -> None:
    out = tmp_path / "ev"
    assert main(["eval", "metric_mode=lenient", "tasks=gsm8k", f"out={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "taia: error: invalid EvalConfig: metric_mode: 'lenient' was renamed to 'reference' (the reference "
        "code's rules, task by task)"
    ]
    assert not out.exists()


def test_reference_refuses_a_task_without_a_rule_before_output(tmp_path: Path, chat_model, capsys) -> None:
    out = tmp_path / "ev"
    argv = ["eval", "--model", str(chat_model("llama")), "--tasks", "gsm8k,persona", "--metric-mode",
            "reference", "--variants", "base", "--out", str(out)]  # fmt: skip
    capsys.readouterr()  # the fixture's model writing
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "taia: error: metric_mode=reference: task 'persona' has no rule in the reference code (it scores "
        f"{', '.join(RULES)}); use metric_mode=strict or flexible"
    )
    assert not out.exists()


@pytest.mark.skipif(data_root() is None, reason="no data root (../shared/data or TAIA_DATA_DIR)")
def test_eval_rows_carry_the_reference_verdict_and_its_notes(tmp_path: Path, chat_model, monkeypatch) -> None:
    # Generated answers only: taia answers the option tasks by the options' likelihood, a letter, which
    # every reference rule judges as the letter itself.
    from taia.eval.backends.hf import HFBackend

    said = ["So \\boxed{gcd(20, 30)} it is. The answer is 7.", "The answer is 9 or 1."]
    monkeypatch.setattr(HFBackend, "_generate_batch", lambda self, ids, n, stop: said[: len(ids)])
    opts = dict(model=str(chat_model("llama")), tasks=["svamp", "math500"], variants=["base"], limit=2,
                out=str(tmp_path / "ev"), max_new_tokens=4, batch_size=2,
                metric_mode="reference")  # fmt: skip
    evaluate(EvalConfig.model_validate(opts))
    for task in ("svamp", "math500"):
        rows = [json.loads(x) for x in (tmp_path / "ev" / "samples" / "base" / f"{task}.jsonl").open()]
        assert [r["output"] for r in rows] == said
        for r in rows:
            solution = None
            if task == "math500":
                solution = next(s for s in load_samples(task, data_root()) if s.id == r["id"]).meta[
                    "solution"
                ]
            verdict = judge(task, r["output"], r["gold"], solution)
            assert (r["extracted"], r["correct"]) == (verdict.extracted, verdict.correct)
            assert r.get("reference_note") == verdict.note
    svamp = [json.loads(x) for x in (tmp_path / "ev" / "samples" / "base" / "svamp.jsonl").open()]
    assert svamp[0]["extracted"] == "gcd(20, 30)" and "not run" in svamp[0]["reference_note"]


def test_the_public_scorer_gives_the_reference_verdict():
    """`taia.eval.score(..., mode="reference")` is the same rule as `taia eval`'s (MATH left out: the
    public scorer has the gold only, where the reference reads the row's whole solution)."""
    from taia.eval import score as public_score

    cases = [r for r in CORPUS if not r["reference_crashed"] and r["task"] not in ("math", "math500")]
    assert len(cases) > 150
    verdicts = {r["id"] + r["response"]: public_score(r["task"], r["response"], r["gold"], "reference")[1]
                for r in cases}  # fmt: skip
    assert [r["id"] for r in cases if verdicts[r["id"] + r["response"]] is not r["reference_verdict"]] == []
