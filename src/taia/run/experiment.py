"""`ExperimentConfig`: one YAML for a whole experiment — train (or a given fine-tune) → variants → eval.

    name: table2-smollm2
    out: runs/table2-smollm2
    model: smollm2-135m-instruct
    train: {data: [alpaca_gpt4/alpaca_en_demo.json], method: lora, batch_size: 16}  # or adapter: / finetuned:
    eval: {tasks: [gsm8k, csqa], variants: [base, vanilla, taia, taif], limit: 300}

The `train` and `eval` sections are `taia train` / `taia eval` configs without the keys the experiment
fills in (model, out, adapter, finetuned); both are validated in full before any stage runs, so a bad key
fails at once with its path. Exercised by `taia run EXPERIMENT.yaml`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taia.config import one_line
from taia.eval.config import EvalConfig
from taia.train.config import TrainConfig

_MODELS: dict[str, type[BaseModel]] = {"train": TrainConfig, "eval": EvalConfig}
C = TypeVar("C")
_FILLED = {"train": ("model", "out"), "eval": ("model", "adapter", "finetuned", "out")}


class ExperimentConfig(BaseModel):
    """`taia run`: the whole experiment in one file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("experiment", description="the experiment's name, shown in its report")
    out: str = Field(description="the run dir")
    model: str = Field("smollm2-135m-instruct", description="base model: named, local dir or hub id")
    train: dict[str, Any] | None = Field(
        None, description="a `taia train` config without model and out (or give adapter / finetuned)"
    )
    adapter: str | None = None
    finetuned: str | None = None
    eval: dict[str, Any] = Field(description="a `taia eval` config without model, adapter, finetuned and out")
    report_html: bool = Field(True, description="write report.html beside report.md")

    @field_validator("train", "eval")
    @classmethod
    def _no_filled_keys(cls, v: dict[str, Any] | None, info: Any) -> dict[str, Any] | None:
        taken = [k for k in _FILLED[info.field_name] if v and k in v]
        if taken:
            raise ValueError(f"{taken[0]!r} is set by the experiment (top level), not in {info.field_name}:")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ExperimentConfig:
        given = [k for k in ("train", "adapter", "finetuned") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of train: (a section), adapter: or finetuned:")
        # Both sections are validated now (each built once), so a bad key fails before any work.
        train = _section("train", self.train_config)
        ec = _section("eval", lambda: self._eval_config(*self._fine_tune(train)))
        _check_router(ec)
        _check_tasks(ec)
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    def train_config(self) -> TrainConfig | None:
        if self.train is None:
            return None
        return TrainConfig.model_validate(
            {**self.train, "model": self.model, "out": str(self.run_dir / "train")}
        )

    def fine_tune(self) -> tuple[str | None, str | None]:
        """(adapter, finetuned) the evaluation uses: given, or what the train stage writes."""
        return self._fine_tune(self.train_config())

    def _fine_tune(self, train: TrainConfig | None) -> tuple[str | None, str | None]:
        if train is None:
            return self.adapter, self.finetuned
        return (None, train.out) if train.method == "full" else (train.out, None)

    def eval_config(self) -> EvalConfig:
        return self._eval_config(*self.fine_tune())

    def _eval_config(self, adapter: str | None, finetuned: str | None) -> EvalConfig:
        data = {**self.eval, "model": self.model, "adapter": adapter, "finetuned": finetuned}
        return EvalConfig.model_validate({**data, "out": str(self.run_dir / "eval")})


def _section(section: str, build: Callable[[], C]) -> C:
    """A section's config, built; its errors named with the section (`eval.tasks: …`)."""
    try:
        return build()
    except ValidationError as e:
        parts = one_line(e, _MODELS[section]).split("; ")
        raise ValueError("; ".join(f"{section}.{part}" for part in parts)) from None


def _check_tasks(ec: EvalConfig) -> None:
    """Unknown tasks and malformed task files fail now, not after training."""
    from taia.errors import TaiaError
    from taia.eval.tasks import task_keys

    if ec.harness == "taia":
        try:
            task_keys(ec.tasks)
        except TaiaError as e:
            raise ValueError(f"eval.tasks: {e}") from None


def _check_router(ec: EvalConfig) -> None:
    """`loracl` without base or vanilla (or on lm-eval / vLLM) fails now, not after training."""
    from taia.errors import TaiaError
    from taia.eval.loracl import ROUTER, check

    if ROUTER in ec.variants:
        try:
            check(ec)
        except TaiaError as e:
            raise ValueError(f"eval.variants: {e}") from None
