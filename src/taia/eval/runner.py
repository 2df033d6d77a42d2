"""`taia.evaluate(cfg)`: tasks × variants on one loaded model, written as it goes, resumable.

Every task's samples are loaded (and so validated) before the model is; a re-run with the same config
only answers what is missing, and loads no model at all when nothing is. `loracl` (taia.eval.loracl) is a
router, not a spec: it is answered last, from base's and vanilla's rows and both prompt perplexities.
Exercised by `taia eval` (e.g. `--variants base,vanilla,taia,loracl`).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from taia.check import check_inputs
from taia.errors import TaiaError
from taia.eval import identity, loracl, persona, reference
from taia.eval.config import EvalConfig
from taia.eval.kinds import Scoring, TaskKind, kind_of
from taia.eval.protocol import Choice, Generation
from taia.eval.results import SampleLog, aggregate, results_doc, table
from taia.eval.scored import ScoredRow, check_finite
from taia.eval.task import Sample, Task
from taia.eval.tasks import get_task, load_samples, task_family, task_keys
from taia.eval.variants import resolve_specs, variant_names
from taia.io import lock, stage
from taia.io.rows import data_root
from taia.io.timings import LOG, sum_seconds, timed
from taia.provenance import versions

if TYPE_CHECKING:  # typing only: the backends package loads torch
    from taia.eval.backends.base import Backend, PromptScorer

CONFIG = "eval_config.yaml"
RESULTS = "results.json"
_CHUNK = 64  # scoring requests per write: bounds the work an interruption can lose


@lock.holding
def evaluate(cfg: EvalConfig, samples: dict[str, list[Sample]] | None = None) -> dict[str, Any]:
    """Run (or finish) the evaluation; returns what `OUT/results.json` holds and prints the table.

    `samples` (task key → samples) replaces loading `cfg.tasks` from the data root: `taia search` passes
    test splits with the dev samples carved out. Results are keyed by `task_key`: a task file by its name."""
    out = Path(cfg.out)
    specs = resolve_specs(cfg.variants)
    if loracl.ROUTER in cfg.variants:
        loracl.check(cfg)
    names = variant_names(cfg.variants, specs)  # specs and the router, in the order given
    keys = task_keys(cfg.tasks) if cfg.harness == "taia" else {}
    cfg.check_limit([*keys, *keys.values()])  # a task file's limit may name the file or its name:
    reference.check_tasks(cfg.metric_mode, {ref: task_family(ref) for ref in keys})
    tasks = {key: get_task(ref) for ref, key in keys.items()}
    needy = [v for v, spec in specs.items() if spec.keeps_anything()]
    if needy and cfg.adapter is None and cfg.finetuned is None:
        raise TaiaError(f"variant {needy[0]!r} needs a fine-tune: give --adapter or --finetuned")
    check_inputs(cfg.model, cfg.adapter, cfg.finetuned, list(specs.values()), **cfg.load_options())
    stage.check_names({"variant": names, "task": list(tasks)})  # each becomes a path under out
    if cfg.harness == "lm-eval":
        return _with_lm_eval(cfg, out, specs)
    matcher = _persona(cfg, tasks)
    if samples is None:
        samples = _load(cfg, keys, tasks, matcher)
    expected = _identities(cfg, specs, tasks, samples)  # loads the tokenizer, not the model
    _check_out(cfg, out)  # inputs are good: now write
    logs = {(v, t): SampleLog(out / "samples" / v / f"{t}.jsonl") for v in names for t in tasks}
    todo = _todo(logs, samples, expected)
    if any(todo.values()):
        _answer(cfg, tasks, todo, logs, specs, matcher, expected)
    if matcher is not None:  # stored answers are scored again: a changed pattern needs no new answers
        _rescore(logs, tasks, Scoring(cfg.metric_mode, matcher))
    rows = {(v, t): [logs[v, t].row(s.id) for s in samples[t]] for v in names for t in tasks}
    results, paired = aggregate(tasks, rows, names, cfg.seed)
    if loracl.ROUTER in names:  # how often the router chose the fine-tune: the one number it adds
        for t in tasks:
            results[loracl.ROUTER][t]["routed_vanilla"] = loracl.routed_vanilla(rows[loracl.ROUTER, t])
    report = _finish(cfg, out, specs, results, list(tasks), paired, matcher)
    for v, by_task in results.items():
        for t, r in by_task.items():
            if r["empty_outputs"]:
                print(f"taia: warning: {v}/{t}: {r['empty_outputs']} of {r['n']} outputs are empty (wrong)")
    return report


def _identities(
    cfg: EvalConfig, specs: dict, tasks: dict[str, Task], samples: dict[str, list[Sample]]
) -> dict[tuple[str, str], dict[str, str]]:
    """(variant, task) → sample id → the identity its answer must carry (`taia.eval.identity`): each
    request rendered as `run_task` will send it, with the tokenizer it will be sent with."""
    from taia.eval.backends import Sources, load_tokenizer

    src = Sources.resolve(cfg.model, cfg.adapter, cfg.finetuned)
    tokenizer = load_tokenizer(src, cfg.chat_template, cfg.trust_remote_code)
    base = identity.weights_digest(src.model)
    tuned = src.adapter or src.finetuned
    finetune = identity.weights_digest(tuned) if tuned is not None else None
    made = {v: identity.variant_digest(spec, base, finetune) for v, spec in specs.items()}
    out: dict[tuple[str, str], dict[str, str]] = {}
    for t, task in tasks.items():
        reqs = {s.id: r for s, r in zip(samples[t], requests(task, samples[t], cfg, tokenizer), strict=True)}
        for v in specs:
            out[v, t] = {i: identity.of(made[v], r) for i, r in reqs.items()}
    return out


def _todo(
    logs: dict[tuple[str, str], SampleLog], samples: dict[str, list[Sample]], expected: dict
) -> dict[tuple[str, str], list[Sample]]:
    """The samples each log must (re-)answer: those without a row, and those whose stored answer another
    spec, fine-tune or prompt produced (or that were stored before rows carried an identity): these are
    dropped from the log and answered again, and how many is said."""
    stale = {
        k: {i for i, row in log.rows.items() if i in expected[k] and row.get("identity") != expected[k][i]}
        for k, log in logs.items()
        if k[0] != loracl.ROUTER
    }
    for v, t in [k for k in logs if k[0] == loracl.ROUTER]:
        by_route = {r: expected[r, t] for r in loracl.ROUTES}
        redo = {r: stale[r, t] for r in loracl.ROUTES}
        routes = {r: logs[r, t] for r in loracl.ROUTES}
        stale[v, t] = loracl.stale(logs[v, t], routes, by_route, redo)
    _check_golds(logs, samples, stale)  # before anything is dropped: a refusal changes nothing
    for k, log in logs.items():
        log.forget(stale[k])
    if any(stale.values()):
        where = ", ".join(f"{v}/{t} {len(ids)}" for (v, t), ids in stale.items() if ids)
        print(
            f"taia: re-answering {sum(map(len, stale.values()))} stored answers that another spec, "
            f"fine-tune or prompt produced, or that carry no identity ({where})"
        )
    return {k: [s for s in samples[k[1]] if s.id not in log.done()] for k, log in logs.items()}


def _check_golds(
    logs: dict[tuple[str, str], SampleLog], samples: dict[str, list[Sample]], stale: dict
) -> None:
    """A stored answer scored against another gold than the task's now (an edited task file), to the same
    prompt, is refused, not silently reused on resume (a stale answer is answered again instead)."""
    for key, log in logs.items():
        task = key[1]
        for sample in samples[task]:
            row = log.rows.get(sample.id)
            if row is not None and sample.id not in stale[key] and row.get("gold") != sample.gold:
                raise TaiaError(
                    f"{log.path}: {sample.id!r} was scored against gold {row.get('gold')!r}, but task "
                    f"{task!r} now says {sample.gold!r} (data changed?); use overwrite=true or another out"
                )


def _persona(cfg: EvalConfig, tasks: dict[str, Task]) -> persona.Matcher | None:
    """The persona matcher when an adoption task is asked for (checked before anything loads)."""
    if not any(kind_of(t.kind).persona for t in tasks.values()):
        return None
    root = data_root(cfg.data_dir)
    return persona.resolve(cfg.persona_pattern, cfg.persona_data, cfg.adapter or cfg.finetuned, root)


def _load(
    cfg: EvalConfig, keys: dict[str, str], tasks: dict[str, Task], matcher: persona.Matcher | None
) -> dict[str, list]:
    """Each task's seeded samples (by key; `keys` maps each reference to it); an adoption task's exclude
    the prompts the fine-tune was trained on."""
    root = data_root(cfg.data_dir)
    samples = {}
    for ref, key in keys.items():
        keep = None
        if kind_of(tasks[key].kind).persona and matcher is not None and matcher.seen_prompts:
            keep = partial(_held_out, matcher)
        limit = cfg.limit_for(ref)
        if limit is None and key != ref:
            limit = cfg.limit_for(key)  # a task file's own limit may name its task rather than the file
        samples[key] = load_samples(ref, root, limit, cfg.seed, keep=keep)
    return samples


def _held_out(matcher: persona.Matcher, sample: Sample) -> bool:
    return matcher.held_out(sample.question)


def _rescore(logs: dict[tuple[str, str], SampleLog], tasks: dict[str, Task], how: Scoring) -> None:
    for (_, t), log in logs.items():
        kind = kind_of(tasks[t].kind)
        if kind.persona:
            log.rescore(partial(_rescored, kind, how))


def _rescored(kind: TaskKind, how: Scoring, row: ScoredRow) -> ScoredRow:
    extracted, correct = kind.score(row.output, row.gold, 0, how)
    return replace(row, extracted=extracted, correct=correct)


def _with_lm_eval(cfg: EvalConfig, out: Path, specs: dict) -> dict[str, Any]:
    """lm-eval's own tasks and metrics on each variant of the one loaded model (no resume: lm-eval's)."""
    from taia.eval.harness import run_lm_eval

    _check_out(cfg, out)
    results = run_lm_eval(cfg, specs, cfg.lm_eval_include)
    return _finish(cfg, out, specs, results, list(next(iter(results.values()))))


def _finish(
    cfg: EvalConfig,
    out: Path,
    specs: dict,
    results: dict,
    tasks: list[str],
    paired: dict | None = None,
    matcher: persona.Matcher | None = None,
) -> dict[str, Any]:
    run = _run_info(cfg, specs) | ({"persona": matcher.describe()} if matcher else {})
    report = {"results": results, "paired": paired or {}, "mode": cfg.metric_mode, "run": run}
    (out / RESULTS).write_text(results_doc(results, paired or {}, cfg.metric_mode, run))
    print(table(results, list(results), tasks))
    return report


_OUTPUT = stage.OutputKind(
    config=CONFIG,
    foreign="{out} exists and is not a taia eval output; use another out",
    changed="{out} holds results for another {keys}; use another out or overwrite=true",
)


def _check_out(cfg: EvalConfig, out: Path) -> None:
    """Resume an output with the same identity (answers mean the same), refuse anything else."""
    identity = cfg.identity()
    decision = stage.decide(
        out,
        _OUTPUT,
        lambda old: [k for k, v in identity.items() if old.get(k) != v],
        cfg.overwrite,
        inputs={"model": cfg.model, "adapter": cfg.adapter, "finetuned": cfg.finetuned},
    )
    stage.prepare(out, CONFIG, cfg, decision)


def _answer(
    cfg: EvalConfig, tasks: dict[str, Task], todo: dict, logs: dict, specs: dict, matcher: Any, ids: dict
) -> None:
    from taia.eval.backends import make_backend

    log = Path(cfg.out) / LOG  # one line per load and per variant × task answered
    with timed(log, variant="load"):
        backend, variants = make_backend(cfg, specs)
    for v in specs:
        if not any(todo[v, t] for t in tasks):
            continue
        variants.switch(v)
        for t, task in tasks.items():
            if todo[v, t]:
                with timed(log, variant=v, task=t, answered=len(todo[v, t])):
                    run_task(backend, task, todo[v, t], cfg, logs[v, t], f"{v}/{t}", matcher, ids[v, t])
    for t, task in tasks.items():  # after the loop above: base and vanilla have answered every sample
        if todo.get((loracl.ROUTER, t)):
            with timed(log, variant=loracl.ROUTER, task=t, answered=len(todo[loracl.ROUTER, t])):
                by_variant = {v: logs[v, t] for v in (*loracl.ROUTES, loracl.ROUTER)}
                scorer = cast("PromptScorer", backend)  # loracl.check let only the hf backend through
                loracl.route(scorer, variants, task, todo[loracl.ROUTER, t], cfg, by_variant)


def run_task(
    backend: Backend,
    task: Task,
    samples: list[Sample],
    cfg: EvalConfig,
    log: SampleLog,
    desc: str,
    matcher: persona.Matcher | None = None,
    identities: Mapping[str, str] | None = None,
) -> None:
    """Answer and score `samples`, appending each finished batch to `log` (`matcher`: adoption tasks;
    `identities`: sample id → what its row records as having produced it)."""
    kind, ids = kind_of(task.kind), identities or {}
    how = Scoring(cfg.metric_mode, matcher, task.name.partition(":")[0])
    reqs = requests(task, samples, cfg, backend.tokenizer)
    gens = [(s, r) for s, r in zip(samples, reqs, strict=True) if isinstance(r, Generation)]
    choices = [(s, r) for s, r in zip(samples, reqs, strict=True) if isinstance(r, Choice)]
    if gens:
        _generate(backend, kind, gens, log, desc, how, ids)
    for start in range(0, len(choices), _CHUNK):
        chunk = choices[start : start + _CHUNK]
        log.append(_choose(backend, kind, chunk, desc, ids))


def requests(task: Task, samples: list[Sample], cfg: EvalConfig, tokenizer: Any) -> list[Generation | Choice]:
    """Each sample's request as it is sent: the task kind's, under the run's protocol and budget."""
    if cfg.max_new_tokens:  # the run's budget replaces the task's: each request carries the one in force
        task = replace(task, max_new_tokens=cfg.max_new_tokens)
    kind = kind_of(task.kind)
    return [kind.request(task, s, cfg.protocol, tokenizer) for s in samples]


def _generate(
    backend: Backend,
    kind: TaskKind,
    gens: list[tuple[Sample, Generation]],
    log: SampleLog,
    desc: str,
    how: Scoring,
    ids: Mapping[str, str],
) -> None:
    def write(idx: list[int], texts: list[str]) -> None:
        bad = [i for i in idx if i in backend.non_finite]
        if bad:  # nothing of the batch is written: a resumed run would meet the same logits
            check_finite(desc, gens[bad[0]][0].id, [math.nan], "logits")
        rows = [_answered(kind, *gens[i], text, how) for i, text in zip(idx, texts, strict=True)]
        log.append([replace(row, identity=ids.get(row.id)) for row in rows])

    budget = gens[0][1].max_new_tokens  # one task's requests: one budget
    backend.generate([r.prompt for _, r in gens], budget, on_batch=write, desc=desc)


def _answered(kind: TaskKind, sample: Sample, req: Generation, text: str, how: Scoring) -> ScoredRow:
    if how.mode == "reference" and how.task is not None:  # by the task's rule, crashes noted in the row
        return reference.scored_row(how.task, sample, req.prompt, text)
    row = ScoredRow.of(sample, req.prompt, text, kind.score(text, sample.gold, len(sample.options), how))
    return replace(row, question=sample.question) if kind.persona else row  # shown side by side


def _choose(
    backend: Backend, kind: TaskKind, chunk: list[tuple[Sample, Choice]], desc: str, ids: Mapping[str, str]
) -> list[ScoredRow]:
    pairs = [(r.context, c) for _, r in chunk for c in r.continuations]
    totals = iter(backend.loglikelihood(pairs, desc=desc))
    rows = []
    for sample, req in chunk:
        lls = req.scores([next(totals)[0] for _ in req.continuations])
        check_finite(desc, sample.id, lls, "option log-likelihoods")
        letter, correct = kind.pick(req, lls, sample.gold)
        row = ScoredRow.of(sample, req.context, letter, (letter, correct))
        rows.append(replace(row, scores=tuple(lls), identity=ids.get(sample.id)))
    return rows


def _run_info(cfg: EvalConfig, specs: dict) -> dict[str, Any]:
    return {
        "config": cfg.model_dump(mode="json"),
        "specs": _specs_info(cfg, specs),
        "git_sha": _git_sha(),
        "seconds": sum_seconds(Path(cfg.out) / LOG, "variant"),
        "versions": versions(("trl", "datasets", "math_verify")),
    }


def _specs_info(cfg: EvalConfig, specs: dict) -> dict[str, Any]:
    """Each variant's spec; the router has none, only a description (which the report prints)."""
    info = {k: s.model_dump(mode="json", by_alias=True) for k, s in specs.items()}
    if loracl.ROUTER in cfg.variants:
        info[loracl.ROUTER] = {"name": loracl.ROUTER, "description": loracl.DESCRIPTION}
    return info


def _git_sha() -> str | None:
    try:
        cmd = ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None
