"""The data of a run's report: what a run dir holds, read back (`load_run` → `RunData`), and the rows,
numbers and CSV/JSON that `taia.run.render` writes and `taia.run.document` / `taia.run.plots` show.

    taia report RUN_DIR    re-render RUN/report.{md,html,csv,json} and RUN/plots/*.png from what is there:
                           RUN/eval/results.json (required; RUN/results.json for a bare `taia eval` out dir),
                           RUN/train/loss.jsonl, RUN/train/taia_train.json, RUN/inspect.json (optional)

Pure rendering: nothing is trained or evaluated. Every number shown goes through one rule, `shown`:
proportions (accuracy, ASR, adoption rate, lm-eval's acc/acc_norm/exact_match/em/f1) as
`f"{100 * x:.1f}"` percent, Δ as signed percentage points of the unrounded difference; other metrics as
they are, 3 decimals. report.json
holds the full-precision rows and the same strings under `shown`. Exercised by tests/test_report.py.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taia.errors import TaiaError
from taia.eval.metrics import METRICS, lower_is_better
from taia.eval.results import REFERENCES
from taia.io.timings import LOG, sum_seconds
from taia.run.shape import check_results

RESULTS = Path("eval") / "results.json"
LOSS = Path("train") / "loss.jsonl"
TRAIN = Path("train") / "taia_train.json"
INSPECT = Path("inspect.json")
PLOTS = "plots"
OUTPUTS = {"md": "report.md", "csv": "report.csv", "json": "report.json", "html": "report.html"}

# Read from the one metric table (taia.eval.metrics.METRICS): shown in percent; those higher-is-better.
PROPORTIONS = frozenset(name for name, m in METRICS.items() if m.proportion)
ACCURACY = frozenset(name for name in PROPORTIONS if not METRICS[name].lower_is_better)
ROUNDING = (
    "proportions shown as f'{100 * x:.1f}' percent, Δ as signed percentage points of the unrounded "
    "difference, other metrics as f'{x:.3f}'"
)
CSV_FIELDS = (
    "task", "variant", "metric", "score", "ci_lo", "ci_hi", "n", "empty_outputs",
    "delta_vs_base", "delta_vs_vanilla", "best", "lower_is_better",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- the data


@dataclass
class RunData:
    """Everything the report reads from one run dir (`load_run`)."""

    run_dir: Path
    results: dict[str, dict[str, dict[str, Any]]]  # variant → task → results.json entry
    run_info: dict[str, Any]
    loss: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] | None = None
    inspect: dict[str, Any] | None = None
    stages: dict[str, float] = field(default_factory=dict)  # wall seconds per `taia run` stage
    paired: dict[str, Any] = field(default_factory=dict)  # variant → task → reference → paired Δ, its CI

    @property
    def variants(self) -> list[str]:
        return list(self.results)

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for by_task in self.results.values() for t in by_task))

    @property
    def config(self) -> dict[str, Any]:
        config = self.run_info.get("config")
        return config if isinstance(config, dict) else {}

    def entry(self, variant: str, task: str) -> dict[str, Any] | None:
        return self.results.get(variant, {}).get(task)

    def score(self, variant: str, task: str) -> float | None:
        entry = self.entry(variant, task)
        return finite(entry.get("score")) if entry else None

    def metric(self, task: str) -> str:
        entries = (self.entry(v, task) for v in self.variants)
        return next((str(e.get("metric", "accuracy")) for e in entries if e), "accuracy")


def load_run(run_dir: Path) -> RunData:
    """Read a run dir; only the eval results are required (TaiaError without them)."""
    run_dir = Path(run_dir)
    path = results_path(run_dir)
    doc = _read_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise TaiaError(f"{path} holds no 'results': not a `taia eval` results.json")
    check_results(path, doc)
    train, inspect = _read_optional(run_dir / TRAIN), _read_optional(run_dir / INSPECT)
    # A bare `taia eval --out` dir has its own timings.jsonl (per variant × task), not a run's stages.
    stages = sum_seconds(run_dir / LOG, "stage") if path == run_dir / RESULTS else {}
    loss = read_loss(run_dir / LOSS)
    paired = doc.get("paired")
    paired = paired if isinstance(paired, dict) else {}
    return RunData(run_dir, doc["results"], doc.get("run") or {}, loss, train, inspect, stages, paired)


def results_path(run_dir: Path) -> Path:
    """RUN/eval/results.json, or RESULTS.json of a bare `taia eval --out` dir (the eval's samples/ is
    beside it); TaiaError when there is neither."""
    for path in (run_dir / RESULTS, run_dir / RESULTS.name):
        if path.is_file():
            return path
    raise TaiaError(f"no eval results in {run_dir}: expected {run_dir / RESULTS} (written by `taia eval`)")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TaiaError(f"cannot read {path}: {e}") from e


def _read_optional(path: Path) -> dict[str, Any] | None:
    doc = _read_json(path) if path.is_file() else None
    return doc if isinstance(doc, dict) else None


def read_loss(path: Path) -> list[dict[str, Any]]:
    """loss.jsonl's entries with a numeric step and loss; a line cut short (a live log) is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if (
            isinstance(row, dict)
            and finite(row.get("step")) is not None
            and finite(row.get("loss")) is not None
        ):
            rows.append(row)
    return rows


def finite(x: Any) -> float | None:
    """x as a float, or None when it is missing, not a number, or not finite."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


# ----------------------------------------------------------------------------------- the one number rule


def shown(x: float | None, metric: str = "accuracy", signed: bool = False) -> str:
    """A value as the report shows it (module docstring); "–" when there is none."""
    x = finite(x)
    if x is None:
        return "–"
    scale, digits = (100, 1) if metric in PROPORTIONS else (1, 3)
    text = f"{scale * x:{'+' if signed else ''}.{digits}f}"
    return "+" + text[1:] if signed and float(text) == 0 else text  # no "-0.0"


def shown_ci(x: float | None, ci: Any, metric: str = "accuracy", signed: bool = False) -> str:
    """`x [lo, hi]`, each number as `shown` has it; `x` alone when x or either bound of the 95 % CI
    (`ci`: a [lo, hi] list, or None) is missing or not finite."""
    text = shown(x, metric, signed)
    bounds = [finite(b) for b in ci] if isinstance(ci, (list, tuple)) and len(ci) == 2 else [None]
    if text == "–" or None in bounds:
        return text
    lo, hi = (shown(b, metric, signed) for b in bounds)
    return f"{text} [{lo}, {hi}]"


# -------------------------------------------------------------------------------------------- the rows


def table_rows(data: RunData) -> list[dict[str, Any]]:
    """One row per (task, variant) present, tasks then variants in results order; fractions unrounded."""
    rows = []
    for task in data.tasks:
        best = best_variants(data, task)
        for variant in data.variants:
            entry = data.entry(variant, task)
            if entry is not None:
                rows.append(score_row(data, task, variant, entry, variant in best))
    return rows


def score_row(data: RunData, task: str, variant: str, entry: dict[str, Any], best: bool) -> dict[str, Any]:
    ci = entry.get("ci95") or [None, None]
    metric = str(entry.get("metric", "accuracy"))
    return {
        "task": task,
        "variant": variant,
        "metric": metric,
        "score": finite(entry.get("score")),
        "ci_lo": finite(ci[0]) if len(ci) > 1 else None,
        "ci_hi": finite(ci[1]) if len(ci) > 1 else None,
        "n": entry.get("n"),
        "empty_outputs": entry.get("empty_outputs", 0),
        "delta_vs_base": delta(data, variant, task, "base"),
        "delta_vs_vanilla": delta(data, variant, task, "vanilla"),
        "delta_vs_base_ci95": paired_ci(data, variant, task, "base"),
        "delta_vs_vanilla_ci95": paired_ci(data, variant, task, "vanilla"),
        "best": best,
        "lower_is_better": lower_is_better(metric),
    }


def delta(data: RunData, variant: str, task: str, reference: str) -> float | None:
    """score − the reference variant's score (unrounded); None for the reference itself or when missing."""
    if variant == reference:
        return None
    score, ref = data.score(variant, task), data.score(reference, task)
    return None if score is None or ref is None else score - ref


def paired_ci(data: RunData, variant: str, task: str, reference: str) -> list[float] | None:
    """The 95 % CI of the paired Δ (same samples) from results.json; None when it was not computed."""
    entry = data.paired.get(variant, {}).get(task, {}).get(reference) or {}
    ci = [finite(x) for x in entry.get("ci95") or []]
    return [ci[0], ci[1]] if len(ci) == 2 and ci[0] is not None and ci[1] is not None else None


def paired_test(data: RunData, variant: str, task: str, reference: str) -> dict[str, Any] | None:
    """The exact McNemar test of the paired Δ from results.json (p, discordant, up, down); None when it
    was not computed (results written before it was)."""
    entry = data.paired.get(variant, {}).get(task, {}).get(reference) or {}
    test = entry.get("mcnemar")
    return test if isinstance(test, dict) and finite(test.get("p")) is not None else None


def shown_test(test: dict[str, Any] | None) -> str:
    """A McNemar test as tables show it: `p (n discordant: +up / −down)`, p to 3 decimals (`<0.001`
    below); "–" without one."""
    if test is None:
        return "–"
    p = float(test["p"])
    text = "<0.001" if p < 0.0005 else f"{p:.3f}"
    return f"{text} ({test.get('discordant')} discordant: +{test.get('up')} / −{test.get('down')})"


def best_variants(data: RunData, task: str) -> set[str]:
    """The variants with the best score on a task (lowest where lower is better); ties all count."""
    scores = {v: s for v in data.variants if (s := data.score(v, task)) is not None}
    if not scores:
        return set()
    target = (min if lower_is_better(data.metric(task)) else max)(scores.values())
    return {v for v, s in scores.items() if _tie(s, target)}


def _tie(a: float, b: float) -> bool:
    """Equal up to float noise (a macro mean summed in another order), so equal scores are both best."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def mean_row(data: RunData) -> dict[str, Any]:
    """Mean score per variant over the accuracy tasks every variant has a score on (ASR never counts)."""
    tasks = [
        t
        for t in data.tasks
        if data.metric(t) in ACCURACY and all(data.score(v, t) is not None for v in data.variants)
    ]
    if not tasks:
        return {"tasks": [], "score": {}, "delta_vs_base": {}, "delta_vs_vanilla": {}, "best": []}
    score = {v: sum(data.score(v, t) or 0.0 for t in tasks) / len(tasks) for v in data.variants}
    top = max(score.values())
    return {
        "tasks": tasks,
        "score": score,
        **{
            f"delta_vs_{r}": {v: s - score[r] for v, s in score.items() if r in score and v != r}
            for r in REFERENCES
        },
        "best": [v for v, s in score.items() if _tie(s, top)],
    }


def report_json(data: RunData, rows: list[dict[str, Any]], plots: dict[str, str]) -> dict[str, Any]:
    """report.json: the rows and the mean (unrounded), the strings shown, plots, training, run info."""
    return {
        "rows": [{**r, "shown": _shown_row(r)} for r in rows],
        "mean": mean_row(data),
        "rounding": ROUNDING,
        "plots": plots,
        "train": training_summary(data),
        "run": data.run_info,
    }


def _shown_row(row: dict[str, Any]) -> dict[str, str]:
    m = row["metric"]
    out = {k: shown(row[k], m) for k in ("score", "ci_lo", "ci_hi")}
    return out | {k: shown(row[k], m, signed=True) for k in ("delta_vs_base", "delta_vs_vanilla")}


def training_summary(data: RunData) -> dict[str, Any] | None:
    """What the training stage reports (taia_train.json, else the loss log); None without either."""
    train, loss = data.train or {}, data.loss
    if not train and not loss:
        return None
    manifest = train.get("data")
    manifest = manifest if isinstance(manifest, dict) else {}
    last = train.get("last_loss")
    last = last if last is not None else (loss[-1]["loss"] if loss else None)
    return {
        "variant": train.get("variant"),
        "steps": train.get("steps", loss[-1]["step"] if loss else None),
        "examples": manifest.get("total"),
        "final_loss": last,
        "mean_loss": train.get("train_loss"),
        "seconds": train.get("seconds"),
        "tokens_per_second": train.get("tokens_per_second"),
    }


def render_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV: a header, full-precision floats, empty cells for missing values."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in CSV_FIELDS} for r in rows)
    return buf.getvalue()
