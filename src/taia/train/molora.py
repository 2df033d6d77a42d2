"""MoLoRA, the training side: the load-balancing loss the trainer adds to the LM loss.

The layer and its file format (inject, save, read, load, switch on/off) live in taia.molora, below
`apply/`, `eval/` and `search/`, which need them too. Exercised by `taia train cfg.yaml method=molora` and
tests/test_molora.py.
"""

from __future__ import annotations

import torch
from torch import nn

from taia.molora import molora_modules


def aux_loss(model: nn.Module) -> torch.Tensor | None:
    """Mean load-balancing loss over the MoLoRA modules of the last training forward; None if none."""
    losses = [m.aux_loss for m in molora_modules(model).values() if m.aux_loss is not None]
    if not losses:
        return None
    device = losses[0].device  # modules may sit on different devices when the model is split
    return torch.stack([loss.to(device) for loss in losses]).mean()
