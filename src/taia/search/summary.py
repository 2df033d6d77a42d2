"""What `taia search` writes at the end: search.json (every candidate's dev score, the choice, the test
results), search.md (the same for people) and plots/dev_grid.png (dev score over λ_attn × λ_ffn), plus
the test eval's own report (OUT/test/report.md). Pure rendering of results already on disk.

Exercised by `taia search ... --out OUT` and tests/test_search.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from taia.eval.metrics import lower_is_better
from taia.eval.results import REFERENCES
from taia.eval.tasks import task_key
from taia.run.render import write_report
from taia.run.rundata import shown, shown_ci, shown_test
from taia.search.config import SearchConfig
from taia.spec import TaiaSpec

TOP = 10  # dev table rows in search.md (search.json has all)


def write_search_report(
    cfg: SearchConfig,
    out: Path,
    specs: list[TaiaSpec],
    same: dict[str, str],
    dev: dict[str, Any],
    test: dict[str, Any],
    best: str,
    same_as: str | None = None,
) -> dict[str, Any]:
    """Write search.json, search.md, plots/dev_grid.png and OUT/test's report; return search.json."""
    dev_key = task_key(cfg.dev_task)  # results key a task file by its name
    rows = [_candidate(s, dev["results"][s.name][dev_key], same) for s in specs]
    result = {
        "dev_task": cfg.dev_task,
        "dev_n": rows[0]["n"],
        "candidates": rows,
        "equivalent": same,
        "best": best,
        "best_spec": str(out / "best_spec.yaml"),
        "best_same_as": same_as,  # a test variant that is the same model as the choice, if any
        "test": {"results": test["results"], "paired": test["paired"]},
    }
    (out / "search.json").write_text(json.dumps(result, indent=2) + "\n")
    plot = dev_grid_plot(rows, out / "plots" / "dev_grid.png")
    write_report(out / "test", html=False)
    (out / "search.md").write_text(render(cfg, result, plot is not None))
    return result


def _candidate(spec: TaiaSpec, entry: dict[str, Any], same: dict[str, str]) -> dict[str, Any]:
    ffn = spec.groups["ffn"]
    return {
        "name": spec.name,
        "attn": spec.groups["attn"].lam,
        "ffn": ffn.lam,
        "ffn_layers": list(ffn.layers) if ffn.layers else None,
        "rest": "finetuned" if spec.groups["norm"].lam == 1.0 else "base",
        "metric": entry["metric"],
        "score": entry["score"],
        "margin": (entry.get("margin") or {}).get("mean"),  # choice tasks: the secondary metric
        "ci95": entry["ci95"],
        "n": entry["n"],
        "same_as": sorted(k for k, v in same.items() if v == spec.name),
    }


def render(cfg: SearchConfig, result: dict[str, Any], has_plot: bool) -> str:
    """search.md: the choice, the best dev candidates, the test table with paired Δ."""
    rows = result["candidates"]
    best = next(r for r in rows if f"best-{r['name']}" == result["best"])
    metric = best["metric"]
    lines = [
        f"# taia search: {result['best']}",
        "",
        f"Dev: {cfg.dev_task}, {result['dev_n']} samples; {len(rows)} distinct specs "
        f"({len(rows) + len(result['equivalent'])} grid points). Chosen spec: `{result['best_spec']}` "
        f"(dev {metric} {_score(best)}). Ties go to the spec keeping less of the FFN update.",
        *(
            ["", f"On this fine-tune the chosen spec is the same model as `{result['best_same_as']}`."]
            if result["best_same_as"]
            else []
        ),
        "",
        "A dev score's CI is wide on a small dev set: a spec that beats TAIA there by less than the CI's "
        "half-width may not beat it on the test set, which is why the test table follows.",
        "",
        "## Dev scores (best first)",
        "",
        "| spec | λ attn | λ ffn | FFN layers | norms/embed/head | dev score [95 % CI] | dev margin |",
        "|---|---|---|---|---|---|---|",
    ]
    ranked = sorted(rows, key=lambda r: r["score"] if lower_is_better(metric) else -r["score"])
    for r in ranked[:TOP]:
        layers = "all" if r["ffn_layers"] is None else f"{r['ffn_layers'][0]}–{r['ffn_layers'][1]}"
        margin = shown(r.get("margin"), "gold_margin", signed=True)
        spec = f"{r['name']} | {r['attn']:g} | {r['ffn']:g} | {layers} | {r['rest']}"
        lines.append(f"| {spec} | {_score(r)} | {margin} |")
    if len(ranked) > TOP:
        lines.append(f"\n({len(ranked) - TOP} more in search.json)")
    if has_plot:
        lines += ["", "![dev grid](plots/dev_grid.png)"]
    return "\n".join([*lines, "", *_test_lines(cfg, result)]) + "\n"


def _test_lines(cfg: SearchConfig, result: dict[str, Any]) -> list[str]:
    variants = [*cfg.test_variants, result["best"]]
    tests, paired = result["test"]["results"], result["test"]["paired"]
    header = [*variants, *(f"chosen − {r}" for r in REFERENCES), *(f"margin Δ vs {r}" for r in REFERENCES)]
    header += [f"McNemar p vs {r}" for r in REFERENCES]
    lines = [
        "## Test (held out)",
        "",
        "| task | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    for task in map(task_key, cfg.test_tasks):
        cells = [_score(tests[v][task]) for v in variants]
        chosen = paired.get(result["best"], {}).get(task, {})
        deltas = [_delta(chosen.get(ref)) for ref in REFERENCES]
        margins = [_delta((chosen.get(ref) or {}).get("margin"), "gold_margin") for ref in REFERENCES]
        p_values = [shown_test((chosen.get(ref) or {}).get("mcnemar")) for ref in REFERENCES]
        lines.append(f"| {task} | " + " | ".join(cells + deltas + margins + p_values) + " |")
    lines += [
        "",
        "Δ: paired on the same questions, percentage points [95 % CI]; margin Δ: the paired gold-option "
        "margin (choice tasks), which resolves smaller differences; McNemar p: the exact test on the "
        "discordant questions (+ right only with the chosen spec, − only with the other). Full report: "
        "test/report.md",
    ]
    return lines


def _score(entry: dict[str, Any]) -> str:
    return shown_ci(entry["score"], entry["ci95"], entry["metric"])


def _delta(d: dict[str, Any] | None, metric: str = "accuracy") -> str:
    return shown_ci(d["delta"], d["ci95"], metric, signed=True) if d else "-"


def dev_grid_plot(rows: list[dict[str, Any]], out: Path) -> Path | None:
    """Heatmap of the dev score over λ_attn (rows) × λ_ffn (columns), FFN on every layer, one panel per
    norms/embed/head source; None when the grid has fewer than two λ values on either axis."""
    full = [r for r in rows if r["ffn_layers"] is None]
    attn, ffn = sorted({r["attn"] for r in full}), sorted({r["ffn"] for r in full})
    rests = [x for x in ("base", "finetuned") if any(r["rest"] == x for r in full)]
    if len(attn) < 2 or len(ffn) < 2:
        return None
    from taia.run.plots import new_figure, save_figure

    fig = new_figure(1.0 + 3.2 * len(rests), 3.4)
    for i, rest in enumerate(rests):
        cells = {(r["attn"], r["ffn"]): 100 * r["score"] for r in full if r["rest"] == rest}
        grid = [[cells.get((a, f), math.nan) for f in ffn] for a in attn]
        ax = fig.add_subplot(1, len(rests), i + 1)
        image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto")
        lo, hi = image.get_clim()
        for (y, x), value in _cells(grid):  # dark text on viridis' bright upper half, white below
            color = "black" if hi > lo and (value - lo) / (hi - lo) > 0.6 else "white"
            ax.text(x, y, f"{value:.1f}", ha="center", va="center", color=color, fontsize=8)
        ax.set_xticks(range(len(ffn)), [f"{f:g}" for f in ffn])
        ax.set_yticks(range(len(attn)), [f"{a:g}" for a in attn])
        ax.set_xlabel("λ ffn (all layers)")
        ax.set_ylabel("λ attn")
        ax.set_title(f"dev score (%), norms etc. from {rest}", fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.8)
    return save_figure(fig, out)


def _cells(grid: list[list[float]]) -> list[tuple[tuple[int, int], float]]:
    return [((y, x), v) for y, row in enumerate(grid) for x, v in enumerate(row) if not math.isnan(v)]
