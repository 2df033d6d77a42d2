"""Multi-process `taia train`: data parallelism through the Trainer's own accelerate / DDP support.

    torchrun --nproc_per_node 2 -m taia.cli train cfg.yaml
    accelerate launch --multi_gpu --num_processes 2 -m taia.cli train cfg.yaml

A launcher starts one process per device and sets WORLD_SIZE / RANK / LOCAL_RANK. On a machine with no
accelerator, accelerate only treats those processes as one job when it is told to run on the CPU
(`PartialState(cpu=True)`, the Trainer's `use_cpu`): otherwise it opens the process group but reports
"no distribution", and every process trains its own copy with no gradient sync (transformers' warning
"process group is initialized, but parallel_mode != ParallelMode.DISTRIBUTED"). This module makes that
choice once, for both the early state that guards `out` and the trainer, and refuses a run whose trainer
does not see every launched process. accelerate shards (FSDP, DeepSpeed) only across accelerators: such a
launch on CPU processes would quietly become plain DDP, so it is refused before anything is written.

Exercised by tests/test_distributed.py (torchrun and accelerate launch, 2 processes over gloo).
"""

from __future__ import annotations

import os
from typing import Any

from taia.errors import TaiaError


def world_size() -> int:
    """Processes the launcher started (torchrun / accelerate launch set WORLD_SIZE); 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def on_cpu() -> bool:
    """True for a multi-process launch on a machine without an accelerator: the gloo / CPU route."""
    import torch

    if world_size() == 1:
        return False
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6; CUDA is what older ones know
    return not (accelerator.is_available() if accelerator is not None else torch.cuda.is_available())


def process_state() -> Any:
    """accelerate's per-process state (created once; the Trainer's own setup re-creates it the same way)."""
    from accelerate import PartialState

    return PartialState(cpu=on_cpu())


def trainer_options(trainer_args: dict[str, Any]) -> dict[str, Any]:
    """SFTConfig options that make the Trainer join the launched processes (the user's `trainer_args` win)."""
    return {"use_cpu": True} if on_cpu() and "use_cpu" not in trainer_args else {}


_SHARDING = {"FSDP": "ACCELERATE_USE_FSDP", "DeepSpeed": "ACCELERATE_USE_DEEPSPEED"}


def requested_sharding() -> str | None:
    """FSDP / DeepSpeed when an `accelerate launch` config asked for it, else None."""
    return next((k for k, flag in _SHARDING.items() if os.environ.get(flag, "").lower() == "true"), None)


def preflight() -> None:
    """Refuse, before anything is written, a launch accelerate would quietly run as something else:
    FSDP / DeepSpeed on CPU processes become plain DDP (accelerate shards only across accelerators)."""
    sharding = requested_sharding()
    if sharding and on_cpu():
        raise TaiaError(
            f"the accelerate config asks for {sharding}, which accelerate runs only on GPUs (or other "
            "accelerators); on CPU processes use a multi-process launch without it (plain DDP)"
        )


def check_processes(trainer: Any) -> None:
    """Refuse a trainer that does not do what the launcher asked: processes that would each train alone,
    or a requested FSDP / DeepSpeed that did not attach."""
    args = trainer.args
    if args.world_size != world_size():
        raise TaiaError(
            f"the launcher started {world_size()} processes but the trainer sees {args.world_size} "
            f"({args.parallel_mode}); each would train alone: check the launcher / trainer_args.use_cpu"
        )
    sharding = requested_sharding()
    enabled = {"FSDP": trainer.is_fsdp_enabled, "DeepSpeed": trainer.is_deepspeed_enabled}
    if sharding and not enabled[sharding]:
        raise TaiaError(
            f"the launcher asked for {sharding}, but the trainer runs {describe(args)['distributed_type']}"
        )


def announce(args: Any) -> None:
    """One line per process of a multi-process run, so that a log shows every rank joined."""
    if args.world_size > 1:
        info = describe(args)
        print(
            f"taia: process {args.process_index}/{args.world_size} "
            f"({info['distributed_type']}, {info['backend']})",
            flush=True,
        )


def describe(args: Any) -> dict[str, Any]:
    """What taia_train.json records about the processes that trained."""
    state = args.distributed_state
    return {
        "processes": args.world_size,
        "distributed_type": state.distributed_type.value if state is not None else "NO",
        "backend": state.backend if state is not None else None,
        "per_device_batch": args.per_device_train_batch_size,
        "accumulation": args.gradient_accumulation_steps,
    }
