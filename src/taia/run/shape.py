"""The shape of a results.json that the report reads: checked once, when the run is loaded, so that a
hand-edited or foreign file is one line naming the file and the first value out of shape, never a
traceback from deep inside the renderers (which trust what this lets through)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taia.errors import TaiaError


class _Bad(Exception):
    """A value out of shape; its message says where (`results.base.csqa.ci95`) and what it is."""


def check_results(path: Path, doc: dict[str, Any]) -> None:
    """TaiaError naming `path` and the first value the report could not read."""
    try:
        for v, by_task in _map(doc["results"], "results").items():
            for t, entry in _map(by_task, f"results.{v}").items():
                _entry(_map(entry, f"results.{v}.{t}"), f"results.{v}.{t}")
        run = _map(doc.get("run") or {}, "run")
        for key in ("config", "seconds", "versions", "specs", "persona"):
            _map(run.get(key) or {}, f"run.{key}")
        for name, seconds in (run.get("seconds") or {}).items():
            _number(seconds, f"run.seconds.{name}")
        for v, by_task in _map(doc.get("paired") or {}, "paired").items():
            for t, by_ref in _map(by_task, f"paired.{v}").items():
                for ref, delta in _map(by_ref, f"paired.{v}.{t}").items():
                    _delta(_map(delta, f"paired.{v}.{t}.{ref}"), f"paired.{v}.{t}.{ref}")
    except _Bad as e:
        raise TaiaError(f"{path}: not a results.json the report can read: {e}") from None


def _entry(entry: dict[str, Any], where: str) -> None:
    _number(entry.get("score"), f"{where}.score")
    _interval(entry.get("ci95"), f"{where}.ci95")
    for key in ("n", "empty_outputs"):
        if entry.get(key) is not None and (isinstance(entry[key], bool) or not isinstance(entry[key], int)):
            raise _Bad(f"{where}.{key} is {entry[key]!r}, not a count")
    if not isinstance(entry.get("metric", ""), str):
        raise _Bad(f"{where}.metric is {entry['metric']!r}, not a metric name")
    margin = _map(entry.get("margin") or {}, f"{where}.margin")
    _number(margin.get("mean"), f"{where}.margin.mean")
    _interval(margin.get("ci95"), f"{where}.margin.ci95")
    for subset, value in _map(entry.get("subsets") or {}, f"{where}.subsets").items():
        _number(value, f"{where}.subsets.{subset}")


def _delta(delta: dict[str, Any], where: str) -> None:
    _number(delta.get("delta"), f"{where}.delta")
    _interval(delta.get("ci95"), f"{where}.ci95")
    margin = _map(delta.get("margin") or {}, f"{where}.margin")
    _number(margin.get("delta"), f"{where}.margin.delta")
    _interval(margin.get("ci95"), f"{where}.margin.ci95")


def _map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{where} is {type(value).__name__} {_short(value)}, not a mapping")
    return value


def _number(value: Any, where: str) -> None:
    """A number or null (NaN is a number: results.json writes one where a score has no value)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise _Bad(f"{where} is {_short(value)}, not a number")


def _interval(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or len(value) != 2:
        raise _Bad(f"{where} is {_short(value)}, not an interval [lo, hi]")
    for i, end in enumerate(value):
        _number(end, f"{where}[{i}]")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
