"""`taia run` (train → inspect → eval → report, cached per stage) and `taia report` (re-render).

    taia run EXPERIMENT.yaml [key=value ...]
    taia report RUN_DIR

Names load lazily: importing `taia.run.rundata` or `taia.run.render` pulls in neither torch nor matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from taia._verbs import callable_package

__all__ = ["ExperimentConfig", "run", "write_report"]
_EXPORTS = {
    "ExperimentConfig": "taia.run.experiment",
    "run": "taia.run.pipeline",
    "write_report": "taia.run.render",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'taia.run' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)


callable_package(__name__, "run")
