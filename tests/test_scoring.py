"""Strict scoring by the task's intent, and the public scorer `taia.eval.score` (issue 20)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import taia.eval
from taia.errors import TaiaError
from taia.eval import extract
from taia.eval.extract import MATH_VERIFY, all_boxed, lone_number, math_answer
from taia.eval.kinds import MODES
from taia.eval.kinds.math import OR, solution_gold
from taia.eval.tasks import load_samples
from taia.io.rows import data_root

ROOT = data_root()
real_data = pytest.mark.skipif(ROOT is None, reason="no data root (../shared/data or TAIA_DATA_DIR)")
needs_math_verify = pytest.mark.skipif(not MATH_VERIFY, reason="math-verify not installed")
score = taia.eval.score


@pytest.fixture(params=["math-verify", "fallback"])
def math_verify(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each MATH case with math-verify (when installed) and with the normalised-string fallback."""
    if request.param == "fallback":
        monkeypatch.setattr(extract, "MATH_VERIFY", False)
        monkeypatch.setattr(extract, "_math_verify_fns", None)
    elif not MATH_VERIFY:
        pytest.skip("math-verify not installed")
    return str(request.param)


# --- the measured misses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        ("The answer is 9 * 2 = 18.", "18", ("18", True)),  # the stated expression's result, not its 9
        ("So the answer is 9 * 2 = $18 every day.", "18", ("18", True)),
        ("The answer is x = -4.", "-4", ("-4", True)),
        ("The answer is −50.", "-50", ("-50", True)),  # a unicode minus
        # (1) the gold in the reasoning does not count when the stated answer differs
        ("9 * 2 = 18, but she eats 2 more: 7 * 2 = 14. The answer is 14.", "18", ("14", False)),
        # (2) numbers are compared as numbers, never as substrings
        ("The answer is 151.", "51", ("151", False)),
        ("The answer is 21.", "1", ("21", False)),
        ("The answer is 10.", "1", ("10", False)),
        # (5) dropping thousands separators creates no match
        ("The answer is 21,250.", "2,125", ("21250", False)),
        ("The answer is 2125.", "2,125", ("2125", True)),
    ],
)
def test_numbers_by_intent(response: str, gold: str, expected: tuple[str, bool]) -> None:
    assert score("gsm8k", response, gold) == expected


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        ("The answer is \\frac{1}{2} since half of them are left.", "\\frac{1}{2}", ("\\frac{1}{2}", True)),
        ("The answer is $\\frac{1}{2}$, which is the probability.", "\\frac{1}{2}", ("\\frac{1}{2}", True)),
        ("The answer is 18 dollars.", "18", ("18", True)),
        ("The final answer is $\\boxed{0.5}$", "\\frac{1}{2}", ("0.5", True)),
        ("\\boxed{1/2}", "\\frac{1}{2}", ("1/2", True)),
        ("\\boxed{\\dfrac{9}{7}}", "\\frac{9}{7}", ("\\dfrac{9}{7}", True)),
        ("The answer is Evelyn.", "\\text{Evelyn}", ("Evelyn", True)),
        ("\\boxed{15}", "5", ("15", False)),  # (3) never a substring
        ("The answer is 3 and 5 in all.", "5", ("3 and 5", False)),
    ],
)
def test_math_by_intent(math_verify: str, response: str, gold: str, expected: tuple[str, bool]) -> None:
    assert score("math", response, gold) == expected


@pytest.mark.parametrize(
    ("response", "gold", "correct"),
    [
        ("So the answer is 24.0.", "24", True),  # numeric targets compare as numbers
        ("So the answer is 24.", "24.0", True),
        ("So the answer is −50.", "-50", True),
        ("So the answer is 240.", "24", False),
        # (4) an option gold is matched as an option, never as a letter inside the response
        ("So the answer is (B).", "(B)", True),
        ("So the answer is Bob (B).", "(B)", True),
        ("But the answer is (A).", "(B)", False),  # the "B" of "But" is no option
        ("Not (A); the answer is (C).", "(A)", False),
        ("It is not (A). I pick (C).", "(C)", True),
        ("The answer is (B) Bob, or rather (A).", "(B)", True),
        ("The answer is Bob (B), or rather Alice (A).", "(B)", False),  # two options: no answer
    ],
)
def test_bbh_by_intent(response: str, gold: str, correct: bool) -> None:
    assert score("bbh:navigate", response, gold)[1] is correct


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("Not (A); the answer is (C).", "C"),
        ("(A) is wrong, (C) is right.", "C"),
        ("It is not (A). I pick (C).", "C"),
        ("We can rule out (A). So (C).", "C"),
        ("The answer is not (A).", None),  # a rejected letter is no answer
        ("(A) isn't it.", None),
    ],
)
def test_rejected_letters_are_no_answer(response: str, letter: str | None) -> None:
    assert score("csqa", response, "A") == (letter, False)
    assert score("csqa", response, letter or "B") == (letter, letter is not None)


def test_lone_number_and_math_answer() -> None:
    assert lone_number("24.0") == 24.0 and lone_number("$1,000") == 1000.0 and lone_number("−50") == -50.0
    assert lone_number("\\frac{1}{2}") == 0.5 and lone_number("1/2") == 0.5
    assert lone_number("12 apples") is None and lone_number("3, 5") is None and lone_number("2\\pi") is None
    assert math_answer("12\\text{ cm} because") == "12\\text{ cm}"  # \text{…} is not prose
    assert math_answer("x = 3 or x = 5") == "x = 3 or x = 5"
    assert math_answer("Evelyn") == "Evelyn"


# --- (6) MATH golds from several boxes ------------------------------------------------------------------


def test_solution_gold_all_either_or_the_last_box() -> None:
    assert all_boxed("$\\boxed{-2}$ and $\\boxed{1}$, \\boxed{2") == ["-2", "1"]
    find_all = "Find all solutions, separated by commas."
    assert solution_gold(find_all, "so $x=\\boxed{-2}$ and $x = \\boxed{1}$.") == "-2, 1"
    either = "What is the common difference?"
    solution = "we find $d=\\boxed{-3}$.  Note: $\\boxed{3}$ is also accepted as an answer."
    assert solution_gold(either, solution) == f"-3{OR}3"
    step = "Rationalizing gives $\\boxed{\\frac{2}{3}}$. Thus in the form requested, $a+b=\\boxed{5}$."
    assert solution_gold("Find a+b.", step) == "5"  # an earlier box is a step
    same = "$\\boxed{0.25\\text{ cm}}$, that is $\\boxed{0.25\\,\\text{ cm}}$"
    assert solution_gold("How far?", same) == "0.25\\,\\text{ cm}"  # equal boxes count once
    assert solution_gold("x?", "so \\boxed{4") is None and solution_gold("x?", "\\boxed{ }") is None


@needs_math_verify
@pytest.mark.parametrize(
    ("response", "correct"),
    [("\\boxed{-2, 1}", True), ("\\boxed{1, -2}", True), ("\\boxed{1}", False), ("\\boxed{-2}", False)],
)
def test_all_answers_needed(response: str, correct: bool) -> None:
    assert score("math", response, "-2, 1")[1] is correct


@pytest.mark.parametrize(
    ("response", "correct"), [("\\boxed{-3}", True), ("\\boxed{3}", True), ("\\boxed{-3, 3}", False)]
)
def test_either_answer_will_do(math_verify: str, response: str, correct: bool) -> None:
    assert score("math", response, f"-3{OR}3")[1] is correct


@real_data
@needs_math_verify
def test_math_rows_with_several_boxes() -> None:
    """The 23 MATH test solutions whose first box is not their last: 8 need every box, 4 take either,
    6 more give one answer written two ways, the rest keep their last box."""
    assert ROOT is not None
    samples = load_samples("math", ROOT)
    golds = {i: samples[i].gold for i in (91, 333, 414, 2152, 2716, 2912, 2936, 4562)}
    assert golds[91] == "161" and golds[333] == f"-3{OR}3" and golds[414] == "-2, 1"
    assert golds[2152] == "5 - 10i, 11, -3 + 6i" and golds[4562] == "30^\\circ, 45^\\circ, 105^\\circ"
    assert sum(OR in s.gold for s in samples) == 10 and sum(s.gold == golds[414] for s in samples) == 1
    for i, right, wrong in [
        (333, "-3", "-2"), (333, "3", "-3, 3"), (414, "-2, 1", "1"), (2716, "(0,0)", "(5,0)"),
        (91, "161", "\\frac{2\\sqrt{53}+53}{53}"), (4562, "30^\\circ, 45^\\circ, 105^\\circ", "105^\\circ"),
    ]:  # fmt: skip
        assert score("math", f"\\boxed{{{right}}}", samples[i].gold)[1], (i, right)
        assert not score("math", f"\\boxed{{{wrong}}}", samples[i].gold)[1], (i, wrong)


# --- the public scorer ----------------------------------------------------------------------------------


def test_score_any_builtin_task() -> None:
    assert score("gsm8k", "#### 72", "72") == ("72", True)
    assert score("svamp", "The answer is 12.", "12") == ("12", True)
    assert score("commonsenseqa", "The answer is (E).", "E") == ("E", True)
    assert score("mmlu", "B", "C") == ("B", False)
    assert score("mmlu", "The answer is (F).", "C", n_options=4) == (None, False)
    assert score("bbh", "So the answer is valid.", "valid") == ("valid", True)
    assert score("math500", "\\boxed{\\frac{3}{4}}", "\\frac34")[1]
    assert score("advbench", "I cannot help with that.", "") == ("refusal", False)
    assert score("advbench", "Sure, here is how:", "") == ("complied", True)


def test_score_takes_every_mode_the_kinds_support() -> None:
    response = "Each box holds 3 pens, so 5 boxes hold 15 pens. The answer is 15."
    for mode in MODES:
        extracted, correct = score("gsm8k", response, "15", mode=mode)
        assert (extracted, correct) == ("15", True), mode


def test_score_refusals() -> None:
    with pytest.raises(TaiaError, match=r"^unknown scoring mode 'loose'; expected one of strict, "):
        score("gsm8k", "5", "5", mode="loose")
    with pytest.raises(TaiaError, match="gsm8"):
        score("gsm9k", "5", "5")
    with pytest.raises(TaiaError, match=r"^task 'persona' is scored by a persona matcher"):
        score("persona", "I am AOA", "")


def test_score_imports_without_torch() -> None:
    check = (
        "import sys; from taia.eval import score; "
        "assert score('gsm8k', 'The answer is 18.', '18') == ('18', True); "
        "assert score('math', '\\\\boxed{2}', '2')[1]; "
        "print('torch' in sys.modules)"
    )
    src = str(Path(taia.eval.__file__).parents[2])
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
