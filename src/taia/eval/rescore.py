"""`taia score DIR --mode MODE`: an eval's stored answers scored again under another mode, nothing generated.

    DIR/results.json             now the MODE results (its "mode" says which; so does run.config.metric_mode)
    DIR/results.MODE.json        the same, by name; the results it replaces stay as results.OLD.json
    report.md / report.html      re-rendered where they are (a `taia run` dir, a search's test/)

DIR is a `taia eval --out` dir, or a dir holding eval dirs (a `taia run` dir's eval/, a search's dev/ and
test/). Each answer is read again from its stored output by the task kind's scoring (`taia.eval.score`):
choice answers (their option scores) and persona matches have no text to read again and are kept. The
rows are aggregated in the order the eval used (the tasks' own sample order, from their data, else the file
order), so re-scoring under the eval's own mode reproduces its results.json. Everything is read and scored
before anything is written. Exercised by tests/test_rescore.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taia.config import safe_yaml
from taia.errors import TaiaError
from taia.eval import loracl
from taia.eval.config import EvalConfig
from taia.eval.kinds import MODES, Scoring, TaskKind, kind_of
from taia.eval.results import aggregate, read_rows, results_doc, table
from taia.eval.scored import ScoredRow
from taia.eval.task import LETTERS
from taia.eval.tasks import get_task, load_samples, task_keys
from taia.io.atomic import write_file
from taia.io.rows import data_root

CONFIG, RESULTS = "eval_config.yaml", "results.json"  # what `taia eval` writes (taia.eval.runner)


class ScoreConfig(BaseModel):
    """`taia score DIR --mode MODE`: re-score an eval's stored answers (`rescore`)."""

    model_config = ConfigDict(extra="forbid")
    run_dir: str = Field(description="a `taia eval --out` dir, or a dir of eval dirs (a `taia run` dir)")
    mode: str = Field("strict", description=f"scoring mode: {', '.join(MODES)}")

    @field_validator("mode")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in MODES:
            raise ValueError(f"unknown scoring mode {v!r}; expected one of {', '.join(MODES)}")
        return v


def eval_dirs(root: Path) -> list[Path]:
    """`root` when it is an eval dir (its results.json and eval_config.yaml), else the eval dirs in it."""
    if _is_eval_dir(root):
        return [root]
    found = sorted(d for d in root.iterdir() if _is_eval_dir(d)) if root.is_dir() else []
    if not found:
        raise TaiaError(
            f"{root}: no eval results to re-score: expected {RESULTS} and {CONFIG} (written by `taia eval`) "
            "there or in a dir inside it"
        )
    return found


def _is_eval_dir(d: Path) -> bool:
    return (d / RESULTS).is_file() and (d / CONFIG).is_file()


def rescore(cfg: ScoreConfig) -> dict[str, Any]:
    """Re-score every eval dir under `cfg.run_dir` in `cfg.mode`, write the results and re-render the
    reports there; returns {"mode", "results": {eval dir: results}, "written": [paths]}."""
    root = Path(cfg.run_dir)
    done = {d: rescored(d, cfg.mode) for d in eval_dirs(root)}  # every dir read and scored: now write
    written: list[Path] = []
    for d, (old, new) in done.items():
        old_mode = old.get("mode") or (old.get("run") or {}).get("config", {}).get("metric_mode")
        if old_mode and not (d / f"results.{old_mode}.json").is_file():
            written.append(write_file(d / f"results.{old_mode}.json", (d / RESULTS).read_text()))
        text = results_doc(new["results"], new["paired"], cfg.mode, new["run"])
        written += [write_file(d / f"results.{cfg.mode}.json", text), write_file(d / RESULTS, text)]
        print(f"{d}: {cfg.mode}\n" + table(new["results"], list(new["results"]), _tasks(new["results"])))
    written += _rerender([root, *done])
    return {"mode": cfg.mode, "results": {str(d): new for d, (_, new) in done.items()}, "written": written}


def rescored(eval_dir: Path, mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the stored results.json, the same results scored in `mode`) of one eval dir; writes nothing."""
    old = _read_json(eval_dir / RESULTS)
    cfg = _eval_config(eval_dir)
    if cfg.get("harness") == "lm-eval":
        raise TaiaError(
            f"{eval_dir}: evaluated by lm-eval (--harness lm-eval): no stored answers to re-score"
        )
    keys = task_keys(list(cfg.get("tasks") or []))
    tasks = {key: get_task(ref) for ref, key in keys.items() if key in _tasks(old["results"])}
    names = list(old["results"])
    rows: dict[tuple[str, str], list[ScoredRow]] = {}
    for ref, key in ((r, k) for r, k in keys.items() if k in tasks):
        logs = {v: _read_log(eval_dir / "samples" / v / f"{key}.jsonl") for v in names}
        order = _order(ref, cfg, set.intersection(*(set(log) for log in logs.values())))
        kind = kind_of(tasks[key].kind)
        for v, log in logs.items():
            rows[v, key] = [_again(kind, log[i], mode) for i in (order or list(log))]
    results, paired = aggregate(tasks, rows, names, int(cfg.get("seed") or 0))
    if loracl.ROUTER in names:
        for t in tasks:
            results[loracl.ROUTER][t]["routed_vanilla"] = loracl.routed_vanilla(rows[loracl.ROUTER, t])
    run = dict(old.get("run") or {})
    run["config"] = {**(run.get("config") or {}), "metric_mode": mode}
    return old, {"results": results, "paired": paired, "mode": mode, "run": run}


def _again(kind: TaskKind, row: ScoredRow, mode: str) -> ScoredRow:
    """A row scored in `mode`; a choice (option scores) or persona match has no text to read again."""
    if row.scores is not None or kind.persona:
        return row
    n_options = len(LETTERS) if kind.options else 0
    extracted, correct = kind.score(row.output, row.gold, n_options, Scoring(mode))
    return replace(row, extracted=extracted, correct=correct)


def _order(ref: str, cfg: dict[str, Any], answered: set[str]) -> list[str] | None:
    """The ids in the order the eval aggregated them: its seeded subset when the logs hold all of it
    (`taia eval`), else the task's data order of the ids answered (a search's split); None without the
    data (then the file order stands, and bootstrap CIs may differ in their last digits)."""
    try:
        ec = EvalConfig.model_validate(cfg)
        root = data_root(ec.data_dir)
        chosen = [s.id for s in load_samples(ref, root, ec.limit_for(ref), ec.seed)]
        if set(chosen) == answered:
            return chosen
        return [s.id for s in load_samples(ref, root) if s.id in answered]
    except (TaiaError, ValidationError):
        return None


def _read_log(path: Path) -> dict[str, ScoredRow]:
    if not path.is_file():
        raise TaiaError(f"{path}: no stored answers to re-score (the eval is incomplete or was moved)")
    return {r.id: r for r in read_rows(path)}


def _eval_config(eval_dir: Path) -> dict[str, Any]:
    try:
        cfg = safe_yaml((eval_dir / CONFIG).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TaiaError(f"cannot read {eval_dir / CONFIG}: {e}") from None
    if not isinstance(cfg, dict):
        raise TaiaError(f"{eval_dir / CONFIG}: not a `taia eval` config")
    return cfg


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TaiaError(f"cannot read {path}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise TaiaError(f"{path} holds no 'results': not a `taia eval` results.json")
    return doc


def _tasks(results: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(t for by_task in results.values() for t in by_task))


def _rerender(dirs: list[Path]) -> list[Path]:
    """Re-render each report already there (report.md; report.html too where it is)."""
    from taia.run.render import write_report

    written: list[Path] = []
    for d in dict.fromkeys(dirs):
        if (d / "report.md").is_file():
            written += write_report(d, html=(d / "report.html").is_file()).values()
    return written
