"""Evaluation results on disk: per-sample JSONL written as it goes, resumable, and aggregates with CIs.

    OUT/samples/<variant>/<task>.jsonl   one line per answered sample (id, subset, prompt, output,
                                         extracted, gold, correct), appended and flushed per batch
    OUT/results.json                     accuracy (ASR for AdvBench) with a 95 % bootstrap CI per
                                         variant × task, per-subset accuracies, paired Δ vs base and
                                         vanilla with their CIs, run info
    OUT/eval_config.yaml                 the resolved config
    OUT/timings.jsonl                    wall seconds of the model load and of each variant × task

A re-run reads the JSONL files and skips the ids already there; a line cut short by a crash is dropped,
so an interrupted run loses at most the batch in flight and never duplicates a sample.
Exercised by `taia eval ... --out DIR` (run it twice) and tests/test_eval.py.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from taia.eval.metrics import bootstrap_ci, bootstrap_ci_macro, macro_mean
from taia.eval.task import Task

REFERENCES = ("base", "vanilla")  # the variants Δs (plain and paired) are taken against
MIN_PER_SUBSET = 10  # samples every subset needs before a task is averaged (and bootstrapped) per subset


class SampleLog:
    """The append-only JSONL of one variant × task."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        if path.is_file():
            self._load()

    def _load(self) -> None:
        text = self.path.read_text()
        good: list[str] = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # the line a crash cut short; everything after it is gone too
            self.rows.setdefault(row["id"], row)
            good.append(line)
        if len(good) != len(text.splitlines()) or (text and not text.endswith("\n")):
            self.path.write_text("".join(x + "\n" for x in good))

    def done(self) -> set[str]:
        return set(self.rows)

    def append(self, rows: list[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for row in rows:
                if row["id"] not in self.rows:
                    self.rows[row["id"]] = row
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def summarize(task: Task, rows: list[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """Accuracy (or attack success rate) with a 95 % bootstrap CI, micro or macro over subsets."""
    values = [float(r["correct"]) for r in rows]
    by_subset: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_subset[r.get("subset") or ""].append(float(r["correct"]))
    # A stratified bootstrap gives a subset of one or two samples (MMLU's 57 subjects under --limit) no
    # variance at all, so such a macro CI would be far too narrow: below MIN_PER_SUBSET, report micro.
    macro = task.aggregate == "macro" and len(by_subset) > 1
    macro = macro and min(map(len, by_subset.values())) >= MIN_PER_SUBSET
    score = macro_mean(by_subset) if macro else (sum(values) / len(values) if values else float("nan"))
    lo, hi = bootstrap_ci_macro(by_subset, seed=seed) if macro else bootstrap_ci(values, seed=seed)
    out: dict[str, Any] = {
        "metric": "attack_success_rate" if task.kind == "refusal" else "accuracy",
        "score": score,
        "ci95": [lo, hi],
        "n": len(values),
        "empty_outputs": sum(1 for r in rows if r.get("output") == ""),
        "aggregate": "macro" if macro else "micro",
    }
    if len(by_subset) > 1:
        out["subsets"] = {k: sum(v) / len(v) for k, v in sorted(by_subset.items())}
    return out


def paired_delta(
    rows: list[dict[str, Any]], ref_rows: list[dict[str, Any]], macro: bool, seed: int = 0
) -> dict[str, Any]:
    """Δ = score − the reference's on the same samples, with a 95 % bootstrap CI of the per-sample
    differences (stratified by subset when the task is scored macro). Paired, so far narrower than the two
    scores' own CIs suggest; `changed` counts the samples whose correctness differs."""
    ref = {r["id"]: float(r["correct"]) for r in ref_rows}
    by_subset: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["id"] in ref:
            by_subset[r.get("subset") or ""].append(float(r["correct"]) - ref[r["id"]])
    diffs = [d for values in by_subset.values() for d in values]
    if macro:
        delta, (lo, hi) = macro_mean(by_subset), bootstrap_ci_macro(by_subset, seed=seed)
    else:
        delta = sum(diffs) / len(diffs) if diffs else float("nan")
        lo, hi = bootstrap_ci(diffs, seed=seed)
    return {"delta": delta, "ci95": [lo, hi], "n": len(diffs), "changed": sum(1 for d in diffs if d)}


def table(results: dict[str, dict[str, dict[str, Any]]], variants: list[str], tasks: list[str]) -> str:
    """Tasks × variants, each cell `score [lo, hi]` in percent."""
    width = 22
    lines = [f"{'task':18}" + "".join(f"{v:>{width}}" for v in variants)]
    for task in tasks:
        cells = []
        for v in variants:
            r = results.get(v, {}).get(task)
            cells.append(
                f"{100 * r['score']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]" if r else "-"
            )
        name = task + (" (ASR)" if any(results.get(v, {}).get(task, {}).get("metric") == "attack_success_rate"
                                     for v in variants) else "")  # fmt: skip
        lines.append(f"{name:18}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)
