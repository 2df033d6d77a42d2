"""`TrainConfig`: the typed schema of `taia train CONFIG.yaml [key=value ...]`.

Defaults are the paper's (arXiv 2405.20192, §5): LoRA r=16, α=32, dropout 0.05, lr 2e-4 (full fine-tuning
5e-5), one epoch, cosine schedule, 3 % warmup, global batch 128, max length 3072. `method: toa` / `tof` are
shorthands for LoRA trained only on attention / only on the FFN; `method: full` with `only: attn|ffn` is the
same ablation as frozen full fine-tuning. `regularize:` adds the L2-SP or EWC penalty of the paper's
continual-learning baselines (Table 2; see `RegularizeOptions`). Exercised by tests/test_train.py and
tests/test_regularize.py.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taia.data.mixing import DataSource
from taia.molora import MoLoraConfig
from taia.registry import did_you_mean

Method = Literal["lora", "full", "molora"]
Only = Literal["attn", "ffn"]
RegularizeKind = Literal["l2", "ewc"]
_KINDS: list[str] = list(get_args(RegularizeKind))
_SHORTHANDS: dict[str, tuple[str, str]] = {"toa": ("lora", "attn"), "tof": ("lora", "ffn")}
# SFTConfig fields taia sets itself; `trainer_args` may not override them behind the schema's back.
_OWNED = frozenset(
    {
        "output_dir", "learning_rate", "num_train_epochs", "max_steps", "lr_scheduler_type",
        "warmup_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
        "packing", "seed", "data_seed", "completion_only_loss", "assistant_only_loss",
    }
)  # fmt: skip


def _check_type(config: type, key: str, value: Any) -> None:
    """Refuse a trainer_args value that does not fit the SFTConfig field's annotation (TrainingArguments
    checks few itself: a string worker count fails later, in the Trainer). Lax: YAML's 2 fits a float."""
    from pydantic import TypeAdapter, ValidationError

    hint = typing.get_type_hints(config).get(key)
    if hint is None:
        return
    try:
        TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True)).validate_python(value)
    except ValidationError as e:
        error = e.errors()[0]
        raise ValueError(f"trainer_args.{key}={value!r}: {error['msg']}") from None


class LoraOptions(BaseModel):
    """PEFT LoRA hyper-parameters (targets come from the classifier, never from leaf names)."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)


class RegularizeOptions(BaseModel):
    """`regularize:` pull the trainable parameters θ back towards their values θ0 at the start of training.

    θ0 is taken when the trainer is built: the base weights for full fine-tuning, the seeded initial A/B
    (and MoLoRA experts/routers) for adapters. The sums run over every trainable parameter element i:

        l2  (L2-SP):  penalty = (λ/2) · Σ_i (θ_i − θ0_i)²
        ewc:          penalty = (λ/2) · Σ_i F_i · (θ_i − θ0_i)²
                      F_i = (1/N) Σ_n (∂ℓ_n/∂θ_i |θ0)²       (diagonal empirical Fisher)

    λ = `strength`; ℓ_n is the SFT loss of training row n alone (batch size 1: the mean token NLL over
    its assistant tokens, the same masked loss as training, dropout off), over the first N =
    `fisher_samples` rows of the training set. With `fisher_normalize` F is divided by its mean over
    all elements (mean F = 1, so λ has the scale of l2's). The fisher_* options are ignored by l2 (they
    stay in the resolved config so that it reads back unchanged). The penalty is added to each optimizer
    step's loss once and only while training (see taia/train/regularize.py).
    """

    model_config = ConfigDict(extra="forbid")
    kind: RegularizeKind
    strength: float = Field(0.01, gt=0)
    fisher_samples: int = Field(64, gt=0)
    fisher_normalize: bool = False

    @field_validator("kind", mode="before")
    @classmethod
    def _known_kind(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in _KINDS:
            raise ValueError(str(did_you_mean(v, _KINDS, "regularize kind")))
        return v


class TrainConfig(BaseModel):
    """`taia train`: a base model + instruction data → a LoRA adapter, MoLoRA adapter or full checkpoint."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(
        "smollm2-135m-instruct", description="named model (smollm2-135m-instruct), local dir or hub id"
    )
    data: list[DataSource] = Field(description="data file or hub dataset id (repeatable)")
    out: str = Field(description="output dir")
    data_dir: str | None = None
    # `cli_choices`: the toa / tof shorthands are methods too; the validator names them in its errors
    method: Method = Field(
        "lora", description="lora, full, toa, tof or molora", json_schema_extra={"cli_choices": False}
    )
    only: Only | None = Field(None, description="train only this block (LoRA or full)")
    lora: LoraOptions = Field(LoraOptions(), description="LoRA hyper-parameters: {r, alpha, dropout}")
    molora: MoLoraConfig = Field(MoLoraConfig(), description="MoLoRA experts and router")
    regularize: RegularizeOptions | None = Field(
        None, description="L2-SP / EWC penalty: {kind, strength, fisher_samples, fisher_normalize}"
    )  # none by default: plain SFT loss
    lr: float | None = Field(None, gt=0, description="learning rate (default: 2e-4, full: 5e-5)")
    epochs: float = Field(1.0, gt=0, description="passes over the data")
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    batch_size: int = Field(128, gt=0, description="global batch (rows per optimizer step)")
    micro_batch_size: int = Field(4, gt=0, description="rows per forward pass on each process")
    scheduler: str = Field("cosine", description="learning-rate schedule (transformers' names)")
    warmup: float = Field(0.03, ge=0, description="warmup share of all steps")
    weight_decay: float = Field(0.0, ge=0)
    max_length: int = Field(3072, gt=0, description="tokens per row (longer rows are truncated)")
    packing: bool = Field(False, description="pack rows into max_length sequences")
    activation_checkpointing: bool = Field(False, description="recompute activations: less memory, slower")
    limit: int | None = Field(None, gt=0, description="use at most this many training rows")
    seed: int = 42
    logging_steps: int = Field(10, gt=0, description="a loss.jsonl line every this many steps")
    save_steps: float = Field(
        0.1, gt=0, description="a checkpoint every this many steps; < 1: share of all steps"
    )
    keep_checkpoints: bool = Field(False, description="keep checkpoints/ after training")
    chat_template: str | None = None
    tokenizer: str | None = Field(None, description="tokenizer dir or hub id (default: the model's)")
    trust_remote_code: bool = False
    allow_pickle: bool = False  # a .bin-only base, loaded with weights_only=True (as in `taia apply`)
    resume: bool = Field(False, description="continue an interrupted run in --out")
    overwrite: bool = Field(False, description="delete --out and train from scratch")
    trainer_args: dict[str, Any] = Field({}, description="other SFTConfig fields, as a mapping")

    # What other tools (TRL, transformers, LLaMA-Factory) call some of these keys: "did you mean" hints.
    KEY_HINTS: ClassVar[dict[str, str]] = {
        "learning_rate": "lr", "num_train_epochs": "epochs", "lr_scheduler_type": "scheduler",
        "warmup_ratio": "warmup", "per_device_train_batch_size": "micro_batch_size",
        "gradient_checkpointing": "activation_checkpointing", "max_seq_length": "max_length",
        "cutoff_len": "max_length", "model_name_or_path": "model", "output_dir": "out", "dataset": "data",
        "finetuning_type": "method", "lora_rank": "lora.r", "lora_r": "lora.r", "lora_alpha": "lora.alpha",
        "lora_dropout": "lora.dropout",
    }  # fmt: skip

    @field_validator("method", mode="before")
    @classmethod
    def _known_method(cls, v: Any) -> Any:
        known = [*get_args(Method), *_SHORTHANDS]  # toa / tof are rewritten before this runs
        if isinstance(v, str) and v not in known:
            raise ValueError(str(did_you_mean(v, known, "method")))
        return v

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        """`method: toa|tof` → LoRA on one block; a bare path for `data` → one source."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("method") in _SHORTHANDS:
            method, only = _SHORTHANDS[data["method"]]
            if data.get("only") not in (None, only):
                raise ValueError(
                    f"method={data['method']} trains only {only}; it contradicts only={data['only']}"
                )
            data["method"], data["only"] = method, only
        if isinstance(data.get("data"), (str, dict)):
            data["data"] = [data["data"]]
        data["data"] = [{"path": d} if isinstance(d, str) else d for d in data.get("data") or []]
        return data

    @field_validator("data")
    @classmethod
    def _some_data(cls, v: list[DataSource]) -> list[DataSource]:
        if not v:
            raise ValueError("give at least one data source (a file, or a list of {path, count|ratio})")
        return v

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str) -> str:
        from transformers.trainer_utils import SchedulerType

        known = [s.value for s in SchedulerType]
        if v not in known:
            raise ValueError(str(did_you_mean(v, known, "scheduler")))
        return v

    @field_validator("trainer_args")
    @classmethod
    def _known_trainer_args(cls, v: dict[str, Any]) -> dict[str, Any]:
        from trl import SFTConfig

        known = [f.name for f in dataclasses.fields(SFTConfig)]
        for key, value in v.items():
            if key in _OWNED:
                raise ValueError(f"trainer_args.{key} is set by taia; use the top-level option instead")
            if key not in known:
                raise ValueError(str(did_you_mean(key, known, "SFTConfig field")))
            _check_type(SFTConfig, key, value)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.method == "molora" and self.only is not None:
            raise ValueError("molora trains attention (LoRA) and FFN (experts) together; drop `only`")
        if self.resume and self.overwrite:
            raise ValueError("resume=true continues the run in `out`; overwrite=true deletes it: pick one")
        return self

    def load_options(self) -> dict[str, bool]:
        """The pickle rule and remote-code choice, as `taia.check.check_inputs` and `load_base` take them."""
        return {"allow_pickle": self.allow_pickle, "trust_remote_code": self.trust_remote_code}

    @property
    def learning_rate(self) -> float:
        """The paper's lr: 2e-4 for adapters, 5e-5 for full fine-tuning."""
        return self.lr if self.lr is not None else (5e-5 if self.method == "full" else 2e-4)

    @property
    def variant(self) -> str:
        """Human name of what is trained: LoRA, full, MoLoRA, TOA (LoRA), TOF (full), …"""
        kind = {"lora": "LoRA", "full": "full", "molora": "MoLoRA"}[self.method]
        return f"{'TOA' if self.only == 'attn' else 'TOF'} ({kind})" if self.only else kind
