"""Accuracy and bootstrap confidence intervals (taia.eval.metrics)."""

from __future__ import annotations

import math
import random

import pytest

from taia.eval.metrics import accuracy, bootstrap_ci, bootstrap_ci_macro, macro_mean


def _coin(n: int, p: float, seed: int = 1) -> list[bool]:
    rng = random.Random(seed)
    return [rng.random() < p for _ in range(n)]


def test_accuracy() -> None:
    assert accuracy([True, False, True, True]) == 0.75
    assert accuracy([1.0, 0.0]) == 0.5
    assert math.isnan(accuracy([]))


def test_bootstrap_ci_contains_the_mean() -> None:
    values = _coin(200, 0.6)
    low, high = bootstrap_ci(values)
    assert low < accuracy(values) < high
    assert low >= 0.0 and high <= 1.0


def test_bootstrap_ci_matches_the_normal_approximation() -> None:
    values = _coin(1000, 0.5)
    p = accuracy(values)
    low, high = bootstrap_ci(values)
    half = 1.96 * math.sqrt(p * (1 - p) / len(values))  # ~0.031
    assert high - low == pytest.approx(2 * half, rel=0.15)


def test_bootstrap_ci_narrows_with_n() -> None:
    widths = [(lambda ci: ci[1] - ci[0])(bootstrap_ci(_coin(n, 0.5))) for n in (50, 500, 5000)]
    assert widths[0] > widths[1] > widths[2]
    assert widths[0] / widths[2] == pytest.approx(10, rel=0.3)  # ~ 1/sqrt(n)


def test_bootstrap_ci_alpha() -> None:
    values = _coin(300, 0.4)
    low90, high90 = bootstrap_ci(values, alpha=0.10)
    low99, high99 = bootstrap_ci(values, alpha=0.01)
    assert low99 < low90 and high90 < high99


def test_bootstrap_ci_deterministic_by_seed() -> None:
    rng = random.Random(0)
    values = [rng.random() for _ in range(300)]  # continuous, so different seeds give different bounds
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_ci_degenerate() -> None:
    assert all(math.isnan(x) for x in bootstrap_ci([]))
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([True] * 10) == (1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 0.0], alpha=0.0)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 0.0], n_resamples=0)


def test_macro_mean_weights_subsets_equally() -> None:
    by_subset = {"big": [True] * 90 + [False] * 10, "small": [False] * 9 + [True]}
    assert macro_mean(by_subset) == pytest.approx((0.9 + 0.1) / 2)
    assert accuracy(by_subset["big"] + by_subset["small"]) == pytest.approx(91 / 110)  # micro differs
    assert macro_mean({"a": [1.0], "empty": []}) == 1.0  # empty subsets are left out
    assert math.isnan(macro_mean({}))


def test_bootstrap_ci_macro() -> None:
    by_subset = {"a": _coin(100, 0.8, seed=1), "b": _coin(50, 0.3, seed=2), "c": _coin(30, 0.5, seed=3)}
    low, high = bootstrap_ci_macro(by_subset)
    assert low < macro_mean(by_subset) < high
    assert bootstrap_ci_macro(by_subset, seed=5) == bootstrap_ci_macro(by_subset, seed=5)
    # independent of the mapping's order
    assert bootstrap_ci_macro(dict(reversed(by_subset.items()))) == (low, high)


def test_bootstrap_ci_macro_is_stratified() -> None:
    """A constant subset stays constant in every resample: it adds no width, unlike pooled resampling."""
    by_subset = {"all_right": [1.0] * 50, "mixed": _coin(50, 0.5)}
    low, high = bootstrap_ci_macro(by_subset)
    mixed_low, mixed_high = bootstrap_ci(by_subset["mixed"])
    # every resample's macro mean is (1 + mixed mean) / 2, so the interval is the mixed one mapped
    assert (low, high) == pytest.approx(((1 + mixed_low) / 2, (1 + mixed_high) / 2))
    assert bootstrap_ci_macro({"x": [0.2, 0.2], "y": [0.6]}) == pytest.approx((0.4, 0.4))
    assert all(math.isnan(x) for x in bootstrap_ci_macro({"empty": []}))


def test_macro_tasks_fall_back_to_micro_when_subsets_are_small():
    """A stratified bootstrap gives a one-sample subset no variance: under --limit, MMLU's 57 subjects hold
    a few samples each, so its CI would be far too narrow. Below MIN_PER_SUBSET the task is scored micro."""
    from taia.eval.results import MIN_PER_SUBSET, summarize
    from taia.eval.task import Task

    task = Task("mmlu", "mc", "", 1, aggregate="macro")
    few = [{"subset": f"s{i}", "correct": i % 3 == 0, "output": "A"} for i in range(40)]
    small = summarize(task, few)
    assert small["aggregate"] == "micro" and small["score"] == sum(r["correct"] for r in few) / 40
    assert small["ci95"][1] - small["ci95"][0] > 0.2  # an honest width for n = 40
    many = [{"subset": f"s{i % 2}", "correct": i % 3 == 0, "output": "A"} for i in range(2 * MIN_PER_SUBSET)]
    assert summarize(task, many)["aggregate"] == "macro"


def test_paired_delta_is_taken_on_the_same_samples():
    from taia.eval.results import paired_delta

    def rows(correct, subsets="aabb"):
        pairs = zip(correct, subsets, strict=True)
        return [{"id": f"q{i}", "subset": s, "correct": c} for i, (c, s) in enumerate(pairs)]

    got = paired_delta(rows([1, 1, 0, 0]), rows([1, 0, 0, 1]), macro=False)
    assert (got["delta"], got["n"], got["changed"]) == (0.0, 4, 2)
    assert got["ci95"][0] < 0 < got["ci95"][1]
    assert paired_delta(rows([1, 1, 1, 1]), rows([0, 1, 1, 1])[1:], macro=False)["n"] == 3  # shared ids
    macro = paired_delta(rows([1, 1, 1, 0], "abbb"), rows([0, 1, 0, 0], "abbb"), macro=True)
    assert macro["delta"] == pytest.approx((1.0 + 1 / 3) / 2)  # subset a: +1; subset b: (0 + 1 + 0) / 3
    same = paired_delta(rows([1, 0, 1, 0]), rows([1, 0, 1, 0]), macro=False)
    assert same["ci95"] == [0.0, 0.0] and same["changed"] == 0
