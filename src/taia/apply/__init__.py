"""`taia apply`: base + (LoRA adapter | full fine-tune) + spec → a TAIA model, with a report beside it.

taia apply --base B --adapter A --out O [--spec taia] [--format adapter|merged]
taia apply --base B --finetuned F --out O [--spec taia-ref]
"""

from __future__ import annotations

from typing import Any

from taia._verbs import callable_package
from taia.apply.adapter import apply_adapter, filter_adapter
from taia.apply.checkpoint import apply_checkpoint
from taia.apply.merged import apply_adapter_merged
from taia.apply.model import apply_model
from taia.config import ApplyConfig, config_yaml
from taia.io import stage
from taia.spec import load_spec

__all__ = [
    "apply",
    "apply_adapter",
    "apply_adapter_merged",
    "apply_checkpoint",
    "apply_model",
    "filter_adapter",
]

CONFIG_FILE = "taia_config.yaml"


def apply(cfg: ApplyConfig) -> dict[str, Any]:
    """Run one `taia apply` from its config; writes the output dir, its report and resolved config."""
    _check_out_is_not_an_input(cfg)
    spec = load_spec(cfg.spec)
    resolved = cfg.model_copy(update={"spec": spec.model_dump(mode="json", by_alias=True)})
    opts: dict[str, Any] = {
        "allow_pickle": cfg.allow_pickle,
        "trust_remote_code": cfg.trust_remote_code,
        "extra_files": {CONFIG_FILE: config_yaml(resolved)},  # inside the atomic output, like the report
    }
    if cfg.finetuned is not None:
        check_finite = not cfg.skip_finite_check
        report = apply_checkpoint(
            cfg.base, cfg.finetuned, cfg.out, spec, cfg.overwrite, check_finite=check_finite, **opts
        )
    elif cfg.resolved_format == "merged":
        assert cfg.adapter is not None
        report = apply_adapter_merged(
            cfg.base, cfg.adapter, cfg.out, spec, cfg.overwrite, cfg.max_shard_size, **opts
        )
    else:
        assert cfg.adapter is not None
        report = apply_adapter(cfg.base, cfg.adapter, cfg.out, spec, cfg.overwrite, **opts)
    return report


def _check_out_is_not_an_input(cfg: ApplyConfig) -> None:
    """--overwrite must never replace (or hold, or write inside) one of the inputs: the rule of every verb."""
    stage.check_apart(cfg.out, {name: getattr(cfg, name) for name in ("base", "adapter", "finetuned")})


callable_package(__name__, apply)
