"""The run report's plots (PNG, headless): scores per task, ‖ΔW‖/‖W‖ per layer, the training loss.

Exercised by `taia report RUN_DIR` (writes RUN/plots/*.png) and tests/test_report.py. Each plot function
takes the `RunData` and an output path and returns the path, or None (writing nothing) when its input is
missing. matplotlib is imported inside the functions (object API on the Agg canvas, never pyplot), so
importing taia stays fast and nothing needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import cycle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taia.eval.metrics import lower_is_better, metric
from taia.run.rundata import PROPORTIONS, RunData, finite

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PALETTE = {"base": "#8c8c8c", "vanilla": "#1f77b4", "taia": "#d62728", "taif": "#2ca02c"}
_MORE_COLORS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f")
NORM_GROUPS = ("attn", "ffn", "experts", "router")  # heatmap rows, when inspect.json has their rel_update
DPI = 120
MAX_WIDTH = 30.0  # inches; beyond it (dozens of tasks) the bars get narrower instead
SMOOTH_ABOVE = 20  # a loss log with more points than this also gets a moving average


def make_plots(data: RunData, plots_dir: Path) -> dict[str, Path]:
    """Every plot whose input is there, as {name: path}; a stale PNG of a skipped plot is removed."""
    out: dict[str, Path] = {}
    for name, plot in PLOTS.items():
        path = plots_dir / f"{name}.png"
        written = plot(data, path)
        if written is None:
            path.unlink(missing_ok=True)
        else:
            out[name] = written
    return out


def variant_colors(variants: Sequence[str]) -> dict[str, str]:
    """The same colour for a variant in every plot: base grey, the paper's three fixed, others cycled."""
    more = cycle(_MORE_COLORS)
    return {v: PALETTE.get(v) or next(more) for v in variants}


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    return out


# ---------------------------------------------------------------------------------------------- scores


def scores_plot(data: RunData, out: Path) -> Path | None:
    """Grouped bars per task, one per variant, 95 % CI whiskers, in percent; None without proportions."""
    tasks = [t for t in data.tasks if data.metric(t) in PROPORTIONS]
    if not tasks or not data.variants:
        return None
    variants, colors = data.variants, variant_colors(data.variants)
    width = 0.8 / len(variants)
    fig = new_figure(min(MAX_WIDTH, max(6.0, 2.0 + len(tasks) * (0.22 * len(variants) + 0.4))), 4.8)
    ax = fig.add_subplot()
    for i, variant in enumerate(variants):
        heights, errors = _bars(data, variant, tasks)
        xs = [x + (i - (len(variants) - 1) / 2) * width for x in range(len(tasks))]
        ax.bar(
            xs, heights, width, yerr=errors, color=colors[variant], label=variant, capsize=2, ecolor="#333"
        )
    _task_axis(ax, [_task_tick(data, t) for t in tasks])
    ax.set_ylabel("score (%)")
    ax.set_ylim(bottom=0)
    ax.set_title("Scores per task (95 % CI)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return save_figure(fig, out)


def _bars(data: RunData, variant: str, tasks: list[str]) -> tuple[list[float], list[list[float]]]:
    """Bar heights (nan: no bar) and [below, above] whisker lengths in percent (0 without a CI)."""
    heights, below, above = [], [], []
    for task in tasks:
        entry = data.entry(variant, task) or {}
        score = finite(entry.get("score"))
        ci = [*(entry.get("ci95") or []), None, None]
        lo, hi = finite(ci[0]), finite(ci[1])
        heights.append(math.nan if score is None else 100 * score)
        whisker = (0.0, 0.0) if score is None or lo is None or hi is None else (score - lo, hi - score)
        below.append(max(0.0, 100 * whisker[0]))
        above.append(max(0.0, 100 * whisker[1]))
    return heights, [below, above]


def _task_tick(data: RunData, task: str) -> str:
    name = data.metric(task)
    return f"{task}\n({metric(name).short or name}, lower is better)" if lower_is_better(name) else task


def _task_axis(ax: Axes, labels: list[str]) -> None:
    rotate = len(labels) > 4 or max(len(x) for x in labels) > 24
    ax.set_xticks(
        range(len(labels)), labels, rotation=30 if rotate else 0, ha="right" if rotate else "center"
    )


# ---------------------------------------------------------------------------------------- update norms


def norm_grid(inspect: dict[str, Any] | None) -> tuple[list[str], list[int], list[list[float]]] | None:
    """(groups, layers, rel_update[group][layer] with nan where absent) from inspect.json, or None."""
    cells: dict[tuple[str, int], float] = {}
    for row in (inspect or {}).get("rows") or []:
        layer, value = row.get("layer"), finite(row.get("rel_update"))
        if isinstance(layer, int) and value is not None and row.get("group") in NORM_GROUPS:
            cells[row["group"], layer] = value
    if not cells:
        return None
    groups = [g for g in NORM_GROUPS if any(k[0] == g for k in cells)]
    count = (inspect or {}).get("num_layers")
    seen = {k[1] for k in cells}
    layers = list(range(count)) if isinstance(count, int) and count > max(seen) else sorted(seen)
    return groups, layers, [[cells.get((g, layer), math.nan) for layer in layers] for g in groups]


def update_norms_plot(data: RunData, out: Path) -> Path | None:
    """Heatmap of ‖ΔW‖/‖W‖: groups (rows) × layers (columns), colour bar; None without deltas."""
    grid = norm_grid(data.inspect)
    if grid is None:
        return None
    import numpy as np

    groups, layers, values = grid
    fig = new_figure(max(5.0, 2.5 + 0.3 * len(layers)), 1.6 + 0.55 * len(groups))
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(np.array(values)), aspect="auto", cmap="viridis", interpolation="nearest"
    )
    step = max(1, math.ceil(len(layers) / 32))
    ax.set_xticks(range(0, len(layers), step), [str(x) for x in layers[::step]])
    ax.set_yticks(range(len(groups)), groups)
    ax.set_xlabel("layer")
    ax.set_title("‖ΔW‖/‖W‖ per layer")
    fig.colorbar(image, ax=ax, label="‖ΔW‖/‖W‖")
    return save_figure(fig, out)


# ------------------------------------------------------------------------------------------------ loss


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over `window` points; one value per full window (len(values) − window + 1)."""
    total, out = 0.0, []
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        if i >= window - 1:
            out.append(total / window)
    return out


def loss_plot(data: RunData, out: Path) -> Path | None:
    """Training loss vs step, with a moving average above SMOOTH_ABOVE points; None without a log."""
    points = sorted((float(r["step"]), float(r["loss"])) for r in data.loss)
    if not points:
        return None
    steps, losses = [p[0] for p in points], [p[1] for p in points]
    fig = new_figure(7.0, 4.0)
    ax = fig.add_subplot()
    smooth = len(points) > SMOOTH_ABOVE
    style: dict[str, Any] = {"alpha": 0.35} if smooth else {"marker": "o", "markersize": 3}
    ax.plot(steps, losses, color="#1f77b4", lw=1, label="loss", **style)
    if smooth:
        _smoothed(ax, steps, losses)
    variant = (data.train or {}).get("variant")
    ax.set_title("Training loss" + (f" ({variant})" if variant else ""))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(frameon=False)
    return save_figure(fig, out)


def _smoothed(ax: Axes, steps: list[float], losses: list[float]) -> None:
    window = max(5, len(losses) // 20)
    start = window // 2  # each mean drawn at its window's centre, so the curve does not lag behind
    means = moving_average(losses, window)
    ax.plot(
        steps[start : start + len(means)],
        means,
        color="#1f77b4",
        lw=2,
        label=f"moving average ({window} logs)",
    )


PLOTS: dict[str, Callable[[RunData, Path], Path | None]] = {
    "scores": scores_plot,
    "update_norms": update_norms_plot,
    "loss": loss_plot,
}
