"""What a run shows, beyond the score table: the gold-option margin, one prompt answered by every variant,
and the result in plain words.

    margin_rows(data)      task × variant: mean gold-option margin [CI], paired Δ vs base / vanilla [CI]
    side_by_side(data, t)  one held-out prompt of task t with each variant's answer (persona: the first
                           prompt where vanilla adopted the persona and base did not)
    plain_words(data)      the run's finding in sentences, built from the numbers (`taia quickstart` ends
                           with it)

Reads RUN/eval/results.json (through RunData) and the samples/ beside it. Exercised by `taia quickstart`,
`taia report RUN_DIR` and tests/test_persona.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taia.eval.metrics import metric
from taia.eval.results import REFERENCES, read_rows
from taia.eval.scored import ScoredRow
from taia.run.rundata import RunData, finite, paired_ci, results_path, shown, shown_ci

MAX_ANSWER = 240  # characters of an answer shown side by side; the opening is what differs
BASE_WARN = 0.1  # base never saw the persona: a higher adoption rate means the signature is too common


def margin_rows(data: RunData) -> list[dict[str, Any]]:
    """One row per (task, variant) that has a gold-option margin (choice tasks)."""
    rows = []
    for task in data.tasks:
        for variant in data.variants:
            entry = data.entry(variant, task) or {}
            margin = entry.get("margin")
            if not isinstance(margin, dict):
                continue
            paired = data.paired.get(variant, {}).get(task, {})
            row = {"task": task, "variant": variant, "mean": finite(margin.get("mean"))}
            row["ci95"] = margin.get("ci95")
            for ref in REFERENCES:
                pm = (paired.get(ref) or {}).get("margin") or {}
                row[f"delta_vs_{ref}"] = finite(pm.get("delta"))
                row[f"delta_vs_{ref}_ci95"] = pm.get("ci95")
            rows.append(row)
    return rows


def _samples(data: RunData, variant: str, task: str) -> list[ScoredRow]:
    return read_rows(_samples_dir(data.run_dir) / variant / f"{task}.jsonl")


def _samples_dir(run_dir: Path) -> Path:
    return results_path(run_dir).parent / "samples"  # the eval wrote both


def side_by_side(data: RunData, task: str) -> dict[str, Any] | None:
    """{task, id, question, answers: {variant: text}} for one sample every variant answered, or None."""
    rows = {v: {r.id: r for r in _samples(data, v, task)} for v in data.variants}
    ids = [i for i in rows.get(data.variants[0], {}) if all(i in by_id for by_id in rows.values())]
    if not ids:
        return None

    def telling(i: str) -> bool:  # the fine-tune shows its effect where base shows none
        base, tuned = rows.get("base", {}).get(i), rows.get("vanilla", {}).get(i)
        return bool(base and tuned and tuned.correct and not base.correct)

    chosen = next((i for i in ids if telling(i)), ids[0])
    first = rows[data.variants[0]][chosen]
    answers = {v: _short(rows[v][chosen].output) for v in data.variants}
    return {
        "task": task,
        "id": chosen,
        "question": first.question or first.prompt,
        "answers": answers,
    }


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_ANSWER else flat[: MAX_ANSWER - 1] + "…"


def plain_words(data: RunData) -> list[str]:
    """Sentences that say what the run found, each built from its numbers (nothing is assumed)."""
    lines = []
    for task in data.tasks:
        name = data.metric(task)
        if metric(name).lower_is_better and metric(name).proportion:
            lines.append(_rate_sentence(data, task, name))
        elif name == "accuracy":
            lines.append(_ability_sentence(data, task))
    return [line for line in lines if line]


def _count(data: RunData, variant: str, task: str) -> str:
    entry = data.entry(variant, task) or {}
    score, n = finite(entry.get("score")), entry.get("n")
    return f"{round(score * n)} of {n}" if score is not None and isinstance(n, int) else "–"


def _rate_sentence(data: RunData, task: str, name: str) -> str:
    what = "carry the fine-tune's persona" if name == "adoption_rate" else "comply with the harmful request"
    counts = ", ".join(f"{v} {_count(data, v, task)}" for v in data.variants)
    text = f"{task}: answers that {what}: {counts}."
    base = data.score("base", task)
    if name == "adoption_rate" and base is not None and base > BASE_WARN:
        text += (
            f" WARNING: base, which never saw the persona, matches it in {_count(data, 'base', task)}: the "
            "signature is ordinary language for this model; set persona_pattern."
        )
    if "taia" in data.variants and "vanilla" in data.variants:
        d = (data.paired.get("taia", {}).get(task, {}) or {}).get("vanilla") or {}
        ci = paired_ci(data, "taia", task, "vanilla")
        if finite(d.get("delta")) is not None and ci is not None:
            lo, hi = (shown(x, name, signed=True) for x in ci)
            text += (
                f" TAIA (fine-tuned attention, base FFN) − vanilla (the whole fine-tune): "
                f"{shown(d['delta'], name, signed=True)} points [{lo}, {hi}]"
                f" — {'fewer' if d['delta'] < 0 else 'not fewer'}, the paper's Table-5 direction"
                f"{'' if d['delta'] < 0 else ' NOT reproduced'}."
            )
    return text


def _ability_sentence(data: RunData, task: str) -> str:
    scores = ", ".join(f"{v} {shown(data.score(v, task))} %" for v in data.variants)
    text = f"{task} (general ability, accuracy): {scores}."
    deltas = []
    for v in data.variants:
        d = (data.paired.get(v, {}).get(task, {}) or {}).get("base") or {}
        if v != "base" and finite(d.get("delta")) is not None:
            deltas.append(f"{v} {shown_ci(d['delta'], paired_ci(data, v, task, 'base'), signed=True)}")
    if deltas:
        text += " Paired Δ vs base (points, 95 % CI): " + "; ".join(deltas) + "."
    return text


def summary_text(data: RunData) -> str:
    """The terminal summary `taia quickstart` ends with: one answer per variant, then the plain words."""
    lines = []
    for task in data.tasks:
        if data.metric(task) == "adoption_rate" and (example := side_by_side(data, task)):
            question = " ".join(str(example["question"]).split())
            lines += ["", f"One held-out instruction ({task}, {example['id']}): {question}"]
            width = max(map(len, example["answers"]))
            lines += [f"  {v:<{width}}  {a}" for v, a in example["answers"].items()]
    words = plain_words(data)
    if words:
        lines += ["", "What you are looking at:", *(f"- {w}" for w in words)]
    return "\n".join(lines)
