"""`SearchConfig`: the typed schema of `taia search [CONFIG.yaml] [key=value ...]`.

    taia search --base smollm2-135m-instruct --adapter runs/x/train --dev-task csqa --dev-limit 100 \\
        --test-tasks csqa,mmlu --out runs/x/search

The grid is λ_attn × λ_ffn × (FFN kept on the first `depth` share of the layers) × (norms, embeddings and
head from the base or from the fine-tune). Exercised by tests/test_search.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taia.config import OneFineTune, comma_lists, distinct_items
from taia.eval.config import EvalConfig, EvalOptions

Rest = Literal["base", "finetuned"]


class Grid(BaseModel):
    """The candidate specs: every combination, minus the ones that are the same model (see grid.py)."""

    model_config = ConfigDict(extra="forbid")
    attn: list[float] = [0.0, 0.5, 1.0]
    ffn: list[float] = [0.0, 0.5, 1.0]
    # FFN (experts, router) update kept only on the first ⌈depth·L⌉ decoder layers: the paper's appendix
    # finds early FFN layers the least harmful to keep. 1.0 = every layer.
    ffn_depth: list[float] = [1.0, 0.5, 0.25]
    rest: list[Rest] = ["base", "finetuned"]  # norms, embeddings, LM head

    @field_validator("attn", "ffn")
    @classmethod
    def _lambdas(cls, v: list[float]) -> list[float]:
        if not v or any(not -1.0 <= x <= 2.0 for x in v):
            raise ValueError(f"give at least one λ, each in [-1, 2]; got {v}")
        return sorted(set(v))

    @field_validator("ffn_depth")
    @classmethod
    def _depths(cls, v: list[float]) -> list[float]:
        if not v or any(not 0.0 < x <= 1.0 for x in v):
            raise ValueError(f"give at least one depth, each in (0, 1]; got {v}")
        return sorted(set(v), reverse=True)

    @field_validator("rest")
    @classmethod
    def _rest(cls, v: list[Rest]) -> list[Rest]:
        if not v:
            raise ValueError("give at least one of base, finetuned")
        return list(dict.fromkeys(v))


class SearchConfig(EvalOptions, OneFineTune):
    """`taia search`: pick the spec that scores best on a dev split, then test it on held-out tasks;
    questions are asked and scored as `taia eval` does (`EvalOptions`: protocol, batch_size, …)."""

    base: str = Field("smollm2-135m-instruct", description="base model: named, local dir or hub id")
    adapter: str | None = None
    finetuned: str | None = None
    dev_task: str = Field(description="task whose seeded subset scores the grid")
    dev_limit: int = Field(100, gt=0, description="dev samples")
    test_tasks: list[str] = Field(description="held-out tasks (the dev task's rest allowed)")
    test_limit: int | None = Field(None, gt=0, description="at most N test samples per task")
    test_variants: list[str] = Field(
        default_factory=lambda: ["base", "vanilla", "taia"], description="tested beside the choice"
    )
    grid: Grid = Field(
        Grid(), description="the candidates: {attn: [..], ffn: [..], ffn_depth: [..], rest: [..]}"
    )
    out: str = Field(description="output dir (re-running resumes)")

    @model_validator(mode="before")
    @classmethod
    def _lists(cls, data: Any) -> Any:
        return comma_lists(data, ("test_tasks", "test_variants"))

    @field_validator("test_tasks", "test_variants")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        return distinct_items(v) or []

    def eval_config(self, out: str, tasks: list[str], variants: list[str]) -> EvalConfig:
        """The `taia eval` config of one stage (dev or test) of this search."""
        # `overwrite` is the search's own: it clears OUT, and the stages under it resume
        opts = self.model_dump(include=set(EvalOptions.model_fields) - {"overwrite"})
        source = {"model": self.base, "adapter": self.adapter, "finetuned": self.finetuned}
        return EvalConfig.model_validate({**opts, **source, "tasks": tasks, "variants": variants, "out": out})
