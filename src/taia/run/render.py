"""`taia report RUN_DIR`: a run's report files, rendered from its data (`taia.run.rundata`) into the run
dir — report.md and report.html (`taia.run.document`), report.csv, report.json and plots/*.png
(`taia.run.plots`), each file written atomically. Also the last stage of `taia run`. Exercised by
tests/test_report.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from taia.io.atomic import write_file
from taia.run.document import render_html, render_markdown
from taia.run.plots import make_plots
from taia.run.rundata import OUTPUTS, PLOTS, load_run, render_csv, report_json, table_rows


def write_report(run_dir: Path, html: bool = True) -> dict[str, Path]:
    """Render everything into the run dir; returns {"md", "csv", "json", "html"?, plot names…: path}."""
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    plot_paths = make_plots(data, run_dir / PLOTS)
    plots = {name: path.relative_to(run_dir).as_posix() for name, path in plot_paths.items()}
    rows = table_rows(data)
    texts = {
        "md": render_markdown(data, plots),
        "csv": render_csv(rows),
        "json": json.dumps(_jsonable(report_json(data, rows, plots)), indent=2, ensure_ascii=False) + "\n",
    }
    if html:
        texts["html"] = render_html(data, plots)
    out = {key: write_file(run_dir / OUTPUTS[key], text) for key, text in texts.items()}
    return out | plot_paths


def _jsonable(x: Any) -> Any:
    """Strict JSON: NaN and ±inf (which results.json may hold) become null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
