"""The outputs of `taia inspect --hidden-states`: a text table, hidden_states.json / .csv, two PNG plots and
the resolved config, written into `--out` (created if needed; only these files are replaced, each
atomically, so `--out` may be an existing run dir).

    taia inspect --base B --adapter A --hidden-states --tasks csqa --out runs/hidden

Exercised by tests/test_hidden.py. Plots use matplotlib's object API on the Agg canvas (no display).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from taia.config import config_yaml
from taia.io.atomic import write_file

RESULT = "hidden_states.json"
CSV = "hidden_states.csv"
CONFIG = "hidden_states_config.yaml"
COSINE_PNG = "hidden_cosine.png"
RANK_PNG = "hidden_rank_ratio.png"
COLUMNS = ("task", "variant", "layer", "cosine", "erank", "base_erank", "rank_ratio")


def _pooled(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in result["rows"] if r["task"] == "all"]


def _grid(result: dict[str, Any], key: str) -> dict[int | None, dict[str, float | None]]:
    """layer → variant → value of `key`, over all prompts, layers in order (None = embeddings first)."""
    grid: dict[int | None, dict[str, float | None]] = {}
    for r in sorted(_pooled(result), key=lambda r: -1 if r["layer"] is None else r["layer"]):
        grid.setdefault(r["layer"], {})[r["variant"]] = r[key]
    return grid


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(header, *lines, strict=False)]
    fmt = "  ".join(f"{{:>{w}}}" for w in widths)
    return [fmt.format(*header), *(fmt.format(*line) for line in lines)]


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(result: dict[str, Any]) -> str:
    """Two layer × variant tables over all prompts: cosine to base, and rank ratio after attention."""
    variants = result["variants"]
    counts = ", ".join(f"{t} {n}" for t, n in result["tasks"].items())
    title = (
        f"{result['model_type']}, {result['num_layers']} layers; {sum(result['tasks'].values())} prompts "
        f"({counts}), {result['tokens']} tokens; reference: {result['reference']}"
    )
    cos = _grid(result, "cosine")
    cos_lines = [
        ["emb" if k is None else str(k), *(_num(v.get(n), ".4f") for n in variants)] for k, v in cos.items()
    ]
    ratio, base = _grid(result, "rank_ratio"), _grid(result, "base_erank")
    rank_lines = [
        [str(k), *(_num(v.get(n), ".3f") for n in variants), _num(base[k].get(variants[0]), ".2f")]
        for k, v in ratio.items()
        if k is not None
    ]
    return "\n".join(
        [
            title,
            "cosine to base (mean over each prompt's real tokens, then over prompts)",
            *_table(["layer", *variants], cos_lines),
            "",
            "rank ratio after the attention residual (effective rank, variant ÷ base; last column: base)",
            *_table(["layer", *variants, "base erank"], rank_lines),
        ]
    )


def to_csv(result: dict[str, Any]) -> str:
    """Every row (all prompts, and per task when several): `emb` for the embeddings, blank for none."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in result["rows"]:
        cells = ["emb" if k == "layer" and r[k] is None else r[k] for k in COLUMNS]
        writer.writerow(["" if c is None else c for c in cells])
    return buf.getvalue()


def write_outputs(result: dict[str, Any], cfg: BaseModel, out: Path) -> list[Path]:
    """hidden_states.json / .csv, the resolved config and the two plots, into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        RESULT: (json.dumps(result, indent=2) + "\n").encode(),
        CSV: to_csv(result).encode(),
        CONFIG: config_yaml(cfg).encode(),
        COSINE_PNG: cosine_plot(result),
        RANK_PNG: rank_plot(result),
    }
    for name, data in files.items():
        write_file(out / name, data)
    return [out / name for name in files]


# ------------------------------------------------------------------------------------------------ plots


def _lines(result: dict[str, Any], key: str, title: str, ylabel: str, with_emb: bool) -> bytes:
    """One line per variant over the layers, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from taia.run.plots import DPI, variant_colors

    grid = {k: v for k, v in _grid(result, key).items() if with_emb or k is not None}
    labels = ["emb" if k is None else str(k) for k in grid]
    fig = Figure(figsize=(max(6.0, 2.0 + 0.25 * len(labels)), 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = variant_colors(result["variants"])
    ax.axhline(1.0, color="#8c8c8c", lw=0.8, ls="--")  # 1 = the same as base
    for name in result["variants"]:
        ys = [_nan(v.get(name)) for v in grid.values()]  # a gap where there is no value
        ax.plot(range(len(ys)), ys, marker="o", markersize=3, lw=1.5, color=colors[name], label=name)
    step = max(1, len(labels) // 32)
    ax.set_xticks(range(0, len(labels), step), labels[::step])
    ax.set_xlabel("layer")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def cosine_plot(result: dict[str, Any]) -> bytes:
    return _lines(result, "cosine", "Hidden-state cosine similarity to base", "cosine to base", True)


def rank_plot(result: dict[str, Any]) -> bytes:
    return _lines(
        result, "rank_ratio", "Effective rank after the attention residual, ÷ base", "rank ratio", False
    )
