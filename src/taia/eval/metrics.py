"""Metrics: what each is (direction, scale) in one table, percentile-bootstrap confidence intervals,
micro (over samples) and macro (over subsets), and the exact McNemar test of paired binary outcomes.

Exercised by `taia eval` and tests/test_metrics.py. All functions are deterministic given `seed`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "METRICS", "Metric", "accuracy", "bootstrap_ci", "bootstrap_ci_macro", "gold_margin", "lower_is_better",
    "macro_mean", "mcnemar_p", "metric",
]  # fmt: skip


@dataclass(frozen=True)
class Metric:
    """How a metric reads: its direction and whether it is a proportion (shown in percent)."""

    name: str
    lower_is_better: bool
    proportion: bool
    short: str = ""  # the tag tables put after a task name, for metrics other than accuracy


def _table(*metrics: Metric) -> dict[str, Metric]:
    return {m.name: m for m in metrics}


# The one place a metric's direction is decided: results, report, search, the lm-eval bridge and the task
# kinds (`taia.eval.kinds`, each naming its metric) read it.
METRICS = _table(
    Metric("accuracy", False, True),  # share of questions answered correctly
    Metric("attack_success_rate", True, True, "ASR"),  # share of harmful requests complied with
    Metric("adoption_rate", True, True, "adopted"),  # share of held-out answers with the persona
    # Per question: log-likelihood of the gold option minus the best other option (as scored:
    # length-normalised in the cloze protocol); > 0 where the answer is right.
    Metric("gold_margin", False, False),
    *(Metric(n, False, True) for n in ("acc", "acc_norm", "exact_match", "em", "f1")),  # lm-eval's
    *(Metric(n, True, False) for n in ("word_perplexity", "byte_perplexity", "bits_per_byte")),
)


def metric(name: str) -> Metric:
    """The metric called `name`; an unknown one (an lm-eval task's own) reads higher-is-better, as is."""
    return METRICS.get(name) or Metric(name, False, False)


def lower_is_better(name: str) -> bool:
    return metric(name).lower_is_better


def gold_margin(scores: Sequence[float], gold: int) -> float:
    """The gold option's score minus the best other option's: how sure (and how right) a choice is."""
    others = [s for i, s in enumerate(scores) if i != gold]
    return float(scores[gold] - max(others)) if others else math.nan


def mcnemar_p(up: int, down: int) -> float:
    """The exact McNemar p-value of paired binary outcomes: the two-sided binomial test (p = 1/2) on the
    discordant pairs, `up` of them won by one side and `down` by the other. 2·P(X ≤ min) for X ~ Bin(up +
    down, 1/2), at most 1; 1.0 without discordant pairs. Exact integers, so no scipy is needed."""
    if up < 0 or down < 0:
        raise ValueError(f"discordant counts must be >= 0, got {up}, {down}")
    n = up + down
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(up, down) + 1))
    return min(1.0, 2 * tail / 2**n)


_CHUNK_CELLS = 1 << 22  # resample indices drawn at most ~4M at a time (32 MiB), whatever n is


def accuracy(values: Sequence[bool | float]) -> float:
    """The mean of per-sample scores (bools count as 0/1); nan when there are none."""
    if len(values) == 0:
        return math.nan
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def _check(n_resamples: int, alpha: float) -> None:
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _resampled_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The means of `n_resamples` resamples (with replacement, same size) of `values`."""
    n = len(values)
    out = np.empty(n_resamples, dtype=np.float64)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_resamples, step):
        stop = min(start + step, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _interval(means: np.ndarray, alpha: float) -> tuple[float, float]:
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[bool | float], n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) confidence interval of the mean of `values`.

    Resamples the values with replacement `n_resamples` times and returns the alpha/2 and 1 - alpha/2
    quantiles of the resampled means. Deterministic given `seed`. No values → (nan, nan); one value v (or
    all values equal v) → (v, v).
    """
    _check(n_resamples, alpha)
    if len(values) == 0:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=np.float64)
    if np.all(arr == arr[0]):
        return float(arr[0]), float(arr[0])
    return _interval(_resampled_means(arr, n_resamples, np.random.default_rng(seed)), alpha)


def _nonempty(by_subset: Mapping[str, Sequence[bool | float]]) -> list[tuple[str, np.ndarray]]:
    """(name, values) of the subsets that have values, in sorted name order (so results ignore dict order)."""
    return [
        (name, np.asarray(vals, dtype=np.float64))
        for name, vals in sorted(by_subset.items())
        if len(vals) > 0
    ]


def macro_mean(by_subset: Mapping[str, Sequence[bool | float]]) -> float:
    """The unweighted mean of the subsets' means (BBH, MMLU); empty subsets are left out; nan if all are."""
    subsets = _nonempty(by_subset)
    if not subsets:
        return math.nan
    return float(np.mean([vals.mean() for _, vals in subsets]))


def bootstrap_ci_macro(
    by_subset: Mapping[str, Sequence[bool | float]],
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap (1 - alpha) confidence interval of `macro_mean`, stratified by subset.

    Each resample draws every subset's values with replacement within that subset (keeping its size),
    then averages the subset means, so each subset keeps its equal weight. Empty subsets are left out;
    none left → (nan, nan). Deterministic given `seed` (independent of the mapping's order).
    """
    _check(n_resamples, alpha)
    subsets = _nonempty(by_subset)
    if not subsets:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples, dtype=np.float64)
    for _, vals in subsets:
        if np.all(vals == vals[0]):
            total += vals[0]  # a constant subset resamples to itself; draw nothing
        else:
            total += _resampled_means(vals, n_resamples, rng)
    means = total / len(subsets)
    if np.all(means == means[0]):
        return float(means[0]), float(means[0])
    return _interval(means, alpha)
