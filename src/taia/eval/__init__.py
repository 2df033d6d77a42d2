"""`taia eval`: the paper's tasks and protocol, strict metrics, all variants from one loaded model.

    taia eval --model M [--adapter A | --finetuned F] --variants base,vanilla,taia,taif --tasks gsm8k,csqa
              [--limit N] [--protocol paper|standard] [--backend hf|vllm] --out DIR

`taia.evaluate(EvalConfig(...))` is the same call; `taia.eval.score(task, response, gold)` scores one response
as the eval does, without torch. Names load lazily (no torch import for `--help`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taia._verbs import lazy_exports

if TYPE_CHECKING:  # typed for callers; loaded on first use
    from taia.eval.scorer import score

__all__ = ["EvalConfig", "evaluate", "score"]
_EXPORTS = {"EvalConfig": "taia.eval.config", "evaluate": "taia.eval.runner", "score": "taia.eval.scorer"}

__getattr__ = lazy_exports(__name__, _EXPORTS)
