"""The lm-eval bridge: EleutherAI lm-evaluation-harness's `simple_evaluate` on every variant of one model.

Exercised by `taia eval --harness lm-eval --tasks <lm-eval tasks>` (names passed to lm-eval as they are)
and tests/test_harness.py. The model is loaded once; each variant is switched in place
(`Variants.switch`) under the same `HFLM` wrapper, so lm-eval scores exactly what `--harness taia` would.

    OUT/lm_eval/<variant>.json                    lm-eval's raw results (everything but the samples)
    OUT/samples/<variant>/<task>.lm-eval.jsonl    lm-eval's per-sample logs, one line per doc × filter

Each lm-eval task (and group with an aggregate) becomes one taia result: `score` is its primary metric,
the first of PRIMARY it reports (acc_norm, else acc, else exact_match, em, f1), else the first metric it
reports; with the "none" filter when there is one, else the task's first filter (e.g. gsm8k's
strict-match). `ci95` is the normal approximation score ± 1.96 × lm-eval's own `<metric>_stderr`, clipped
to [0, 1] for PRIMARY metrics (proportions) — not taia's bootstrap; (nan, nan) when lm-eval reports no
stderr. `n` is lm-eval's effective sample count (summed over a group's tasks). lm-eval takes the first
`limit` docs, not a seeded sample, and a run is not resumable: every call re-runs every variant.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any

from taia.errors import TaiaError
from taia.eval.config import EvalConfig
from taia.eval.loracl import ROUTER

PRIMARY = ("acc_norm", "acc", "exact_match", "em", "f1")  # proportions, best first
Z95 = 1.959963984540054
CI_METHOD = "normal approximation: score ± 1.96 × lm-eval's stderr"


def run_lm_eval(
    cfg: EvalConfig,
    specs: dict[str, Any],
    include_path: str | None = None,
    *,
    apply_chat_template: bool = False,
) -> dict[str, dict[str, dict[str, Any]]]:
    """results[variant][task] in taia's shape (see the module docstring), lm-eval's files written under
    `cfg.out`. `include_path`: a dir of extra lm-eval task YAMLs (lm-eval's `--include_path`)."""
    if ROUTER in cfg.variants:  # a router over taia's per-sample rows, which lm-eval does not write
        raise TaiaError(f"variant {ROUTER!r} needs harness=taia")
    lm_eval = _import_lm_eval()
    if cfg.backend != "hf":
        raise TaiaError("--harness lm-eval runs on the hf backend; drop --backend vllm")
    manager = task_manager(cfg.tasks, include_path)  # bad task names fail before the model loads
    from lm_eval.models.huggingface import HFLM

    from taia.eval.backends import make_hf

    backend, variants = make_hf(cfg, specs)
    lm = HFLM(pretrained=variants.model, tokenizer=backend.tokenizer, batch_size=cfg.batch_size)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for name in specs:
        variants.switch(name)  # in place: `lm` wraps this very module
        raw = lm_eval.simple_evaluate(
            model=lm, task_manager=manager, **_eval_kwargs(cfg, apply_chat_template)
        )
        if raw is None:
            raise TaiaError("lm-eval returned no results (a non-zero distributed rank?)")
        write_raw(Path(cfg.out), name, raw)
        results[name] = summarize_lm_eval(raw)
    return results


def _import_lm_eval() -> Any:
    try:
        import lm_eval
        from lm_eval.models.huggingface import HFLM  # noqa: F401 — fails early when its deps are missing
    except ImportError as e:
        raise TaiaError(f"--harness lm-eval needs lm-eval ({e}): pip install 'taia[lm-eval]'") from None
    return lm_eval


def _eval_kwargs(cfg: EvalConfig, apply_chat_template: bool) -> dict[str, Any]:
    """`simple_evaluate`'s arguments; the few-shot seed stays lm-eval's default so contexts match its runs.
    A per-task limit never gets here: `EvalConfig` refuses it with harness=lm-eval."""
    return {
        "tasks": list(cfg.tasks),
        "limit": cfg.limit,
        "log_samples": True,
        "random_seed": cfg.seed,
        "numpy_random_seed": cfg.seed,
        "torch_random_seed": cfg.seed,
        "apply_chat_template": apply_chat_template,
        "gen_kwargs": {"max_gen_toks": cfg.max_new_tokens} if cfg.max_new_tokens else None,
    }


def task_manager(tasks: list[str], include_path: str | None = None) -> Any:
    """lm-eval's TaskManager for `tasks`, which must all be known to it. Indexing lm-eval's ~15k built-in
    YAMLs takes ~20 s, so when every task is a plain task under `include_path` that index is skipped."""
    from lm_eval.tasks import TaskManager

    if include_path is not None:
        if not Path(include_path).is_dir():
            raise TaiaError(f"lm-eval include path {include_path} is not a directory")
        local = TaskManager(include_path=include_path, include_defaults=False)
        if all(_plain_task(local, t) for t in tasks):
            return local
    manager = TaskManager(include_path=include_path)
    check_tasks(manager, tasks, include_path)
    return manager


def _plain_task(manager: Any, name: str) -> bool:
    entry = manager.task_index.get(name)
    return entry is not None and entry.kind.name in ("TASK", "PY_TASK")


def check_tasks(manager: Any, tasks: list[str], include_path: str | None = None) -> None:
    """TaiaError naming the first task `manager` does not know (nor is a YAML file), with close matches."""
    for name in tasks:
        if name in manager.task_index or (name.endswith((".yaml", ".yml")) and Path(name).is_file()):
            continue
        close = difflib.get_close_matches(name, manager.all_tasks, n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        ls = "lm-eval ls tasks" + (f" --include_path {include_path}" if include_path else "")
        raise TaiaError(
            f"unknown lm-eval task {name!r}{hint} (`{ls}` lists the {len(manager.all_tasks)} it knows)"
        )


def summarize_lm_eval(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """lm-eval's results → {task: {metric, filter, score, ci95, ci_method, n, lm_eval}} (module docstring)."""
    out: dict[str, dict[str, Any]] = {}
    for task, metrics in raw["results"].items():
        chosen = primary_metric(metrics)
        if chosen is None:
            continue  # a group without an aggregate metric: its tasks are reported one by one
        metric, filt = chosen
        score = _number(metrics[f"{metric},{filt}"])
        out[task] = {
            "metric": metric,
            "filter": filt,
            "score": score,
            "ci95": normal_ci(score, metrics.get(f"{metric}_stderr,{filt}"), metric in PRIMARY),
            "ci_method": CI_METHOD,
            "n": _n_samples(raw, task),
            "lm_eval": _jsonable(metrics),
        }
    return out


def primary_metric(metrics: dict[str, Any]) -> tuple[str, str] | None:
    """(metric, filter) that stands for a task: the rule in the module docstring; None if it has none."""
    pairs = [tuple(k.split(",", 1)) for k in metrics if "," in k and "_stderr," not in k]
    names = list(dict.fromkeys(m for m, _ in pairs))
    if not names:
        return None
    metric = next((m for m in PRIMARY if m in names), names[0])
    filters = [f for m, f in pairs if m == metric]
    return metric, "none" if "none" in filters else filters[0]


def normal_ci(score: float, stderr: Any, bounded: bool = True) -> list[float]:
    """score ± 1.96·stderr, clipped to [0, 1] when `bounded`; (nan, nan) without a numeric stderr."""
    se = _number(stderr)
    if math.isnan(se) or math.isnan(score):
        return [math.nan, math.nan]
    lo, hi = score - Z95 * se, score + Z95 * se
    return [max(0.0, lo), min(1.0, hi)] if bounded else [lo, hi]


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):  # lm-eval writes "N/A" where it has no value
        return math.nan


def _n_samples(raw: dict[str, Any], task: str) -> int:
    counts = raw.get("n-samples", {})
    if task in counts:
        return int(counts[task]["effective"])
    return sum(_n_samples(raw, sub) for sub in raw.get("group_subtasks", {}).get(task, []))


def write_raw(out: Path, variant: str, raw: dict[str, Any]) -> None:
    """OUT/lm_eval/<variant>.json and OUT/samples/<variant>/<task>.lm-eval.jsonl, replaced whole."""
    (out / "lm_eval").mkdir(parents=True, exist_ok=True)
    rest = {k: v for k, v in raw.items() if k != "samples"}
    (out / "lm_eval" / f"{variant}.json").write_text(json.dumps(rest, indent=2, default=_default) + "\n")
    for task, rows in raw.get("samples", {}).items():
        path = out / "samples" / variant / f"{task}.lm-eval.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r, default=_default, ensure_ascii=False) + "\n" for r in rows))


def _default(obj: Any) -> Any:
    from lm_eval.utils import handle_non_serializable

    return handle_non_serializable(obj)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_default))
