"""Multi-process `taia train` on this CPU: 2 processes over gloo, launched by torchrun and by accelerate.

The slow tests launch real processes (each asserts that both ranks announced themselves) and compare the
per-step logged losses with a single-process run of the same global batch. Why the comparison is valid:
the Trainer's sampler draws one seeded permutation; under DDP accelerate hands out its micro-batches
round-robin (rank r gets micro-batches r, r+2, …), so one optimizer step of 2 processes × micro m ×
accumulation g consumes the same 2g micro-batches as 1 process × micro m × accumulation 2g, and TRL
normalises the loss by the token count of the whole global batch (gathered across processes). The rest is
float summation order: the tolerance is 1e-5 relative (measured: bit-identical LoRA losses, full within
1e-6).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from safetensors.torch import load_file

import taia
from taia.errors import TaiaError
from taia.train import TrainConfig, train
from taia.train import distributed as dist
from test_train import data_file

SRC = str(Path(taia.__file__).resolve().parents[1])
DDP_YAML = str(Path(__file__).resolve().parents[1] / "examples" / "accelerate" / "ddp.yaml")
TOL = 1e-5  # relative, per logged step
BASE = dict(
    batch_size=4, max_steps=4, lr=3e-2, logging_steps=1, max_length=128, warmup=0.0,
    lora={"r": 4, "alpha": 8, "dropout": 0.0},  # dropout off: its RNG draws depend on the batch layout
)  # fmt: skip
no_accelerator = pytest.mark.skipif(torch.accelerator.is_available(), reason="the CPU (gloo) route")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(launcher: str, cfg_file: Path, *overrides: str) -> str:
    """Run `taia train cfg_file overrides` in 2 processes; return their combined output."""
    port = str(_port())
    prefix = {
        "torchrun": ["torch.distributed.run", "--nproc_per_node", "2", "--master_port", port],
        "accelerate": ["accelerate.commands.launch", "--config_file", DDP_YAML, "--main_process_port", port],
    }[launcher]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    cmd = [sys.executable, "-m", *prefix, "-m", "taia.cli", "train", str(cfg_file), *overrides]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    return output


def write_config(tmp_path: Path, model: Path, name: str, **kw) -> tuple[Path, TrainConfig]:
    cfg = TrainConfig.model_validate(
        {"model": str(model), "data": [str(data_file(tmp_path))], "out": str(tmp_path / name), **BASE, **kw}
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path, cfg


def losses(out: str | Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (Path(out) / "loss.jsonl").read_text().splitlines()]


def assert_both_ranks_ran(output: str, out: Path) -> None:
    assert "taia: process 0/2 (MULTI_CPU, gloo)" in output
    assert "taia: process 1/2 (MULTI_CPU, gloo)" in output
    assert output.count(f"wrote {out}") == 1  # one process writes and reports; the other waits
    info = json.loads((out / "taia_train.json").read_text())["distributed"]
    assert info == {
        "processes": 2, "distributed_type": "MULTI_CPU", "backend": "gloo", "per_device_batch": 2,
        "accumulation": 1,
    }  # fmt: skip


def assert_same_losses(a: list[float], b: list[float]) -> None:
    assert len(a) == len(b) == BASE["max_steps"]
    assert all(abs(x - y) <= TOL * abs(y) for x, y in zip(a, b, strict=True)), (a, b)
    assert a[0] != a[-1]  # the model trained


@pytest.mark.slow
@no_accelerator
@pytest.mark.parametrize("method", ["lora", "full", "molora"])
def test_torchrun_equals_one_process_with_the_same_global_batch(tmp_path, chat_model, method):
    model = chat_model("llama")
    extra = {"molora": {"num_experts": 3, "top_k": 1, "r": 2, "dropout": 0.0}} if method == "molora" else {}
    cfg_file, cfg = write_config(tmp_path, model, "ddp", method=method, micro_batch_size=2, **extra)
    output = launch("torchrun", cfg_file)
    out = Path(cfg.out)
    assert_both_ranks_ran(output, out)
    one = cfg.model_copy(update={"out": str(tmp_path / "one")})  # 1 process: micro 2 × accumulation 2
    assert train(one)["distributed"]["accumulation"] == 2
    assert_same_losses(losses(out), losses(one.out))
    files = {"lora": ["adapter_model"], "full": ["model"], "molora": ["adapter_model", "molora"]}[method]
    for name in files:
        a, b = (load_file(str(Path(d) / f"{name}.safetensors")) for d in (out, one.out))
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    if method == "molora":  # the aux loss is logged as the mean over both processes' micro-batches
        aux = [[json.loads(x)["molora_aux_loss"] for x in (Path(d) / "loss.jsonl").read_text().splitlines()]
               for d in (out, one.out)]  # fmt: skip
        assert_same_losses(*aux)
    if method == "full":  # the consolidated checkpoint is what `taia apply --finetuned` reads
        from taia.apply import apply
        from taia.config import ApplyConfig

        rep = apply(ApplyConfig(base=str(model), finetuned=str(out), out=str(tmp_path / "taia")))
        assert (
            rep["groups"]["attn"]["kept"]["tensors"] > 0 and rep["groups"]["ffn"]["reverted"]["tensors"] > 0
        )


@pytest.mark.slow
@no_accelerator
def test_accelerate_launch_with_the_ddp_example_config_runs_two_processes(tmp_path, chat_model):
    cfg_file, cfg = write_config(tmp_path, chat_model("llama"), "acc", micro_batch_size=2)
    output = launch("accelerate", cfg_file)
    assert_both_ranks_ran(output, Path(cfg.out))
    one = cfg.model_copy(update={"out": str(tmp_path / "one"), "micro_batch_size": 4})  # micro 2m, acc 1
    train(one)
    assert_same_losses(losses(cfg.out), losses(one.out))


@pytest.mark.slow
@no_accelerator
def test_torchrun_resume_continues_from_the_last_checkpoint(tmp_path, chat_model):
    cfg_file, cfg = write_config(
        tmp_path, chat_model("llama"), "ddp", micro_batch_size=2, save_steps=2, keep_checkpoints=True
    )
    launch("torchrun", cfg_file)
    out = Path(cfg.out)
    whole = load_file(str(out / "adapter_model.safetensors"))
    # what an interruption after the step-2 checkpoint leaves: no final output, no later checkpoint
    for name in ("taia_train.json", "adapter_model.safetensors", "adapter_config.json"):
        (out / name).unlink()
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    state_file = out / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["log_history"][0]["from_checkpoint"] = True  # shows up in loss.jsonl only if the run resumed
    state_file.write_text(json.dumps(state))
    output = launch("torchrun", cfg_file, "resume=true")
    assert_both_ranks_ran(output, out)
    rows = [json.loads(x) for x in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[0].get("from_checkpoint") is True
    resumed = load_file(str(out / "adapter_model.safetensors"))
    assert all(torch.allclose(whole[k], resumed[k], atol=1e-6) for k in whole)


@no_accelerator
def test_cpu_processes_join_through_use_cpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dist.on_cpu() and dist.trainer_options({}) == {"use_cpu": True}
    assert dist.trainer_options({"use_cpu": False}) == {}  # the user's trainer_args win
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not dist.on_cpu() and dist.trainer_options({}) == {}


@no_accelerator
@pytest.mark.parametrize(
    ("flag", "name"), [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")]
)
def test_sharding_on_cpu_processes_is_refused_before_writing(tmp_path, chat_model, monkeypatch, flag, name):
    """accelerate would quietly run these as plain DDP on CPU processes; taia says so instead."""
    _, cfg = write_config(tmp_path, chat_model("llama"), "fsdp", method="full")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(flag, "true")
    with pytest.raises(TaiaError, match=f"asks for {name}"):
        train(cfg)
    assert not Path(cfg.out).exists()


def _fake_trainer(world_size: int, fsdp: bool = False) -> SimpleNamespace:
    state = SimpleNamespace(distributed_type=SimpleNamespace(value="MULTI_GPU"), backend="nccl")
    args = SimpleNamespace(
        world_size=world_size, parallel_mode="not_parallel", distributed_state=state,
        per_device_train_batch_size=2, gradient_accumulation_steps=1,
    )  # fmt: skip
    return SimpleNamespace(args=args, is_fsdp_enabled=fsdp, is_deepspeed_enabled=False)


def test_a_trainer_that_misses_launched_processes_is_refused(monkeypatch):
    """The failure of issue 14: each launched process would train its own copy."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TaiaError, match="started 2 processes but the trainer sees 1"):
        dist.check_processes(_fake_trainer(1))
    dist.check_processes(_fake_trainer(2))  # joined: fine
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(TaiaError, match="asked for FSDP, but the trainer runs MULTI_GPU"):
        dist.check_processes(_fake_trainer(2))
    dist.check_processes(_fake_trainer(2, fsdp=True))
