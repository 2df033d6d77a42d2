"""Paired significance: the exact McNemar test beside each paired Δ, in results.json, report.md/.html and
search.md."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from taia.eval.metrics import mcnemar_p
from taia.eval.results import paired_delta, summarize
from taia.eval.task import Task
from taia.run.render import write_report
from taia.search.summary import _test_lines


def _exact(up: int, down: int) -> float:
    """An independent two-sided exact binomial p: the probability of every outcome no likelier than the
    one seen, summed with Fractions (scipy's definition)."""
    from fractions import Fraction

    n, k = up + down, min(up, down)
    pmf = [Fraction(math.comb(n, i), 2**n) for i in range(n + 1)]
    return float(min(Fraction(1), sum(p for p in pmf if p <= pmf[k])))


@pytest.mark.parametrize(
    ("up", "down", "p"),
    [
        (0, 0, 1.0),
        (1, 0, 1.0),  # 2 · 1/2
        (3, 3, 1.0),
        (5, 0, 2 / 32),
        (0, 5, 2 / 32),
        (10, 0, 2 / 1024),
        (9, 4, 2 * (1 + 13 + 78 + 286 + 715) / 2**13),  # 0.2668…
        (4, 13, 2 * sum(math.comb(17, i) for i in range(5)) / 2**17),
    ],
)
def test_mcnemar_hand_computed(up: int, down: int, p: float) -> None:
    assert mcnemar_p(up, down) == pytest.approx(p, rel=1e-12)


def test_mcnemar_against_an_independent_computation() -> None:
    for up in range(0, 25):
        for down in range(0, 25):
            assert mcnemar_p(up, down) == pytest.approx(_exact(up, down), rel=1e-12), (up, down)
    assert 0 < mcnemar_p(600, 500) < 0.01 and mcnemar_p(1000, 1000) == 1.0  # big n: exact integers
    with pytest.raises(ValueError, match="discordant counts"):
        mcnemar_p(-1, 2)


def test_mcnemar_against_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    for up, down in [(0, 0), (1, 0), (9, 4), (4, 13), (20, 7), (33, 33), (2, 40), (150, 120)]:
        expected = stats.binomtest(min(up, down), up + down, 0.5).pvalue if up + down else 1.0
        assert mcnemar_p(up, down) == pytest.approx(expected, rel=1e-9), (up, down)


def _rows(correct: list[int], subsets: str | None = None) -> list[dict[str, Any]]:
    subsets = subsets or "a" * len(correct)
    return [
        {"id": f"q{i}", "subset": s, "correct": bool(c), "output": "x"}
        for i, (c, s) in enumerate(zip(correct, subsets, strict=True))
    ]


def test_paired_delta_carries_the_test() -> None:
    variant = _rows([1, 1, 1, 1, 1, 1, 0, 0, 1, 0])
    reference = _rows([0, 0, 0, 0, 0, 1, 1, 0, 1, 0])
    got = paired_delta(variant, reference, macro=False)
    assert got["mcnemar"] == {"p": mcnemar_p(5, 1), "discordant": 6, "up": 5, "down": 1}
    assert got["changed"] == got["mcnemar"]["discordant"] and got["delta"] == pytest.approx(0.4)
    pooled = paired_delta(_rows([1, 1, 0, 1], "abbb"), _rows([0, 1, 1, 0], "abbb"), macro=True)
    assert pooled["mcnemar"] == {"p": mcnemar_p(2, 1), "discordant": 3, "up": 2, "down": 1}


def _eval_dir(root: Path) -> Path:
    task = Task("gsm8k", "number", "", 8)
    answers = {
        "base": _rows([0] * 20),
        "vanilla": _rows([1] * 12 + [0] * 8),
        "taia": _rows([1] * 10 + [0] * 10),
    }
    results = {v: {"gsm8k": summarize(task, rows)} for v, rows in answers.items()}
    paired = {
        v: {
            "gsm8k": {
                r: paired_delta(answers[v], answers[r], macro=False) for r in ("base", "vanilla") if r != v
            }
        }
        for v in answers
        if v != "base"
    }
    run = {"config": {"model": "m", "metric_mode": "strict"}}
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.json").write_text(json.dumps({"results": results, "paired": paired, "run": run}))
    return root


def test_report_shows_the_test(tmp_path: Path) -> None:
    paths = write_report(_eval_dir(tmp_path / "eval"))
    md = paths["md"].read_text()
    section = md.split("## Paired significance (McNemar)\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert section[0] == "| task | vanilla − base | taia − base | taia − vanilla |"
    assert mcnemar_p(12, 0) < 0.0005 and f"{mcnemar_p(10, 0):.3f}" == "0.002" and mcnemar_p(0, 2) == 0.5
    cells = [
        "<0.001 (12 discordant: +12 / −0)",
        "0.002 (10 discordant: +10 / −0)",
        "0.500 (2 discordant: +0 / −2)",
    ]
    assert section[2] == "| gsm8k | " + " | ".join(cells) + " |"
    html = paths["html"].read_text()
    assert "<h2>Paired significance (McNemar)</h2>" in html and "(2 discordant: +0 / −2)" in html


def test_report_without_the_test_has_no_section(tmp_path: Path) -> None:
    root = _eval_dir(tmp_path / "eval")
    doc = json.loads((root / "results.json").read_text())
    for by_task in doc["paired"].values():
        for entry in by_task["gsm8k"].values():
            del entry["mcnemar"]  # results.json written before the test existed
    (root / "results.json").write_text(json.dumps(doc))
    assert "McNemar" not in write_report(root)["md"].read_text()


def test_search_md_shows_the_test() -> None:
    """Two test tasks: every row gets its own tests (search.md's test table, one row per task)."""
    delta = paired_delta(_rows([1, 1, 1, 0]), _rows([0, 0, 1, 1]), False)
    chosen = {t: {r: delta for r in ("base", "vanilla")} for t in ("gsm8k", "svamp")}
    entry = summarize(Task("gsm8k", "number", "", 8), _rows([1, 1, 1, 0]))
    tests = {v: {"gsm8k": entry, "svamp": entry} for v in ("base", "vanilla", "best-x")}
    result = {"best": "best-x", "test": {"results": tests, "paired": {"best-x": chosen}}}
    cfg = SimpleNamespace(test_variants=["base", "vanilla"], test_tasks=["gsm8k", "svamp"])
    lines = _test_lines(cfg, result)  # type: ignore[arg-type]
    assert lines[2].endswith("| McNemar p vs base | McNemar p vs vanilla |")
    # 2 · P(X ≤ 1) for X ~ Bin(3, 1/2) = 2 · 4/8, capped at 1
    for line, task in zip(lines[4:6], ("gsm8k", "svamp"), strict=True):
        assert line.startswith(f"| {task} |")
        assert line.endswith("| 1.000 (3 discordant: +2 / −1) | 1.000 (3 discordant: +2 / −1) |")
