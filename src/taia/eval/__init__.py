"""`taia eval`: the paper's tasks and protocol, strict metrics, all variants from one loaded model.

    taia eval --model M [--adapter A | --finetuned F] --variants base,vanilla,taia,taif --tasks gsm8k,csqa
              [--limit N] [--protocol paper|standard] [--backend hf|vllm] --out DIR

`taia.evaluate(EvalConfig(...))` is the same call. Names load lazily (no torch import for `--help`).
"""

from __future__ import annotations

from taia._verbs import lazy_exports

__all__ = ["EvalConfig", "evaluate"]
_EXPORTS = {"EvalConfig": "taia.eval.config", "evaluate": "taia.eval.runner"}

__getattr__ = lazy_exports(__name__, _EXPORTS)
