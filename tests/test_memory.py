"""Memory of the main job: freed blocks leave the RSS (io/memory.py), and the activation checkpointing
`taia quickstart` trains with leaves the loss and every gradient as they are without it."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_model

SRC = Path(__file__).resolve().parents[1] / "src"

# 200 blocks of 1 MiB freed, the last kept: it pins the heap's top, so a heap-served run cannot give the
# others back; a 4 MiB block freed first raises glibc's dynamic threshold as a training step does.
_FRAGMENT = """
import sys; sys.path.insert(0, sys.argv[1])
from taia.io import memory
def rss():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024
fixed = memory.map_large_allocations() if sys.argv[2] == "fixed" else False
big = b"x" * (4 << 20); del big
before = rss()
blocks = [b"x" * (1 << 20) for _ in range(200)]
keep = blocks[-1]; del blocks
if sys.argv[2] == "release":
    memory.release()
print(fixed, rss() - before)
"""


def _retained(mode: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", _FRAGMENT, str(SRC), mode], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    fixed, mib = out.stdout.split()
    return fixed, float(mib)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_blocks_leave_the_rss_once_large_allocations_are_mapped():
    fixed, retained = _retained("fixed")
    assert fixed == "True"
    assert retained < 20  # MiB of the 199 MiB freed
    control, kept = _retained("default")  # the same run on glibc's default threshold keeps them
    assert control == "False"
    assert kept > 150


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_release_gives_a_fragmented_heap_back():
    assert _retained("release") == ("False", pytest.approx(0, abs=20))


def _loss_and_grads(checkpointing: bool) -> tuple[float, dict[str, torch.Tensor]]:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        tiny_model("llama"),
        LoraConfig(
            r=4,
            lora_alpha=8,
            lora_dropout=0.3,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
            init_lora_weights=False,  # B ≠ 0, so that A's gradients are not all zero
        ),
    )
    if checkpointing:  # what taia.train.model.build and the Trainer do for activation_checkpointing
        model.enable_input_require_grads()
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    torch.manual_seed(5)  # the LoRA dropout masks: recomputation must draw the same ones
    ids = torch.randint(0, 128, (3, 20))
    labels = ids.clone()
    labels[:, :8] = -100
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss), grads


def test_activation_checkpointing_keeps_loss_and_gradients():
    loss, grads = _loss_and_grads(False)
    loss_ckpt, grads_ckpt = _loss_and_grads(True)
    assert loss_ckpt == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 0
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-5, atol=1e-7, msg=name)
        assert grad.abs().sum() > 0, name


def test_quickstart_trains_with_activation_checkpointing():
    text = (resources.files("taia.run") / "quickstart.yaml").read_text()
    assert yaml.safe_load(text)["train"]["activation_checkpointing"] is True
