"""`taia.run(cfg)`: train → inspect → evaluate → report, each stage cached by its resolved config.

    RUN/experiment.yaml   the resolved experiment
    RUN/train/            `taia train` output (skipped when the experiment gives an adapter / fine-tune)
    RUN/inspect.json      `taia inspect --json` of the fine-tune against the base (update norms per layer)
    RUN/eval/             `taia eval` output (per-sample JSONL, results.json)
    RUN/report.md, report.csv, report.json, report.html, plots/
    RUN/timings.jsonl     wall seconds of each stage of each invocation (a skipped stage takes ~0 s)

A finished train stage whose saved config equals the current one is not run again; an interrupted one
resumes from its last checkpoint; a changed one starts over and invalidates inspect and eval. Eval
answers only what is missing, so changing an eval key re-runs evaluation alone. Exercised by
`taia run EXPERIMENT.yaml` and tests/test_run.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from taia.check import check_inputs
from taia.config import load_mapping
from taia.errors import TaiaError
from taia.eval.variants import resolve_specs
from taia.io import lock, memory, stage
from taia.io.timings import LOG, timed
from taia.run.experiment import ExperimentConfig

EXPERIMENT = "experiment.yaml"
INSPECT = "inspect.json"


@lock.holding
def run(cfg: ExperimentConfig) -> dict[str, Any]:
    """Run (or finish) the experiment; returns the report's paths and the eval results."""
    from taia.eval import evaluate
    from taia.run.render import write_report

    out = cfg.run_dir
    check_task_files(cfg)
    if cfg.train is None:  # a given fine-tune is checked before the run dir is made (as `taia eval` would)
        ec = cfg.eval_config()
        check_inputs(cfg.model, ec.adapter, ec.finetuned, list(resolve_specs(ec.variants).values()),
                     **ec.load_options())  # fmt: skip
    check_run_dir(cfg)
    stage.prepare(out, EXPERIMENT, cfg)  # a run dir always continues: each stage decides for itself
    memory.map_large_allocations()  # what each stage frees leaves the RSS (io/memory.py)
    with timed(out / LOG, stage="train"):
        retrained = train_stage(cfg)
    memory.release()  # the trainer's model and optimizer, before eval loads its own
    if retrained:
        (out / INSPECT).unlink(missing_ok=True)  # both measured the previous fine-tune
        shutil.rmtree(out / "eval", ignore_errors=True)
    with timed(out / LOG, stage="inspect"):
        inspect_stage(cfg)
    print(f"taia run: evaluating into {out / 'eval'}")
    with timed(out / LOG, stage="eval"):
        results = evaluate(_fresh_if_changed(cfg))
    paths = write_report(out, html=cfg.report_html)
    print(f"taia run: report in {paths['md']}")
    return {"report": {k: str(p) for k, p in paths.items()}, "results": results["results"]}


def check_run_dir(cfg: ExperimentConfig) -> None:
    """Before anything is written: a run replaces only what a run wrote (each stage dir's own config
    file says so), and no stage dir it may replace is, holds or lies inside an input."""
    from taia.eval.runner import CONFIG as EVAL_CONFIG
    from taia.train.trainer import CONFIG as TRAIN_CONFIG

    out, tc, ec = cfg.run_dir, cfg.train_config(), cfg.eval_config()
    stage.check_apart(out, {"model": cfg.model})
    own = [(out, EXPERIMENT, "a taia run dir"), (out / "eval", EVAL_CONFIG, "a run's eval stage")]
    if tc is not None:
        stage.check_apart(out / "train", {"model": tc.model, "data": [d.path for d in tc.data]})
        own.append((out / "train", TRAIN_CONFIG, "a run's train stage"))
    stage.check_apart(out / "eval", {"model": ec.model, "adapter": ec.adapter, "finetuned": ec.finetuned})
    for folder, config, what in own:
        if stage.holds_anything(folder) and not (folder / config).is_file():
            raise TaiaError(
                f"{folder} is not {what} ({config} missing); taia run replaces only what a run wrote: "
                "move it away or use another out"
            )


def check_task_files(cfg: ExperimentConfig) -> None:
    """Load the rows of the experiment's own task files now: a bad row fails before training, not after."""
    from taia.eval.tasks import load_samples
    from taia.eval.tasks.custom import is_task_file
    from taia.io.rows import data_root

    ec = cfg.eval_config()
    for ref in (t for t in ec.tasks if ec.harness == "taia" and is_task_file(t)):
        load_samples(ref, data_root(ec.data_dir))  # every row, not just the sampled ones


def train_stage(cfg: ExperimentConfig) -> bool:
    """Train unless an identical finished run is there; True when new weights were written."""
    from taia.train import train
    from taia.train.trainer import CONFIG, RESULT

    tc = cfg.train_config()
    if tc is None:
        return False
    out = Path(tc.out)
    saved = load_mapping(out / CONFIG, "saved train config") if (out / CONFIG).is_file() else None
    same = saved is not None and {**saved, "resume": False, "overwrite": False} == tc.model_dump(mode="json")
    if same and (out / RESULT).is_file():
        print(f"taia run: {out} is trained with this config; skipping training")
        return False
    resume = same and (out / "checkpoints").is_dir()
    print(f"taia run: {'resuming' if resume else 'training'} into {out}")
    train(tc.model_copy(update={"resume": resume, "overwrite": not resume}))
    return True


def inspect_stage(cfg: ExperimentConfig) -> None:
    """Per-layer update norms of the fine-tune, for the report's heatmap (computed once per fine-tune)."""
    from taia.config import InspectConfig
    from taia.inspect import inspect

    path = cfg.run_dir / INSPECT
    adapter, finetuned = cfg.fine_tune()
    if path.is_file():
        return
    load = cfg.eval_config().load_options()  # the eval section's pickle rule and remote-code choice
    result = inspect(InspectConfig(base=cfg.model, adapter=adapter, finetuned=finetuned, **load))
    path.write_text(json.dumps(result, indent=2) + "\n")


def _fresh_if_changed(cfg: ExperimentConfig) -> Any:
    """The eval config; an eval dir holding answers for another identity is cleared rather than refused."""
    from taia.eval.runner import CONFIG

    ec = cfg.eval_config()
    saved = Path(ec.out) / CONFIG
    if saved.is_file():
        old = load_mapping(saved, "saved eval config")
        if any(old.get(k) != v for k, v in ec.identity().items()):
            return ec.model_copy(update={"overwrite": True})
    return ec
