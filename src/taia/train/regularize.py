"""L2-SP and EWC: the continual-learning baselines of TAIA's Table 2, as a penalty on `taia train`'s loss.

    taia train cfg.yaml regularize.kind=l2 regularize.strength=0.01
    taia train cfg.yaml regularize.kind=ewc regularize.strength=100 regularize.fisher_samples=64

Over the trainable parameters θ (LoRA A/B, MoLoRA experts and routers, or the unfrozen base weights) with
their values θ0 when the trainer is built, λ = `strength`:

    l2:   penalty = (λ/2) · Σ_i (θ_i − θ0_i)²                       ∇ = λ · (θ − θ0)
    ewc:  penalty = (λ/2) · Σ_i F_i · (θ_i − θ0_i)²                 ∇ = λ · F · (θ − θ0)
          F_i = (1/N) Σ_n (∂ℓ_n/∂θ_i at θ0)²,   optionally divided by mean(F) (`fisher_normalize`)

ℓ_n is the masked SFT loss (TRL's, the one training minimises) of training row n alone, in eval mode (no
dropout), over the first N = `fisher_samples` rows of the trainer's dataset. Row order is the seeded
shuffle of the mix, so these are a random sample of it; with `packing` a row is a packed sequence.

The penalty is added in `compute_loss` once per optimizer step: each of the k micro-batches of a step adds
penalty/k when the Trainer leaves gradient accumulation to the loss, else the whole penalty (the Trainer
then divides the loss by k itself). It is identical on every rank, so DDP's gradient average keeps it once.
It is logged as `l2_penalty` / `ewc_penalty`; the logged `loss` includes it. Evaluation losses do not.

Memory: θ0 is one more copy of the trainable parameters (their dtype), F one more in fp32, and each
backward holds (θ − θ0) in fp32. Small for adapters; full fine-tuning of a bf16 model keeps 3 more model
sizes for EWC (1 for L2) plus 2 during backward. Sharded parameters (FSDP, DeepSpeed ZeRO-3) are refused.
Resume: θ0 and F are saved as `regularize.safetensors` in every checkpoint and loaded from it.

Exercised by tests/test_regularize.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback

from taia.errors import TaiaError
from taia.train.config import RegularizeOptions

FILE = "regularize.safetensors"
FORMAT = "taia-regularize-v1"
Params = dict[str, nn.Parameter]
Tensors = dict[str, torch.Tensor]


def trainable(model: nn.Module) -> Params:
    """The parameters the optimizer updates, by name (tied weights once)."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def snapshot(params: Params) -> Tensors:
    """θ0: detached copies, on each parameter's device and in its dtype (exact, for the penalty's zero)."""
    return {n: p.detach().clone() for n, p in params.items()}


def penalty(params: Params, theta0: Tensors, strength: float, fisher: Tensors | None = None) -> torch.Tensor:
    """(λ/2) Σ w (θ − θ0)², w = F for EWC and 1 for L2; summed in fp32, differentiable in θ."""
    terms = []
    for name, p in params.items():
        sq = (p - theta0[name]).float().square()  # θ − θ0 in θ's dtype: exact for nearby values
        terms.append((sq if fisher is None else sq * fisher[name]).sum())
    if not terms:
        return torch.zeros(())
    device = terms[0].device
    return 0.5 * strength * torch.stack([t.to(device) for t in terms]).sum()


def estimate_fisher(
    params: Params, loss_fn: Callable[[Any], torch.Tensor], batches: Iterable[Any]
) -> tuple[Tensors, int]:
    """Diagonal empirical Fisher: the mean over `batches` (one example each) of the squared gradient of
    `loss_fn(batch)` w.r.t. each parameter; and how many batches there were."""
    names = list(params)
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    count = 0
    with torch.enable_grad():
        for batch in batches:
            # autograd.grad, not backward: the parameters' .grad (the optimizer's) stays untouched
            grads = torch.autograd.grad(loss_fn(batch), [params[n] for n in names], allow_unused=True)
            for name, g in zip(names, grads, strict=True):
                if g is not None:  # None: the parameter took no part in this example's loss
                    fisher[name].add_(g.detach().float().square())
            count += 1
    for f in fisher.values():
        f.div_(max(count, 1))
    return fisher, count


def normalized(fisher: Tensors) -> Tensors:
    """F / mean(F) over all elements, so that mean F = 1 (λ then has the scale of L2's); all-zero stays."""
    total = sum(float(f.sum()) for f in fisher.values())
    size = sum(f.numel() for f in fisher.values())
    mean = total / size if size else 0.0
    return {n: f / mean for n, f in fisher.items()} if mean > 0 else fisher


@dataclass
class Regularizer:
    """The penalty's state: live parameters, their start values θ0 and (EWC) the Fisher F."""

    options: RegularizeOptions
    params: Params
    theta0: Tensors
    fisher: Tensors | None = None
    fisher_rows: int = 0

    def penalty(self) -> torch.Tensor:
        return penalty(self.params, self.theta0, self.options.strength, self.fisher)

    def tensors(self) -> Tensors:
        """θ0 and F under one flat namespace: what a checkpoint holds."""
        out = {f"theta0.{n}": t for n, t in self.theta0.items()}
        out.update({f"fisher.{n}": t for n, t in (self.fisher or {}).items()})
        return out


def sft_batches(trainer: Any, n: int) -> Iterator[Any]:
    """The first `n` rows of the trainer's (tokenised, masked, packed) dataset, each collated alone."""
    dataset = trainer.train_dataset
    for i in range(min(n, len(dataset))):
        yield trainer._prepare_inputs(trainer.data_collator([dataset[i]]))


def trainer_fisher(trainer: Any, params: Params, n: int) -> tuple[Tensors, int]:
    """The Fisher of `trainer`'s own SFT loss (TRL's compute_loss, no MoLoRA aux loss) at the current θ."""
    from trl import SFTTrainer

    model = trainer.model
    was_training = model.training
    model.eval()  # dropout off: F describes θ0, not one draw of dropout masks
    try:
        loss = lambda batch: SFTTrainer.compute_loss(trainer, model, batch)  # noqa: E731
        return estimate_fisher(params, loss, sft_batches(trainer, n))
    finally:
        model.train(was_training)
        trainer._metrics["eval"].clear()  # TRL files eval-mode forwards under eval metrics; none were evals


def attach(trainer: Any, options: RegularizeOptions) -> Regularizer:
    """Snapshot θ0 (and estimate F) from `trainer.model` as it is now, before any step; hook it in."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    if trainer.is_fsdp_enabled or is_deepspeed_zero3_enabled():
        # each rank would hold and penalise a shard of θ: not implemented
        raise TaiaError("regularize needs whole parameters on each process; FSDP and ZeRO-3 shard them")
    params = trainable(trainer.model)
    if not params:
        raise TaiaError("regularize: the model has no trainable parameters")
    reg = Regularizer(options, params, snapshot(params))
    if options.kind == "ewc":
        fisher, reg.fisher_rows = trainer_fisher(trainer, params, options.fisher_samples)
        reg.fisher = normalized(fisher) if options.fisher_normalize else fisher
    trainer.regularizer = reg
    trainer.add_callback(Checkpoints(reg))
    return reg


def accumulation_divisor(trainer: Any, num_items_in_batch: Any) -> int:
    """k when the Trainer leaves gradient accumulation to the loss (it then does not divide by k), else 1.

    Mirrors transformers' `Trainer.training_step`, so that the k micro-batches of one optimizer step add
    up to the penalty's gradient exactly once."""
    scaled = getattr(trainer, "loss_is_scaled_for_ga", None)
    if scaled is None:
        scaled = (
            trainer.model_accepts_loss_kwargs and num_items_in_batch is not None
        ) or trainer.compute_loss_func is not None
    steps = getattr(trainer, "current_gradient_accumulation_steps", trainer.args.gradient_accumulation_steps)
    return int(steps) if scaled else 1


def regularized_trainer(base: Any) -> type:
    """`base` (SFTTrainer, or the MoLoRA trainer) whose training loss adds `self.regularizer`'s penalty."""

    class RegularizedTrainer(base):
        regularizer: Regularizer | None = None  # set by `attach` once the trainer exists

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            reg = self.regularizer
            if reg is None or not model.training:
                return out
            value = reg.penalty()
            self._metrics["train"][f"{reg.options.kind}_penalty"].append(value.item())
            added = value / accumulation_divisor(self, num_items_in_batch)
            return (out[0] + added, out[1]) if return_outputs else out + added

    RegularizedTrainer.__name__ = RegularizedTrainer.__qualname__ = f"Regularized{base.__name__}"
    return RegularizedTrainer


class Checkpoints(TrainerCallback):
    """Trainer checkpoints hold θ, not θ0 or F; put them next to it so that resume=true can continue."""

    def __init__(self, reg: Regularizer) -> None:
        self.reg = reg

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if state.is_world_process_zero:
            save(self.reg, Path(args.output_dir) / f"checkpoint-{state.global_step}")


def save(reg: Regularizer, directory: Path) -> Path:
    from safetensors.torch import save_file

    path = Path(directory) / FILE
    meta = {"format": FORMAT, "kind": reg.options.kind, "fisher_rows": str(reg.fisher_rows)}
    save_file({k: t.contiguous() for k, t in reg.tensors().items()}, str(path), metadata=meta)
    return path


def restore(reg: Regularizer, checkpoint: str | Path) -> None:
    """Load a checkpoint's θ0 and F into `reg` (in place, on the parameters' devices) before resuming."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(checkpoint) / FILE
    if not path.is_file():
        raise TaiaError(f"{checkpoint} has no {FILE}; cannot resume the regularize={reg.options.kind} run")
    found, want = load_file(str(path)), reg.tensors()
    bad = sorted(k for k in found.keys() | want.keys() if k not in found or k not in want)
    bad += sorted(k for k in found.keys() & want.keys() if found[k].shape != want[k].shape)
    if bad:
        raise TaiaError(f"{path}: θ0/F do not fit the model (e.g. {bad[0]})")
    for key, tensor in want.items():
        tensor.copy_(found[key])
    with safe_open(str(path), "pt") as f:
        reg.fisher_rows = int((f.metadata() or {}).get("fisher_rows", 0))


def report(trainer: Any) -> dict[str, Any] | None:
    """The `regularize` entry of taia_train.json: options, what was penalised, F's scale, final penalty."""
    reg: Regularizer | None = getattr(trainer, "regularizer", None)
    if reg is None:
        return None
    ewc = reg.options.kind == "ewc"
    out: dict[str, Any] = reg.options.model_dump(
        exclude=None if ewc else {"fisher_samples", "fisher_normalize"}
    )
    out["tensors"] = len(reg.params)
    out["elements"] = sum(p.numel() for p in reg.params.values())
    if reg.fisher is not None:
        out["fisher_rows"] = reg.fisher_rows
        out["fisher_mean"] = sum(float(f.sum()) for f in reg.fisher.values()) / max(out["elements"], 1)
        out["fisher_max"] = max(float(f.max()) for f in reg.fisher.values())
    with torch.no_grad():
        out["final_penalty"] = float(reg.penalty())
    return out
