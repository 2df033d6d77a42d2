"""`EvalConfig`: the typed schema of `taia eval [CONFIG.yaml] [key=value ...]`.

Exercised by `taia eval --model M --adapter A --variants base,vanilla,taia --tasks gsm8k,csqa --out DIR`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taia.config import comma_lists, distinct_items

# Keys that change what a stored sample's answer means; a results dir refuses to mix them.
IDENTITY = (
    "model",
    "adapter",
    "finetuned",
    "protocol",
    "metric_mode",
    "chat_template",
    "max_new_tokens",
    "backend",
)


class EvalOptions(BaseModel):
    """How questions are asked, answered and scored: shared by `taia eval` and `taia search`."""

    model_config = ConfigDict(extra="forbid")
    protocol: Literal["paper", "standard"] = "standard"
    metric_mode: Literal["strict", "flexible", "lenient"] = "strict"
    backend: Literal["hf", "vllm"] = "hf"
    batch_size: int = Field(16, gt=0)
    max_new_tokens: int | None = Field(None, gt=0)  # None: each task's own budget
    data_dir: str | None = None
    chat_template: str | None = None
    seed: int = 0
    trust_remote_code: bool = False
    allow_pickle: bool = False  # .bin weights, loaded with weights_only=True (as in `taia apply`)
    overwrite: bool = False

    def load_options(self) -> dict[str, bool]:
        """The pickle rule and remote-code choice, as `taia.check.check_inputs` takes them."""
        return {"allow_pickle": self.allow_pickle, "trust_remote_code": self.trust_remote_code}


class EvalConfig(EvalOptions):
    """`taia eval`: a model (+ adapter or fine-tune) → variants × tasks → per-sample JSONL + results.json."""

    model: str = "smollm2-135m-instruct"
    adapter: str | None = None
    finetuned: str | None = None
    variants: list[str] = ["base", "vanilla", "taia"]
    tasks: list[str]
    out: str
    limit: int | None = Field(None, gt=0)
    harness: Literal["taia", "lm-eval"] = "taia"
    lm_eval_include: str | None = None  # extra lm-eval task YAMLs (lm-eval's --include_path)

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        """`tasks: gsm8k,csqa` and `variants: base,taia` as comma-separated strings too."""
        return comma_lists(data, ("tasks", "variants"))

    @field_validator("tasks", "variants")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        return distinct_items(v) or []

    @model_validator(mode="after")
    def _one_source(self) -> EvalConfig:
        if self.adapter is not None and self.finetuned is not None:
            raise ValueError("give at most one of adapter (a PEFT LoRA dir) or finetuned (a full checkpoint)")
        return self

    def identity(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in IDENTITY}
