"""Trainer hooks for `taia train`: the live loss log, MoLoRA's aux loss and its checkpoint tensors.

Exercised by `taia train cfg.yaml` (loss.jsonl grows as it trains) and tests/test_train.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class LossLog(TrainerCallback):
    """Append every logged training step to a JSONL file, so a long run can be watched (`tail -f`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
        if state.is_world_process_zero and logs and "loss" in logs:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def write_loss_log(path: Path, log_history: list[dict[str, Any]]) -> None:
    """Rewrite the log from the trainer's own history, which a resumed run restores from its checkpoint
    (the live file may hold steps after that checkpoint from the interrupted attempt)."""
    rows = [
        {"step": e["step"], **{k: v for k, v in e.items() if k != "step"}} for e in log_history if "loss" in e
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


class MoLoraCheckpoints(TrainerCallback):
    """Trainer checkpoints of a PEFT model hold only the adapter; put the MoLoRA tensors next to it."""

    def __init__(self, model: Any, config: Any) -> None:
        self.model = model
        self.config = config

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            from taia.molora import save_molora

            save_molora(self.model, Path(args.output_dir) / f"checkpoint-{state.global_step}", self.config)


def restore_molora(model: Any, checkpoint: str) -> None:
    """Load a checkpoint's MoLoRA tensors into the (already injected) model before resuming."""
    from taia.errors import TaiaError
    from taia.molora import molora_state_dict, read_molora_tensors

    found = read_molora_tensors(Path(checkpoint))
    if found is None:
        raise TaiaError(
            f"{checkpoint} has no MoLoRA tensors (molora.safetensors); cannot resume MoLoRA from it"
        )
    mismatch = sorted(molora_state_dict(model).keys() ^ found[1].keys())
    if mismatch:
        raise TaiaError(f"{checkpoint}: MoLoRA tensors do not fit the model (e.g. {mismatch[0]})")
    model.get_base_model().load_state_dict(found[1], strict=False)


def molora_trainer(coef: float) -> type:
    """SFTTrainer whose loss adds `coef` × the MoLoRA load-balancing loss of the same forward."""
    from trl import SFTTrainer

    from taia.train.molora import aux_loss

    class MoLoraTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            aux = aux_loss(model) if model.training else None
            if aux is None:
                return loss
            # As TRL does for MoE aux losses: with num_items_in_batch the Trainer leaves accumulation to us.
            steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
            # the mean over every process's micro-batch, as TRL logs its own MoE aux loss
            self._metrics["train"]["molora_aux_loss"].append(
                self.accelerator.gather_for_metrics(aux.detach()).mean().item()
            )
            if return_outputs:
                return loss[0] + coef * aux / steps, loss[1]
            return loss + coef * aux / steps

    return MoLoraTrainer
