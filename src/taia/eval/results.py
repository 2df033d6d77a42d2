"""Evaluation results on disk: per-sample JSONL written as it goes, resumable, and aggregates with CIs.

    OUT/samples/<variant>/<task>.jsonl   one line per answered sample (id, subset, prompt, output,
                                         extracted, gold, correct), appended and flushed per batch
    OUT/results.json                     accuracy (ASR for AdvBench, adoption rate for persona) with a
                                         95 % bootstrap CI per variant × task, the gold-option margin
                                         of choice tasks, per-subset accuracies, paired Δ vs base and
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
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from taia.errors import TaiaError
from taia.eval.kinds import kind_of
from taia.eval.metrics import bootstrap_ci, bootstrap_ci_macro, gold_margin, macro_mean, mcnemar_p, metric
from taia.eval.scored import RowLike, ScoredRow, as_json
from taia.eval.task import LETTERS, Task
from taia.io.atomic import write_file

REFERENCES = ("base", "vanilla")  # the variants Δs (plain and paired) are taken against
MIN_PER_SUBSET = 10  # samples every subset needs before a task is averaged (and bootstrapped) per subset


class SampleLog:
    """The append-only JSONL of one variant × task. `rows` holds each line's JSON by sample id; `row(id)`
    reads one back as a `ScoredRow`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        if path.is_file():
            self._load()

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        good = _complete_lines(text)
        for _, row in good:
            self.rows.setdefault(row["id"], row)
        if len(good) != len(text.splitlines()) or (text and not text.endswith("\n")):
            write_file(self.path, "".join(line + "\n" for line, _ in good))  # the cut line dropped

    def done(self) -> set[str]:
        return set(self.rows)

    def row(self, sample_id: str) -> ScoredRow:
        return _typed(self.path, sample_id, self.rows[sample_id])

    def rescore(self, score: Callable[[ScoredRow], ScoredRow]) -> None:
        """Replace each row with `score(row)` (scored again); rewrite the file if any changed."""
        changed = False
        for sample_id, row in self.rows.items():
            new = score(self.row(sample_id)).to_json()
            changed = changed or new != row
            self.rows[sample_id] = new
        if changed:
            lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows.values())
            write_file(self.path, "".join(lines))

    def forget(self, ids: Collection[str]) -> None:
        """Drop the rows of `ids` (stale answers, to be answered again); the file is rewritten without."""
        if not ids:
            return
        for sample_id in ids:
            del self.rows[sample_id]
        write_file(self.path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows.values()))

    def append(self, rows: Sequence[RowLike]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            for given in rows:
                row = dict(as_json(given))
                if row["id"] not in self.rows:
                    self.rows[row["id"]] = row
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _typed(path: Path, sample_id: str, row: Mapping[str, Any]) -> ScoredRow:
    try:
        return ScoredRow.from_json(row)
    except ValueError as e:  # a hand-edited or foreign file: say which
        raise TaiaError(f"{path}: {sample_id!r}: {e}") from None


def _row_id(row: Any) -> str | None:
    return row.get("id") if isinstance(row, dict) else None


def _margin(row: Mapping[str, Any]) -> float | None:
    """A choice row's gold-option margin (`metrics.gold_margin`); None for generated answers."""
    scores, gold = row.get("scores"), row.get("gold")
    if not scores or not isinstance(gold, str) or len(gold) != 1 or gold not in LETTERS[: len(scores)]:
        return None
    return gold_margin(scores, LETTERS.index(gold))


def _by_subset(rows: Sequence[Mapping[str, Any]], values: Sequence[float]) -> dict[str, list[float]]:
    """Each row's value (`values`, in row order) grouped by the row's subset."""
    out: dict[str, list[float]] = defaultdict(list)
    for r, value in zip(rows, values, strict=True):
        out[r.get("subset") or ""].append(value)
    return out


def _mean_ci(by_subset: dict[str, list[float]], macro: bool, seed: int) -> tuple[float, list[float]]:
    """The (macro or micro) mean of the values and its 95 % bootstrap CI (stratified when macro)."""
    if macro:
        return macro_mean(by_subset), list(bootstrap_ci_macro(by_subset, seed=seed))
    values = [x for vals in by_subset.values() for x in vals]
    return (sum(values) / len(values) if values else float("nan")), list(bootstrap_ci(values, seed=seed))


def _macro(task: Task, by_subset: dict[str, list[float]]) -> bool:
    # A stratified bootstrap gives a subset of one or two samples (MMLU's 57 subjects under --limit) no
    # variance at all, so such a macro CI would be far too narrow: below MIN_PER_SUBSET, report micro.
    macro = task.aggregate == "macro" and len(by_subset) > 1
    return macro and min(map(len, by_subset.values())) >= MIN_PER_SUBSET


def _complete_lines(text: str) -> list[tuple[str, Any]]:
    """(line, its JSON) of the JSONL lines before the first one a crash cut short (everything after it is
    gone too); each line is parsed once, here."""
    good: list[tuple[str, Any]] = []
    for line in text.splitlines():
        try:
            good.append((line, json.loads(line)))
        except json.JSONDecodeError:
            break
    return good


def read_rows(path: Path) -> list[ScoredRow]:
    """A sample log's rows, read only (the report's view; `SampleLog` also repairs the file)."""
    if not path.is_file():
        return []
    good = _complete_lines(path.read_text(encoding="utf-8"))
    return [_typed(path, _row_id(row) or f"line {i}", row) for i, (_, row) in enumerate(good, 1)]


def summarize(task: Task, answered: Sequence[RowLike], seed: int = 0) -> dict[str, Any]:
    """The task's metric (accuracy, attack success or adoption rate: its kind's) with a 95 % bootstrap CI,
    micro or macro over subsets; choice tasks add the gold-option margin (mean and CI) as a secondary
    metric. Only `correct` is needed of a row; `subset`, `output`, `gold` and `scores` are read if there."""
    rows = [as_json(r) for r in answered]
    by_subset = _by_subset(rows, [float(r["correct"]) for r in rows])
    macro = _macro(task, by_subset)
    score, ci = _mean_ci(by_subset, macro, seed)
    out: dict[str, Any] = {
        "metric": kind_of(task.kind).metric,
        "score": score,
        "ci95": ci,
        "n": len(rows),
        "empty_outputs": sum(1 for r in rows if r.get("output") == ""),
        "aggregate": "macro" if macro else "micro",
    }
    margins = [_margin(r) for r in rows]
    if rows and all(m is not None for m in margins):
        mean, margin_ci = _mean_ci(_by_subset(rows, [m or 0.0 for m in margins]), macro, seed)
        out["margin"] = {"mean": mean, "ci95": margin_ci}
    if len(by_subset) > 1:
        out["subsets"] = {k: sum(v) / len(v) for k, v in sorted(by_subset.items())}
    return out


def paired_delta(
    answered: Sequence[RowLike], reference: Sequence[RowLike], macro: bool, seed: int = 0
) -> dict[str, Any]:
    """Δ = score − the reference's on the same samples, with a 95 % bootstrap CI of the per-sample
    differences (stratified by subset when the task is scored macro). Paired, so far narrower than the two
    scores' own CIs suggest; `changed` counts the samples whose correctness differs. `mcnemar`: the exact
    McNemar p-value of those discordant samples (pooled over subsets), their count, and how many went
    `up` (right only here: +1 in Δ) and `down`. Choice tasks add the same Δ for the gold-option margin
    (`margin`), which resolves differences accuracy cannot."""
    ref = {r["id"]: r for r in map(as_json, reference)}
    both = [r for r in map(as_json, answered) if r["id"] in ref]
    diffs = _by_subset(both, [float(r["correct"]) - float(ref[r["id"]]["correct"]) for r in both])
    delta, ci = _mean_ci(diffs, macro, seed)
    n = sum(map(len, diffs.values()))
    out: dict[str, Any] = {"delta": delta, "ci95": ci, "n": n}
    out["changed"] = sum(1 for v in diffs.values() for d in v if d)
    up = sum(1 for v in diffs.values() for d in v if d > 0)
    down = out["changed"] - up
    out["mcnemar"] = {"p": mcnemar_p(up, down), "discordant": up + down, "up": up, "down": down}
    pairs = [(_margin(r), _margin(ref[r["id"]])) for r in both]
    if both and all(a is not None and b is not None for a, b in pairs):
        margins = _by_subset(both, [(a or 0.0) - (b or 0.0) for a, b in pairs])
        m_delta, m_ci = _mean_ci(margins, macro, seed)
        out["margin"] = {"delta": m_delta, "ci95": m_ci}
    return out


def aggregate(
    tasks: Mapping[str, Task],
    rows: Mapping[tuple[str, str], Sequence[RowLike]],
    names: Sequence[str],
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(results, paired) of answered rows (variant, task → rows, in the tasks' sample order: bootstrap
    draws follow it): each variant × task `summarize`d, and each variant's paired Δ vs every reference
    (base, vanilla) answered too, on the same samples — what results.json holds, for `taia eval` and
    `taia score` alike."""
    plain = {k: [dict(as_json(r)) for r in answered] for k, answered in rows.items()}
    results = {v: {t: summarize(tasks[t], plain[v, t], seed) for t in tasks} for v in names}
    paired: dict[str, Any] = {}
    for (v, t), answered in plain.items():
        for ref in REFERENCES:
            if ref != v and (ref, t) in plain:
                macro = results[v][t]["aggregate"] == "macro"
                delta = paired_delta(answered, plain[ref, t], macro, seed)
                paired.setdefault(v, {}).setdefault(t, {})[ref] = delta
    return results, paired


def results_doc(results: dict[str, Any], paired: dict[str, Any], mode: str, run: dict[str, Any]) -> str:
    """results.json's text: the results, the paired Δs, the scoring mode and the run info."""
    return json.dumps({"results": results, "paired": paired, "mode": mode, "run": run}, indent=2) + "\n"


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
        names = {results.get(v, {}).get(task, {}).get("metric") or "accuracy" for v in variants}
        name = task + next((f" ({metric(m).short})" for m in sorted(names) if metric(m).short), "")
        lines.append(f"{name:18}" + "".join(f"{c:>{width}}" for c in cells))
    return "\n".join(lines)
