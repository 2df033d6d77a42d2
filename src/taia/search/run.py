"""`taia.search(cfg)`: score every grid spec on a dev split, keep the best, test it on held-out tasks.

    taia search --base B (--adapter A | --finetuned F) --dev-task csqa --dev-limit 100 \\
        --test-tasks csqa,mmlu --out OUT

    OUT/search_config.yaml   the resolved config (a re-run with the same config resumes)
    OUT/specs/*.yaml         the distinct grid specs
    OUT/dev/                 `taia eval` of every spec on the dev split (one model load, switched in place)
    OUT/best_spec.yaml       the chosen spec, usable as `taia apply --spec OUT/best_spec.yaml`
    OUT/test/                `taia eval` of base / vanilla / TAIA / the chosen spec on the test split
    OUT/search.json, OUT/search.md, OUT/plots/dev_grid.png, OUT/test/report.md

Dev and test never share a sample: a test task that is the dev task (or another subset of it) gets the
samples the dev split did not take, and any test question equal to a dev question is refused.
Exercised by tests/test_search.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from taia.check import check_inputs
from taia.classify import ModelMap
from taia.config import changed_keys
from taia.errors import TaiaError
from taia.eval.metrics import lower_is_better
from taia.eval.reference import check_tasks
from taia.eval.task import Sample
from taia.eval.tasks import load_samples, task_family, task_key
from taia.eval.variants import resolve_specs
from taia.io import lock, stage
from taia.io.rows import data_root
from taia.lora import group_modules
from taia.molora import molora_numels
from taia.plan import module_tensor
from taia.search.config import SearchConfig
from taia.search.grid import candidates, distinct
from taia.spec import TaiaSpec

CONFIG = "search_config.yaml"
BEST = "best_spec.yaml"
_RUN_KEYS = ("overwrite",)


@lock.holding
def search(cfg: SearchConfig) -> dict[str, Any]:
    """Run (or finish) the search; returns what OUT/search.json holds."""
    from taia.eval.runner import evaluate
    from taia.search.summary import write_search_report

    out = Path(cfg.out)
    mm, changed, molora = changed_tensors(cfg)  # checks the inputs first, as every verb does
    dev, tests = split(cfg)
    check_tasks(cfg.metric_mode, {t: task_family(t) for t in [cfg.dev_task, *cfg.test_tasks]})
    specs, same = distinct(candidates(cfg.grid, mm.num_layers, molora), changed, mm)
    _prepare_out(cfg, out)
    paths = _write_specs(out / "specs", specs)
    dev_cfg = cfg.eval_config(str(out / "dev"), [cfg.dev_task], [str(p) for p in paths])
    dev_key = task_key(cfg.dev_task)  # a task file's results are keyed by its name
    dev_report = evaluate(dev_cfg, samples={dev_key: dev})
    best = choose(specs, dev_report["results"], dev_key)
    best_path = _write_best(out, best, dev_report["results"][best.name][dev_key])
    test_variants = [*cfg.test_variants, str(best_path)]
    test_cfg = cfg.eval_config(str(out / "test"), cfg.test_tasks, test_variants)
    test_report = evaluate(test_cfg, samples={task_key(t): s for t, s in tests.items()})
    same_as = twin(best, cfg.test_variants, changed, mm)
    return write_search_report(cfg, out, specs, same, dev_report, test_report, _best_name(best), same_as)


def split(cfg: SearchConfig) -> tuple[list[Sample], dict[str, list[Sample]]]:
    """The dev samples and each test task's samples, checked disjoint."""
    root = data_root(cfg.data_dir)
    dev = load_samples(cfg.dev_task, root, cfg.dev_limit, cfg.seed)
    dev_family = task_family(cfg.dev_task)
    dev_ids = frozenset(s.id for s in dev)
    tests = {
        t: load_samples(
            t, root, cfg.test_limit, cfg.seed, dev_ids if task_family(t) == dev_family else frozenset()
        )
        for t in cfg.test_tasks
    }
    check_disjoint(cfg.dev_task, dev, tests)
    return dev, tests


def check_disjoint(dev_task: str, dev: list[Sample], tests: dict[str, list[Sample]]) -> None:
    """Refuse a test sample whose question (and options) equal a dev sample's, whatever its task."""
    seen = {_content(s): s for s in dev}
    for task, samples in tests.items():
        clash = [s for s in samples if _content(s) in seen]
        if clash:
            example = seen[_content(clash[0])]
            raise TaiaError(
                f"dev and test overlap: {len(clash)} sample(s) of test task {task!r} repeat a question of "
                f"dev task {dev_task!r} (e.g. {task} {clash[0].id!r} = {dev_task} {example.id!r}); "
                "pick another dev task or test task"
            )


def _content(sample: Sample) -> tuple[str, tuple[str, ...]]:
    """What makes two samples the same question: whitespace- and case-insensitive text and options."""
    norm = " ".join(sample.question.split()).casefold()
    return norm, tuple(" ".join(o.split()).casefold() for o in sample.options)


def changed_tensors(cfg: SearchConfig) -> tuple[ModelMap, list[str], bool]:
    """The base's module map, the tensor names the fine-tune changes, and whether FFN is MoLoRA. An
    adapter changes its LoRA and MoLoRA modules, each named by the tensor it is decided by in the plan of
    `taia apply`."""
    # The inputs are checked (as by `taia eval`) before the search writes anything into its out dir.
    specs = list(resolve_specs(cfg.test_variants).values())
    inputs = check_inputs(cfg.base, cfg.adapter, cfg.finetuned, specs, **cfg.load_options())
    mm = inputs.mm
    if inputs.adapter_dir is None:
        return mm, list(mm.shapes), False
    molora = molora_numels(inputs.adapter_dir)
    modules = [*group_modules(inputs.adapter_tensors), *(molora or {})]
    return mm, [module_tensor(p) for p in modules], molora is not None


def choose(specs: list[TaiaSpec], results: dict[str, Any], task: str) -> TaiaSpec:
    """The spec with the best dev score; the first (most preferred) among equals."""
    sign = -1.0 if lower_is_better(results[specs[0].name][task]["metric"]) else 1.0
    return max(specs, key=lambda s: (sign * results[s.name][task]["score"], -specs.index(s)))


def _best_name(spec: TaiaSpec) -> str:
    return f"best-{spec.name}"


def _write_specs(folder: Path, specs: list[TaiaSpec]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in specs:
        path = folder / f"{spec.name}.yaml"
        path.write_text(spec_yaml(spec))
        paths.append(path)
    return paths


def spec_yaml(spec: TaiaSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json", by_alias=True), sort_keys=False, allow_unicode=True)


def twin(spec: TaiaSpec, variants: list[str], changed: list[str], mm: ModelMap) -> str | None:
    """The first of `variants` that is the same model as `spec` here (the choice may be plain vanilla)."""
    from taia.eval.loracl import ROUTER
    from taia.search.grid import signature
    from taia.spec import load_spec

    key = signature(spec, changed, mm)
    return next((v for v in variants if v != ROUTER and signature(load_spec(v), changed, mm) == key), None)


def _write_best(out: Path, spec: TaiaSpec, dev: dict[str, Any]) -> Path:
    lo, hi = dev["ci95"]
    note = (
        f"{spec.description}; dev {dev['metric']} {100 * dev['score']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    )
    best = spec.model_copy(update={"name": _best_name(spec), "description": note})
    path = out / BEST
    path.write_text(spec_yaml(best))
    return path


_OUTPUT = stage.OutputKind(
    config=CONFIG,
    foreign="{out} exists and is not a taia search output; use another out",
    changed="{out} holds another search (it differs in {keys}); use overwrite=true",
)


def _prepare_out(cfg: SearchConfig, out: Path) -> None:
    """A fresh out dir, or the same search's (resumed); anything else is refused before writing."""
    inputs = {"base": cfg.base, "adapter": cfg.adapter, "finetuned": cfg.finetuned}
    decision = stage.decide(
        out, _OUTPUT, lambda old: changed_keys(old, cfg, _RUN_KEYS), cfg.overwrite, inputs=inputs
    )
    stage.prepare(out, CONFIG, cfg, decision)
