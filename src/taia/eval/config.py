"""`EvalConfig`: the typed schema of `taia eval [CONFIG.yaml] [key=value ...]`.

Exercised by `taia eval --model M --adapter A --variants base,vanilla,taia --tasks gsm8k,csqa --out DIR`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taia.config import OneFineTune, comma_lists, distinct_items
from taia.registry import did_you_mean

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
    protocol: Literal["paper", "standard"] = Field(
        "standard", description="prompt protocol: the paper's prompts, or the model's chat template"
    )
    metric_mode: Literal["strict", "flexible", "reference"] = Field(
        "strict", description="how an answer is extracted from generated text (reference: the paper's code)"
    )
    backend: Literal["hf", "vllm"] = Field("hf", description="inference backend")
    batch_size: int = Field(16, gt=0, description="prompts per batch")
    max_new_tokens: int | None = Field(None, gt=0, description="generation budget (default: each task's own)")
    data_dir: str | None = None
    chat_template: str | None = None
    seed: int = 0
    trust_remote_code: bool = False
    allow_pickle: bool = False  # .bin weights, loaded with weights_only=True (as in `taia apply`)
    overwrite: bool = Field(False, description="delete --out first")

    @field_validator("metric_mode", mode="before")
    @classmethod
    def _renamed(cls, v: Any) -> Any:
        # refused rather than aliased: `reference` gives other verdicts than the old substring rules did
        if v == "lenient":
            raise ValueError(
                "'lenient' was renamed to 'reference' (the reference code's rules, task by task)"
            )
        return v

    def load_options(self) -> dict[str, bool]:
        """The pickle rule and remote-code choice, as `taia.check.check_inputs` takes them."""
        return {"allow_pickle": self.allow_pickle, "trust_remote_code": self.trust_remote_code}


class EvalConfig(EvalOptions, OneFineTune):
    """`taia eval`: a model (+ adapter or fine-tune) → variants × tasks → per-sample JSONL + results.json."""

    FINE_TUNE_REQUIRED: ClassVar[bool] = False  # the base alone: `taia eval --variants base`

    model: str = Field("smollm2-135m-instruct", description="base model: named, local dir or hub id")
    adapter: str | None = None
    finetuned: str | None = None
    variants: list[str] = Field(["base", "vanilla", "taia"], description="presets or spec YAML files")
    tasks: list[str] = Field(
        description="task names (gsm8k, csqa, mmlu, persona, ...) or task YAML files, comma-separated"
    )
    out: str = Field(description="results dir (re-running resumes)")
    limit: int | dict[str, int] | None = Field(
        None, description="a seeded subset of at most N samples per task, or '{persona: 100, csqa: 300}'"
    )
    harness: Literal["taia", "lm-eval"] = Field("taia", description="taia's own tasks, or lm-eval's")
    lm_eval_include: str | None = Field(
        None, description="extra lm-eval task YAMLs (lm-eval's --include_path)"
    )
    # Task `persona` (kind adoption): what marks the fine-tune's persona in an answer — a regex, or the
    # signature of these training files' answers; neither: the fine-tune's own taia_train.yaml data.
    persona_pattern: str | None = Field(None, description="task persona: a regex that marks the persona")
    persona_data: list[str] = Field(
        [], description="task persona: training files whose answers' signature marks the persona"
    )

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        """`tasks: gsm8k,csqa` and `variants: base,taia` as comma-separated strings too."""
        return comma_lists(data, ("tasks", "variants", "persona_data"))

    @field_validator("tasks", "variants")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        return distinct_items(v) or []

    @field_validator("limit")
    @classmethod
    def _positive(cls, v: int | dict[str, int] | None) -> int | dict[str, int] | None:
        if any(n < 1 for n in ([v] if isinstance(v, int) else (v or {}).values())):
            raise ValueError(f"a limit must be at least 1, got {v}")
        return v

    @model_validator(mode="after")
    def _one_limit_for_lm_eval(self) -> EvalConfig:
        # Refused here, before an out dir is written or a model loaded: lm-eval takes one limit.
        if self.harness == "lm-eval" and isinstance(self.limit, dict):
            raise ValueError("--harness lm-eval takes one limit for every task, not a limit per task")
        return self

    def limit_for(self, task: str) -> int | None:
        """This task's limit; a per-task limit may name the task or one of its aliases."""
        if not isinstance(self.limit, dict):
            return self.limit
        named = [n for n in self.limit if _names(n, task)]
        return self.limit[named[0]] if named else None

    def check_limit(self, tasks: Iterable[str]) -> None:
        """Refuse a per-task limit that names none of `tasks` (nor an alias of one): a typo would
        otherwise silently evaluate the full set."""
        if not isinstance(self.limit, dict):
            return
        known = list(dict.fromkeys(tasks))
        for name in self.limit:
            if not any(_names(name, t) for t in known):
                raise did_you_mean(name, known, "task in limit")

    def identity(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in IDENTITY}


def _names(name: str, task: str) -> bool:
    """Whether a limit key `name` names `task`: the task itself, or an alias of its (base) task."""
    from taia.eval.tasks import TASKS

    if name == task:
        return True
    base = task.partition(":")[0]
    canonical = TASKS.get(base).name if base in TASKS else task
    return name in TASKS and TASKS.get(name).name == canonical
