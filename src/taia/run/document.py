"""The report's content as document blocks, rendered to Markdown and to one static HTML page.

`blocks(data, plots)` builds the sections once (scores with CIs, Δ vs base and vanilla, samples,
training, plots, run facts); `render_markdown` and `render_html` only format them. Exercised by
`taia report RUN_DIR` and tests/test_report.py.
"""

from __future__ import annotations

from typing import Any

from taia.eval.metrics import lower_is_better, metric
from taia.eval.results import REFERENCES
from taia.run.evidence import margin_rows, side_by_side
from taia.run.markup import Block, Bullets, Heading, Image, Para, Quoted, Table, html, markdown
from taia.run.rundata import (
    PROPORTIONS,
    RunData,
    best_variants,
    delta,
    finite,
    mean_row,
    paired_ci,
    paired_test,
    shown,
    shown_ci,
    shown_test,
    training_summary,
)

# ------------------------------------------------------------------------------------- document blocks


def blocks(data: RunData, plots: dict[str, str]) -> list[Block]:
    """The report's content, once, for both renderers."""
    return [
        *_title(data),
        *_scores_section(data),
        *_delta_section(data),
        *_test_section(data),
        *_margin_section(data),
        *_answers_section(data),
        *_samples_section(data),
        *_training_section(data),
        *_plots_section(plots),
        *_run_section(data),
    ]


def _title(data: RunData) -> list[Block]:
    cfg = data.config
    tuned = cfg.get("adapter") or cfg.get("finetuned")
    title = f"TAIA report: {cfg.get('model') or data.run_dir.name}" + (f" + {tuned}" if tuned else "")
    facts = [
        f"{k.replace('_', ' ')} `{cfg[k]}`" for k in ("protocol", "metric_mode", "harness") if cfg.get(k)
    ]
    if "limit" in cfg:
        facts.append(f"limit {cfg['limit']}" if cfg["limit"] else "no limit (full test sets)")
    facts.append(f"variants {', '.join(data.variants)}")
    return [Heading(title, 1), Para(" · ".join(facts))]


def _task_label(data: RunData, task: str) -> str:
    name = data.metric(task)
    if metric(name).short:
        return f"{_cell(task)} ({metric(name).short})" + ("†" if lower_is_better(name) else "")
    return _cell(task) + ("" if name in PROPORTIONS else f" ({_cell(name)})")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _scores_section(data: RunData) -> list[Block]:
    rows = [[_task_label(data, t), *(_score_cell(data, v, t) for v in data.variants)] for t in data.tasks]
    mean = mean_row(data)
    if mean["tasks"]:
        rows.append(["mean‡", *(_bold(shown(mean["score"][v]), v in mean["best"]) for v in data.variants)])
    notes = ["Scores in percent with their 95 % confidence interval [lo, hi]; the best per task in **bold**."]
    if any(lower_is_better(data.metric(t)) for t in data.tasks):
        notes.append(
            "† attack success rate, persona adoption rate (or another lower-is-better metric): lower is "
            "better, so the lowest is in bold."
        )
    if mean["tasks"]:
        tasks = ", ".join(mean["tasks"])
        notes.append(f"‡ mean over the accuracy tasks only ({tasks}); lower-is-better rates never count.")
    return [Heading("Scores"), Table(["task", *data.variants], rows), *(Para(n) for n in notes)]


def _score_cell(data: RunData, variant: str, task: str) -> str:
    entry = data.entry(variant, task)
    if entry is None:
        return "–"
    text = shown_ci(finite(entry.get("score")), entry.get("ci95"), str(entry.get("metric", "accuracy")))
    return _bold(text, variant in best_variants(data, task))


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold and text != "–" else text


def _delta_columns(data: RunData) -> list[tuple[str, str]]:
    return [(v, r) for r in REFERENCES if r in data.results for v in data.variants if v not in ("base", r)]


def _delta_section(data: RunData) -> list[Block]:
    columns = _delta_columns(data)
    if not columns:
        return []
    rows = [
        [
            _task_label(data, t),
            *(_delta_cell(data, v, t, r) for v, r in columns),
        ]
        for t in data.tasks
    ]
    mean = mean_row(data)
    if mean["tasks"]:
        rows.append(["mean‡", *(shown(mean[f"delta_vs_{r}"].get(v), signed=True) for v, r in columns)])
    note = (
        "Δ in percentage points of the unrounded scores "
        "(it can differ by 0.1 from the difference of the rounded ones)."
    )
    if data.paired:
        note += (
            " [lo, hi]: 95 % bootstrap CI of the paired per-question differences (every variant answers the "
            "same questions), so a Δ whose interval excludes 0 is a real difference on this sample."
        )
    return [
        Heading("Δ vs base and vanilla"),
        Table(["task", *(f"{v} − {r}" for v, r in columns)], rows),
        Para(note),
    ]


def _delta_cell(data: RunData, variant: str, task: str, reference: str) -> str:
    ci = paired_ci(data, variant, task, reference)
    return shown_ci(delta(data, variant, task, reference), ci, data.metric(task), signed=True)


def _test_section(data: RunData) -> list[Block]:
    """The exact McNemar test of each paired Δ (results.json written before it have none: no section)."""
    columns = _delta_columns(data)
    tests = {(v, r, t): paired_test(data, v, t, r) for v, r in columns for t in data.tasks}
    if not any(tests.values()):
        return []
    rows = [[_task_label(data, t), *(shown_test(tests[v, r, t]) for v, r in columns)] for t in data.tasks]
    note = (
        "Exact McNemar p-value (two-sided binomial test on the discordant questions, those only one of the "
        "two variants got right; pooled over subsets): + counts the questions only the first variant got "
        "right (for ASR and adoption: complied with, adopted), − those only the second did."
    )
    header = ["task", *(f"{v} − {r}" for v, r in columns)]
    return [Heading("Paired significance (McNemar)"), Table(header, rows), Para(note)]


def _margin_section(data: RunData) -> list[Block]:
    rows = margin_rows(data)
    if not rows:
        return []

    def ci(value: Any, interval: Any) -> str:
        return shown_ci(value, interval, "gold_margin", signed=True)

    table = [
        [_cell(r["task"]), _cell(r["variant"]), ci(r["mean"], r["ci95"]),
         *(ci(r[f"delta_vs_{x}"], r[f"delta_vs_{x}_ci95"]) for x in REFERENCES)]
        for r in rows
    ]  # fmt: skip
    note = (
        "Per question: the gold option's log-likelihood minus the best other option's, as scored "
        "(length-normalised in the cloze protocol); > 0 where the choice is right. Its paired Δ [95 % CI] "
        "resolves differences that accuracy cannot at a few hundred questions."
    )
    header = ["task", "variant", "margin", "Δ vs base", "Δ vs vanilla"]
    return [Heading("Gold-option margin"), Table(header, table, "llrrr"), Para(note)]


def _answers_section(data: RunData) -> list[Block]:
    out: list[Block] = []
    for task in data.tasks:
        if data.metric(task) != "adoption_rate" or (example := side_by_side(data, task)) is None:
            continue
        question = " ".join(str(example["question"]).split())
        out += [
            Heading(f"One held-out prompt, every variant ({task})"),
            Para(f"`{example['id']}`: ", Quoted(question)),
            Table(["variant", "answer"], [[v, Quoted(a)] for v, a in example["answers"].items()], "ll"),
        ]
    return out


def _samples_section(data: RunData) -> list[Block]:
    rows = []
    for task in data.tasks:
        entries = [e for v in data.variants if (e := data.entry(v, task))]
        ns = sorted({str(e.get("n", "?")) for e in entries})
        aggregate = entries[0].get("aggregate") or entries[0].get("filter") or ""
        rows.append([_cell(task), _cell(data.metric(task)), _cell(str(aggregate)), " / ".join(ns)])
    empty = [
        f"{v}/{t}: {e['empty_outputs']} of {e.get('n', '?')} outputs empty (scored wrong)"
        for t in data.tasks
        for v in data.variants
        if (e := data.entry(v, t)) and e.get("empty_outputs")
    ]
    out: list[Block] = [
        Heading("Samples"),
        Table(["task", "metric", "aggregate / filter", "n"], rows, "lllr"),
    ]
    return out + ([Para("Empty outputs:"), Bullets(empty)] if empty else [Para("No empty outputs.")])


def _training_section(data: RunData) -> list[Block]:
    summary = training_summary(data)
    if summary is None:
        return []
    labels = {
        "variant": "trained variant", "steps": "steps", "examples": "training examples",
        "final_loss": "final loss", "mean_loss": "mean training loss", "seconds": "time (s)",
        "tokens_per_second": "tokens/s",
    }  # fmt: skip
    items = [f"{labels[k]}: {_plain(v)}" for k, v in summary.items() if v is not None]
    return [Heading("Training"), Bullets(items)]


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _plots_section(plots: dict[str, str]) -> list[Block]:
    captions = {"scores": "Scores per task", "update_norms": "‖ΔW‖/‖W‖ per layer", "loss": "Training loss"}
    return [Heading("Plots"), *(Image(captions.get(k, k), p) for k, p in plots.items())] if plots else []


def _run_section(data: RunData) -> list[Block]:
    info, cfg = data.run_info, data.config
    keys = ("model", "adapter", "finetuned", "protocol", "metric_mode", "limit", "harness", "backend", "seed")
    items = [f"{k}: `{cfg[k]}`" for k in keys if cfg.get(k) is not None]
    items.append(f"git sha: `{info.get('git_sha') or 'unknown'}`")
    items += _wall_time(data)
    versions = info.get("versions") or {}
    if versions:
        items.append("versions: " + ", ".join(f"{k} `{v}`" for k, v in versions.items() if v))
    specs = info.get("specs") or {}
    items += [f"variant {name}: {_spec_text(spec)}" for name, spec in specs.items()]
    return [Heading("Run"), Bullets(items)]


def _wall_time(data: RunData) -> list[str]:
    """Stage times of `taia run` and eval time per variant, summed over resumed invocations."""
    out = []
    if data.stages:
        out.append("wall time: " + ", ".join(f"{k} {_duration(v)}" for k, v in data.stages.items()))
    per_variant = data.run_info.get("seconds") or {}
    if per_variant:
        out.append("eval time: " + ", ".join(f"{k} {_duration(v)}" for k, v in per_variant.items()))
    return out


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _spec_text(spec: Any) -> str:
    groups = spec.get("groups") if isinstance(spec, dict) else None
    if not isinstance(groups, dict) or not groups:
        return str((spec or {}).get("description") or "no updates kept") if isinstance(spec, dict) else "?"
    lams = (f"{g} λ={r.get('lambda') if isinstance(r, dict) else r}" for g, r in groups.items())
    return ", ".join(lams)


# ------------------------------------------------------------------------------------------ renderers


def render_markdown(data: RunData, plots: dict[str, str]) -> str:
    """The report as Markdown; plots linked by their paths relative to the run dir."""
    return markdown(blocks(data, plots))


def render_html(data: RunData, plots: dict[str, str]) -> str:
    """The report as one self-contained static page (title from the report's first heading)."""
    return html(blocks(data, plots), data.run_dir)
