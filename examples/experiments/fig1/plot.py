"""The Fig. 1 twin of docs/results.md §8: CommonsenseQA dev per variant against the share of
out-of-distribution rows in the training mix, and the paired Δ (vanilla − base, TAIA − base,
TAIA − vanilla) of the gold-option margin and of accuracy.

    python examples/experiments/fig1/plot.py runs/fig1   # writes runs/fig1/fig1.md and runs/fig1/fig1.png

A point is any sub-directory with eval/results.json and train/taia_train.json (a finished `taia run`). The
OOD share is read from the training manifest (rows of every source but the first / all rows), results from
results.json; nothing is recomputed here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from taia.run.rundata import RunData, load_run

TASK = "commonsenseqa"
VARIANTS = ("base", "vanilla", "taia")
COMPARISONS = (("vanilla", "base"), ("taia", "base"), ("taia", "vanilla"))


def ood_share(run: RunData) -> tuple[float, int]:
    """(share of rows not from the first, in-domain source; total rows) from the run's training manifest."""
    if run.train is None:
        raise SystemExit(f"{run.run_dir}: no readable train/taia_train.json (the training manifest)")
    sources = run.train["data"]["sources"]
    taken = [s["taken"] for s in sources]
    return 1 - taken[0] / sum(taken), sum(taken)


def points(sweep: Path) -> list[dict]:
    out = []
    for path in sweep.glob("*/eval/results.json"):
        run = path.parent.parent
        data = load_run(run)
        share, rows = ood_share(data)
        out.append(
            {"name": run.name, "share": share, "rows": rows, "results": data.results, "paired": data.paired}
        )
    return sorted(out, key=lambda p: p["share"])


def cell(entry: dict | None, scale: float, digits: str) -> str:
    if not entry:
        return "–"
    d, (lo, hi) = entry["delta"], entry["ci95"]
    mark = "**" if lo > 0 or hi < 0 else ""  # the CI excludes 0
    return f"{mark}{scale * d:+{digits}} [{scale * lo:+{digits}}, {scale * hi:+{digits}}]{mark}"


def table(pts: list[dict]) -> list[str]:
    head = " | ".join(f"{v} acc" for v in VARIANTS)
    lines = [f"| OOD share (rows) | {head} | " + " | ".join(f"{a} − {b} margin" for a, b in COMPARISONS)
             + " | " + " | ".join(f"{a} − {b} acc (points)" for a, b in COMPARISONS) + " |"]  # fmt: skip
    lines.append("|---|" + "---:|" * (len(VARIANTS) + 2 * len(COMPARISONS)))
    for p in pts:
        acc = []
        for v in VARIANTS:
            r = p["results"][v][TASK]
            acc.append(f"{100 * r['score']:.1f} [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]")
        pairs = [p["paired"].get(a, {}).get(TASK, {}).get(b) for a, b in COMPARISONS]
        margin = [cell((e or {}).get("margin"), 1.0, ".3f") for e in pairs]
        points_ = [cell(e, 100.0, ".1f") for e in pairs]
        lines.append(
            f"| {100 * p['share']:.0f} % ({p['rows']}) | " + " | ".join(acc + margin + points_) + " |"
        )
    return lines


def plot(pts: list[dict], out: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.6))
    x = [100 * p["share"] for p in pts]
    ax = fig.add_subplot(1, 2, 1)
    for i, v in enumerate(VARIANTS):
        r = [p["results"][v][TASK] for p in pts]
        y = [100 * e["score"] for e in r]
        err = [
            [yy - 100 * e["ci95"][0] for yy, e in zip(y, r, strict=True)],
            [100 * e["ci95"][1] - yy for yy, e in zip(y, r, strict=True)],
        ]
        ax.errorbar(
            [xx + (i - 1) * 0.8 for xx in x], y, yerr=err, fmt="o-", color=f"C{i}", label=v, capsize=2
        )
    ax.set(
        xlabel="out-of-distribution share of the training mix (%)", ylabel="CommonsenseQA dev accuracy (%)"
    )
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 2, 2)
    for i, (a, b) in enumerate(COMPARISONS):
        es = [((p["paired"].get(a, {}).get(TASK, {}).get(b)) or {}).get("margin") for p in pts]
        xs = [xx + (i - 1) * 0.8 for xx, e in zip(x, es, strict=True) if e]
        es = [e for e in es if e]
        err = [[e["delta"] - e["ci95"][0] for e in es], [e["ci95"][1] - e["delta"] for e in es]]
        ax.errorbar(xs, [e["delta"] for e in es], yerr=err, fmt="o-", color=f"C{i + 3}", label=f"{a} − {b}",
                    capsize=2)  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8)
    ax.set(
        xlabel="out-of-distribution share of the training mix (%)",
        ylabel="paired Δ gold-option margin (95 % CI)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(sweep: Path) -> None:
    pts = points(sweep)
    if not pts:
        raise SystemExit(f"no finished points (*/eval/results.json) under {sweep}")
    md = ["# Fig. 1 twin: CommonsenseQA dev by OOD share (bold: the 95 % CI excludes 0)", "", *table(pts)]
    (sweep / "fig1.md").write_text("\n".join(md) + "\n")
    plot(pts, sweep / "fig1.png")
    print(f"wrote {sweep / 'fig1.md'} and {sweep / 'fig1.png'} ({len(pts)} points)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/fig1"))
