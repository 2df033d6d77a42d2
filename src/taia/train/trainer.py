"""`taia.train(cfg)`: data mix → chat-templated rows → TRL SFTTrainer on a PEFT / MoLoRA / full model.

Output dir (`out`):
    adapter_config.json + adapter_model.safetensors   LoRA / TOA / TOF / MoLoRA attention (PEFT format)
    molora.safetensors + molora_config.json            MoLoRA FFN experts and routers (dropped by TAIA)
    model*.safetensors + config.json                   full fine-tuning (consolidated)
    tokenizer files, taia_train.yaml (resolved config, written first), loss.jsonl (one line per log step),
    taia_train.json (written last: data manifest, what was trained, the processes that trained it,
                    steps, loss, tokens/s, versions)
    checkpoints/                                       Trainer checkpoints while running (for resume=true);
                                                       with `regularize:` each also holds θ0 / F

Exercised by `taia train cfg.yaml` and tests/test_train.py; launched in several processes (torchrun,
accelerate launch) by tests/test_distributed.py.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from taia.chat import set_chat_template
from taia.check import check_inputs
from taia.config import changed_keys
from taia.data.mixing import mix
from taia.errors import TaiaError
from taia.io import lock, memory, stage
from taia.io.hf import resolve_dir
from taia.io.rows import data_root
from taia.provenance import versions
from taia.train import callbacks, checkpoints, distributed, regularize
from taia.train.chat import Prepared, check_rows, prepare
from taia.train.config import TrainConfig
from taia.train.model import build, load_base

CONFIG = "taia_train.yaml"
RESULT = "taia_train.json"
LOSS = "loss.jsonl"
CHECKPOINTS = "checkpoints"
_RUN_KEYS = ("resume", "overwrite")  # may differ between a run and its resumption


@lock.holding
def train(cfg: TrainConfig) -> dict[str, Any]:
    """Train as configured and return the report also written to `out/taia_train.json`."""
    distributed.preflight()
    state = distributed.process_state()  # one per launched process; a no-op state without a launcher
    out = Path(cfg.out)
    resuming = check_out(cfg, out)
    state.wait_for_everyone()  # every process has read `out` before the main one writes to it
    model_dir, mixture, tokenizer, prepared = _inputs(cfg, out)
    extras = _checkpoint_extras(cfg)
    if state.is_main_process:
        _fresh_out(cfg, out, resuming)  # only now that the inputs are known to be good (resume: locked)
    resume_from = None
    if resuming:  # after the lock: an incomplete newest checkpoint may be removed here
        resume_from = checkpoints.resume_point(out / CHECKPOINTS, extras, state.is_main_process)
    state.wait_for_everyone()
    from transformers import set_seed

    set_seed(cfg.seed)  # LoRA / expert initialisation is part of the seeded run
    memory.map_large_allocations()  # freed activations leave the RSS instead of fragmenting the heap
    model, trained = build(cfg, load_base(model_dir, **cfg.load_options()))
    trainer = make_trainer(cfg, out, model, tokenizer, prepared)
    if resume_from and cfg.method == "molora":
        callbacks.restore_molora(model, resume_from)
    if resume_from and cfg.regularize is not None:
        regularize.restore(trainer.regularizer, resume_from)  # θ0 / F of the run's start, not recomputed
    start = time.perf_counter()
    with checkpoints.writing(out / CHECKPOINTS, extras, state.is_main_process):
        result = trainer.train(resume_from_checkpoint=resume_from)
        seconds = time.perf_counter() - start
        trainer.save_model(str(out))  # every process: ZeRO-3 / FSDP gather the consolidated weights here
    report: dict[str, Any] = {}
    if trainer.is_world_process_zero():  # exactly one process writes the rest of the output
        report = _report(cfg, model_dir, mixture.manifest, prepared, trained, trainer, result, seconds)
        _write_output(cfg, out, model, trainer, report)
    state.wait_for_everyone()  # the others wait here until the main process has written it
    return report


def _inputs(cfg: TrainConfig, out: Path) -> tuple[Path, Any, Any, Prepared]:
    """Every input checked before anything is written: the base (pickle rule, truncation, config), the
    data, the chat template on the rows, max_length against the prompts, the SFTConfig from trainer_args."""
    batch_plan(cfg, distributed.world_size())
    model_dir = check_inputs(
        cfg.model, allow_pickle=cfg.allow_pickle, trust_remote_code=cfg.trust_remote_code
    ).base_dir
    mixture = mix(cfg.data, data_root(cfg.data_dir), cfg.seed, cfg.limit)
    tokenizer = load_tokenizer(cfg, model_dir)
    template = f"the chat template of {cfg.tokenizer or model_dir}"
    if cfg.chat_template:  # a file's path, or the start of an inline template
        given = cfg.chat_template
        short = given if len(given) <= 60 or Path(given).is_file() else given[:60] + "…"
        template = f"chat_template={short!r}"
    check_rows(mixture.conversations, tokenizer, cfg.max_length, template)
    prepared = prepare(mixture.conversations, tokenizer)
    try:
        sft_config(cfg, out, prepared)  # built again by make_trainer; here only for its refusals
    except (TypeError, ValueError) as e:
        given = f" (trainer_args: {', '.join(cfg.trainer_args)})" if cfg.trainer_args else ""
        raise TaiaError(f"invalid training arguments{given}: {e}") from None
    return model_dir, mixture, tokenizer, prepared


def _checkpoint_extras(cfg: TrainConfig) -> tuple[str, ...]:
    """taia's own files in every checkpoint (written beside the Trainer's), without which resume fails."""
    from taia.molora import CONFIG_FILE, WEIGHTS_FILE

    molora = (WEIGHTS_FILE, CONFIG_FILE) if cfg.method == "molora" else ()
    return molora + ((regularize.FILE,) if cfg.regularize is not None else ())


def _write_output(cfg: TrainConfig, out: Path, model: Any, trainer: Any, report: dict[str, Any]) -> None:
    if cfg.method == "molora":
        from taia.molora import save_molora

        save_molora(model, out, cfg.molora)
    callbacks.write_loss_log(out / LOSS, trainer.state.log_history)
    if not cfg.keep_checkpoints:
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    (out / RESULT).write_text(json.dumps(report, indent=2) + "\n")


_OUTPUT = stage.OutputKind(
    config=CONFIG,
    foreign="{out} is not a taia training run (" + CONFIG + " missing); pick another out",
    changed="cannot resume {out}: the config changed in {keys}",
    finished=(RESULT, "{out} holds a finished training run; set overwrite=true to train again"),
    needs_resume=(
        "{out} holds an unfinished run; set resume=true to continue it or overwrite=true to start over"
    ),
)


def check_out(cfg: TrainConfig, out: Path) -> bool:
    """Check `out` against overwrite / resume without writing anything; True when resuming a run there."""
    inputs = {"model": cfg.model, "tokenizer": cfg.tokenizer, "data": [d.path for d in cfg.data]}
    decision = stage.decide(
        out, _OUTPUT, lambda old: changed_keys(old, cfg, _RUN_KEYS), cfg.overwrite, cfg.resume, inputs
    )
    return decision == "resume"


def _fresh_out(cfg: TrainConfig, out: Path, resuming: bool) -> None:
    if resuming:  # the run there continues: locked, not prepared again
        lock.acquire(out)
        return
    stage.prepare(out, CONFIG, cfg, "overwrite" if cfg.overwrite else "fresh")


def load_tokenizer(cfg: TrainConfig, model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    source = resolve_dir(cfg.tokenizer) if cfg.tokenizer else model_dir
    tokenizer = AutoTokenizer.from_pretrained(str(source), trust_remote_code=cfg.trust_remote_code)
    set_chat_template(tokenizer, cfg.chat_template, str(source))
    return tokenizer


def batch_plan(cfg: TrainConfig, world_size: int) -> tuple[int, int]:
    """(per-device micro batch, accumulation steps) whose product over all processes is `batch_size`."""
    micro = min(cfg.micro_batch_size, max(1, cfg.batch_size // world_size))
    accumulation, rest = divmod(cfg.batch_size, micro * world_size)
    if rest or accumulation == 0:
        raise TaiaError(
            f"batch_size={cfg.batch_size} is not a multiple of "
            f"micro_batch_size={micro} × {world_size} processes"
        )
    return micro, accumulation


def sft_config(cfg: TrainConfig, out: Path, prepared: Prepared) -> Any:
    import torch
    from trl import SFTConfig

    micro, accumulation = batch_plan(cfg, distributed.world_size())
    options: dict[str, Any] = {
        "save_strategy": "steps", "save_steps": cfg.save_steps, "save_total_limit": 2,
        "logging_steps": cfg.logging_steps, "report_to": "none", "weight_decay": cfg.weight_decay,
        "activation_checkpointing": cfg.activation_checkpointing,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "dataloader_pin_memory": torch.cuda.is_available(),
        **distributed.trainer_options(cfg.trainer_args),
        **cfg.trainer_args,
    }  # fmt: skip
    return SFTConfig(
        output_dir=str(out / CHECKPOINTS),
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        max_length=cfg.max_length,
        packing=cfg.packing,
        seed=cfg.seed,
        data_seed=cfg.seed,
        completion_only_loss=prepared.completion_only_loss,
        assistant_only_loss=prepared.assistant_only_loss,
        **options,
    )


def make_trainer(cfg: TrainConfig, out: Path, model: Any, tokenizer: Any, prepared: Prepared) -> Any:
    from datasets import Dataset

    trainer_cls = callbacks.molora_trainer(cfg.molora.aux_loss_coef) if cfg.method == "molora" else None
    from trl import SFTTrainer

    cls = trainer_cls or SFTTrainer
    if cfg.regularize is not None:
        cls = regularize.regularized_trainer(cls)  # composes with MoLoRA's aux loss
    cbs: list[Any] = [callbacks.LossLog(out / LOSS)]
    if cfg.method == "molora":
        cbs.append(callbacks.MoLoraCheckpoints(model, cfg.molora))
    trainer = cls(
        model=model,
        args=sft_config(cfg, out, prepared),
        train_dataset=Dataset.from_list(prepared.rows),
        processing_class=tokenizer,
        callbacks=cbs,
    )
    distributed.check_processes(trainer)
    distributed.announce(trainer.args)
    if cfg.regularize is not None:
        regularize.attach(trainer, cfg.regularize)  # θ0 (and EWC's Fisher) from the untrained model
    return trainer


def _report(
    cfg: TrainConfig,
    model_dir: Path,
    manifest: dict[str, Any],
    prepared: Prepared,
    trained: dict[str, Any],
    trainer: Any,
    result: Any,
    seconds: float,
) -> dict[str, Any]:
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    tokens = next((e["num_tokens"] for e in reversed(trainer.state.log_history) if "num_tokens" in e), None)
    return {
        "kind": "train",
        "variant": cfg.variant,
        "model": str(model_dir),
        "data": manifest,
        "masking": prepared.masking,
        "trained": trained,
        "distributed": distributed.describe(trainer.args),
        "regularize": regularize.report(trainer),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds, 1) if tokens and seconds > 0 else None,
        "versions": versions(("trl", "accelerate", "datasets")),
    }
