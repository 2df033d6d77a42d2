"""The map of docs/results.md §7: for every finished point under a sweep dir, the paired Δ of the gold-option
margin (and of accuracy) of vanilla, TAIA and TAIF against base, and of TAIA against vanilla, per task.

    python examples/experiments/map/plot.py runs/map        # writes runs/map/map.md and runs/map/map.png

A point is any sub-directory with eval/results.json (a `taia run` output); unfinished points are skipped.
Everything is read from results.json (`paired`), nothing is recomputed here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from taia.run.rundata import RunData, load_run

COMPARISONS = (("vanilla", "base"), ("taia", "base"), ("taif", "base"), ("taia", "vanilla"))


def points(sweep: Path) -> dict[str, RunData]:
    """point name → its run (`paired`: variant → task → reference → paired entry)."""
    runs = sorted(path.parent.parent for path in sweep.glob("*/eval/results.json"))
    return {run.name: load_run(run) for run in runs}


def cell(entry: dict | None, key: str | None, scale: float) -> str:
    if not entry:
        return "–"
    got = entry.get(key) if key else entry
    if not got:
        return "–"
    d, (lo, hi) = got["delta"], got["ci95"]
    mark = "**" if lo > 0 or hi < 0 else ""  # the CI excludes 0
    f = ".1f" if scale == 100.0 else ".3f"  # accuracy in points, the margin in nats
    return f"{mark}{scale * d:+{f}} [{scale * lo:+{f}}, {scale * hi:+{f}}]{mark}"


def table(data: dict[str, dict], key: str | None, scale: float) -> list[str]:
    tasks = sorted({t for p in data.values() for v in p.values() for t in v})
    lines = []
    for task in tasks:
        lines += [f"\n**{task}**\n", "| point | " + " | ".join(f"{a} − {b}" for a, b in COMPARISONS) + " |"]
        lines.append("|---|" + "---:|" * len(COMPARISONS))
        for name, paired in data.items():
            cells = [cell(paired.get(a, {}).get(task, {}).get(b), key, scale) for a, b in COMPARISONS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def plot(data: dict[str, dict], out: Path) -> None:
    from matplotlib.figure import Figure

    tasks = sorted({t for p in data.values() for v in p.values() for t in v})
    fig = Figure(figsize=(4.2 * len(tasks), 0.45 * len(data) * len(COMPARISONS) + 2.0))
    names = list(data)
    for k, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), k + 1)
        for j, (a, b) in enumerate(COMPARISONS):
            for i, name in enumerate(names):
                e = ((data[name].get(a, {}).get(task, {}).get(b)) or {}).get("margin")
                if not e:
                    continue
                y = i * (len(COMPARISONS) + 1) + j
                ax.errorbar(e["delta"], y, xerr=[[e["delta"] - e["ci95"][0]], [e["ci95"][1] - e["delta"]]],
                            fmt="o", color=f"C{j}", label=f"{a} − {b}" if i == 0 else None)  # fmt: skip
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks([i * (len(COMPARISONS) + 1) + 1.5 for i in range(len(names))], names if k == 0 else [])
        ax.invert_yaxis()
        ax.set_title(task)
        ax.set_xlabel("paired Δ gold-option margin (95 % CI)")
        ax.locator_params(axis="x", nbins=4)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(COMPARISONS), fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(out, dpi=110)


def update_sizes(runs: dict[str, RunData]) -> list[str]:
    """Per point: the mean ‖ΔW‖/‖W‖ over layers of attention and FFN (RUN/inspect.json), the update size."""
    lines = ["| point | mean ‖ΔW‖/‖W‖ attn | mean ‖ΔW‖/‖W‖ ffn |", "|---|---:|---:|"]
    for name, run in runs.items():
        rows = run.inspect["rows"] if run.inspect else []
        mean = {}
        for group in ("attn", "ffn"):
            values = [r["rel_update"] for r in rows if r["group"] == group and r["rel_update"] is not None]
            mean[group] = f"{sum(values) / len(values):.4f}" if values else "–"
        lines.append(f"| {name} | {mean['attn']} | {mean['ffn']} |")
    return lines


def main(sweep: Path) -> None:
    runs = points(sweep)
    if not runs:
        raise SystemExit(f"no finished points (*/eval/results.json) under {sweep}")
    data = {name: run.paired for name, run in runs.items()}
    md = ["# Map: paired Δ per point and task (bold: the 95 % CI excludes 0)", "",
          "## Update size", "", *update_sizes(runs), "",
          "## Gold-option margin", *table(data, "margin", 1.0), "",
          "## Accuracy (percentage points)", *table(data, None, 100.0)]  # fmt: skip
    (sweep / "map.md").write_text("\n".join(md) + "\n")
    plot(data, sweep / "map.png")
    print(f"wrote {sweep / 'map.md'} and {sweep / 'map.png'} ({len(data)} points)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/map"))
