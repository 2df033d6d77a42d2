"""taia — TAIA (arXiv 2405.20192): fine-tune all parameters, infer with only the fine-tuned attention.

Library flow: `classify` (module tree → groups) → `TaiaSpec` (λ per group) → `apply` (adapter, merged
checkpoint, streamed full checkpoint, or a model in memory). The CLI (`taia`) is a thin layer over these.
Heavy imports (torch, transformers) are deferred until a name is used, so `taia --help` stays fast.
"""

from __future__ import annotations

from taia._verbs import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "classify": "taia.classify",
    "model_map": "taia.classify",
    "ParamInfo": "taia.classify",
    "GROUPS": "taia.classify",
    "TaiaSpec": "taia.spec",
    "load_spec": "taia.spec",
    "PRESETS": "taia.spec",
    "apply": "taia.apply",
    "apply_adapter": "taia.apply",
    "apply_adapter_merged": "taia.apply",
    "apply_checkpoint": "taia.apply",
    "apply_model": "taia.apply",
    "train": "taia.train",
    "TrainConfig": "taia.train",
    "evaluate": "taia.eval",
    "EvalConfig": "taia.eval",
    "run": "taia.run",
    "ExperimentConfig": "taia.run",
    "ApplyConfig": "taia.config",
    "InspectConfig": "taia.config",
    "inspect": "taia.inspect",
    "inspect_hidden": "taia.analysis.hidden",
    "TaiaError": "taia.errors",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
