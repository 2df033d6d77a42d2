"""`taia run` (train → inspect → eval → report, cached per stage) and `taia report` (re-render).

    taia run EXPERIMENT.yaml [key=value ...]
    taia report RUN_DIR

Names load lazily: importing `taia.run.rundata` or `taia.run.render` pulls in neither torch nor matplotlib.
"""

from __future__ import annotations

from taia._verbs import callable_package, lazy_exports

__all__ = ["ExperimentConfig", "run", "write_report"]
_EXPORTS = {
    "ExperimentConfig": "taia.run.experiment",
    "run": "taia.run.pipeline",
    "write_report": "taia.run.render",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


callable_package(__name__, "run")
