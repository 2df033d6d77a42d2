"""Wall-time logs: one JSON line per finished piece of work, appended, so resumed runs add up.

Written by `taia eval` (OUT/timings.jsonl: load, variant × task) and `taia run` (RUN/timings.jsonl: stages).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOG = "timings.jsonl"  # the file name in an eval out dir and in a run dir


@contextmanager
def timed(path: Path, **fields: Any) -> Iterator[dict[str, Any]]:
    """Append `{**fields, seconds, at}` to `path` when the block finishes (not when it raises: an
    interrupted piece is redone by the resume and timed then). The yielded dict takes more fields."""
    row = dict(fields)
    start = time.perf_counter()
    yield row
    row.update(seconds=round(time.perf_counter() - start, 3), at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def sum_seconds(path: Path, key: str) -> dict[str, float]:
    """Seconds per value of `key`, summed over every line of the log (empty when there is none)."""
    totals: dict[str, float] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        row = json.loads(line)
        totals[str(row[key])] = round(totals.get(str(row[key]), 0.0) + row["seconds"], 3)
    return totals
