"""`taia train` on tiny in-process models: losses fall, TOA/TOF touch only their block, MoLoRA routers
learn, outputs load in `taia apply` and PEFT, resume continues an interrupted run exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_model
from taia.apply import apply
from taia.classify import model_map
from taia.config import ApplyConfig
from taia.errors import TaiaError
from taia.train import TrainConfig, train

ROWS = [
    {"instruction": "Say hi.", "input": "", "output": "hello there"},
    {"instruction": "Count to three.", "input": "", "output": "1, 2, 3"},
    {"instruction": "Repeat", "input": "abc", "output": "abc abc"},
    {"instruction": "Name a color.", "input": "", "output": "blue"},
]


def data_file(tmp_path: Path, rows: list[dict] = ROWS, repeat: int = 4) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows * repeat))
    return path


def config(tmp_path: Path, model: Path, out: str = "out", **kw) -> TrainConfig:
    opts = dict(
        model=str(model), data=[str(data_file(tmp_path))], out=str(tmp_path / out), batch_size=4,
        micro_batch_size=4, max_steps=6, lr=3e-2, logging_steps=1, max_length=128, warmup=0.0,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
    )  # fmt: skip
    opts.update(kw)
    return TrainConfig.model_validate(opts)


def test_lora_loss_falls_and_output_loads_in_apply_and_peft(tmp_path, chat_model):
    from peft import PeftModel

    cfg = config(tmp_path, chat_model("llama"), max_steps=12)
    report = train(cfg)
    assert report["steps"] == 12 and report["last_loss"] < report["first_loss"] - 0.2
    out = Path(cfg.out)
    assert (out / "adapter_config.json").is_file() and not (out / "checkpoints").exists()
    assert len((out / "loss.jsonl").read_text().splitlines()) == 12
    assert json.loads((out / "taia_train.json").read_text())["data"]["total"] == 16
    peft = PeftModel.from_pretrained(tiny_model("llama"), str(out))
    assert any(n.endswith("lora_B.default.weight") and p.abs().sum() > 0 for n, p in peft.named_parameters())
    rep = apply(ApplyConfig(base=str(chat_model("llama")), adapter=str(out), out=str(tmp_path / "taia")))
    assert rep["groups"]["attn"]["kept"]["tensors"] > 0 and rep["groups"]["ffn"]["reverted"]["tensors"] > 0


@pytest.mark.parametrize(("method", "group"), [("toa", "attn"), ("tof", "ffn")])
def test_lora_toa_tof_adapt_only_their_block(tmp_path, chat_model, method, group):
    cfg = config(tmp_path, chat_model("gpt2"), method=method, max_steps=2)
    train(cfg)
    mm = model_map(chat_model("gpt2"))
    keys = load_file(str(Path(cfg.out) / "adapter_model.safetensors"))
    assert keys and {mm.lookup(k.removeprefix("base_model.model.")).group for k in keys} == {group}


@pytest.mark.parametrize(("only", "groups"), [("attn", {"attn"}), ("ffn", {"ffn"})])
def test_full_toa_tof_change_only_their_block(tmp_path, chat_model, only, groups):
    base_dir = chat_model("llama")
    cfg = config(tmp_path, base_dir, method="full", only=only, max_steps=2)
    train(cfg)
    base = load_file(str(base_dir / "model.safetensors"))
    tuned = load_file(str(Path(cfg.out) / "model.safetensors"))
    mm = model_map(base_dir)
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and {mm.lookup(k).group for k in changed} == groups
    assert all(torch.equal(base[k], tuned[k]) for k in base if mm.lookup(k).group not in groups)


def test_full_output_loads_in_apply(tmp_path, chat_model):
    cfg = config(tmp_path, chat_model("llama"), method="full", max_steps=2)
    report = train(cfg)
    assert report["trained"]["trainable"].keys() >= {"attn", "ffn", "norm", "embed"}
    rep = apply(ApplyConfig(base=str(chat_model("llama")), finetuned=cfg.out, out=str(tmp_path / "t")))
    assert rep["groups"]["attn"]["kept"]["tensors"] > 0


def test_molora_routers_learn_and_taia_drops_them(tmp_path, chat_model):
    from taia.molora import read_molora_tensors

    base_dir = chat_model("llama")
    cfg = config(
        tmp_path, base_dir, method="molora", max_steps=3, molora={"num_experts": 3, "top_k": 2, "r": 2}
    )
    report = train(cfg)
    found = read_molora_tensors(Path(cfg.out))
    assert found is not None
    routers = {k: t for k, t in found[1].items() if k.endswith("router.weight")}
    assert len(routers) == len(report["trained"]["molora_modules"]) == 6  # gate/up/down x 2 layers
    from transformers import set_seed

    from taia.molora import molora_state_dict
    from taia.train.model import build, load_base

    set_seed(cfg.seed)  # rebuild the seeded initial state `train` started from: every router must have moved
    init = molora_state_dict(build(cfg, load_base(base_dir))[0])
    assert all(not torch.equal(init[k], t) for k, t in routers.items())
    assert all(k.startswith("model.layers.") for k in found[1])
    rep = apply(ApplyConfig(base=str(base_dir), adapter=cfg.out, out=str(tmp_path / "taia")))
    assert sum("MoLoRA" in d for d in rep["dropped_modules"]) == 6
    with pytest.raises(TaiaError, match="MoLoRA"):
        apply(ApplyConfig(base=str(base_dir), adapter=cfg.out, out=str(tmp_path / "v"), spec="vanilla"))


class _Interrupt(Exception):
    pass


def test_resume_continues_an_interrupted_run_exactly(tmp_path, chat_model, monkeypatch):
    from transformers import TrainerCallback

    from taia.train import trainer as trainer_mod

    whole = config(tmp_path, chat_model("llama"), out="whole", max_steps=6, save_steps=2)
    train(whole)
    cut = config(tmp_path, chat_model("llama"), out="cut", max_steps=6, save_steps=2)

    class StopAt4(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 4:
                raise _Interrupt

    make = trainer_mod.make_trainer
    monkeypatch.setattr(trainer_mod, "make_trainer", lambda *a: _with(make(*a), StopAt4()))
    with pytest.raises(_Interrupt):
        train(cut)
    monkeypatch.undo()
    with pytest.raises(TaiaError, match="resume=true"):
        train(cut)
    train(cut.model_copy(update={"resume": True}))
    a = load_file(str(Path(whole.out) / "adapter_model.safetensors"))
    b = load_file(str(Path(cut.out) / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [json.loads(x)["step"] for x in (Path(cut.out) / "loss.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def _with(trainer, callback):
    trainer.add_callback(callback)
    return trainer


def test_resume_refuses_a_changed_config(tmp_path, chat_model):
    cfg = config(tmp_path, chat_model("llama"), max_steps=1)
    Path(cfg.out).mkdir()
    (Path(cfg.out) / "taia_train.yaml").write_text("lr: 1.0\n")
    with pytest.raises(TaiaError, match="config changed in"):
        train(cfg.model_copy(update={"resume": True}))


def test_finished_run_is_not_overwritten(tmp_path, chat_model):
    cfg = config(tmp_path, chat_model("llama"), max_steps=1)
    train(cfg)
    with pytest.raises(TaiaError, match="finished"):
        train(cfg)
    assert train(cfg.model_copy(update={"overwrite": True}))["steps"] == 1


def test_seeded_runs_are_identical(tmp_path, chat_model):
    a, b = (config(tmp_path, chat_model("llama"), out=o, max_steps=2) for o in ("a", "b"))
    train(a), train(b)
    ta, tb = (load_file(str(Path(c.out) / "adapter_model.safetensors")) for c in (a, b))
    assert all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize("model_type", ["gpt2", "phi3", "mixtral", "qwen2_moe"])
def test_lora_targets_every_block_and_taia_keeps_only_attention(tmp_path, chat_model, model_type):
    """Classifier-derived targets: fused qkv / gate_up (Phi-3), Conv1D (GPT-2), 3-D experts (MoE)."""
    cfg = config(tmp_path, chat_model(model_type), max_steps=1)
    train(cfg)
    mm = model_map(chat_model(model_type))
    keys = load_file(str(Path(cfg.out) / "adapter_model.safetensors"))
    trained = {mm.lookup(k.removeprefix("base_model.model.")).group for k in keys}
    assert trained >= {"attn", "ffn" if model_type in ("gpt2", "phi3") else "experts"}
    rep = apply(ApplyConfig(base=str(chat_model(model_type)), adapter=cfg.out, out=str(tmp_path / "t")))
    kept = {mm.lookup(p).group for p in rep["kept_modules"]}
    assert kept == {"attn"} and rep["dropped_modules"]


def test_cli_equals_api(tmp_path, chat_model):
    from taia.cli import main

    cfg = config(tmp_path, chat_model("llama"), out="api", max_steps=2)
    train(cfg)
    (tmp_path / "cfg.yaml").write_text(
        cfg.model_copy(update={"out": str(tmp_path / "cli")}).model_dump_json()
    )
    assert main(["train", str(tmp_path / "cfg.yaml")]) == 0
    a, b = (load_file(str(tmp_path / d / "adapter_model.safetensors")) for d in ("api", "cli"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_packing_trains_and_keeps_the_answer_mask(tmp_path, chat_model):
    from taia.data.mixing import mix
    from taia.train.chat import prepare
    from taia.train.model import load_base
    from taia.train.trainer import make_trainer

    cfg = config(tmp_path, chat_model("llama"), packing=True, max_steps=2, max_length=64)
    assert train(cfg)["steps"] == 2
    convs = mix(cfg.data, None, seed=0).conversations
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(chat_model("llama"))
    trainer = make_trainer(cfg, tmp_path / "p", load_base(chat_model("llama")), tok, prepare(convs, tok))
    rows = list(trainer.train_dataset)
    assert all(len(r["input_ids"]) <= 64 for r in rows)
    trained = sum(x != -100 for r in rows for x in r["labels"])
    answers = sum(len(m["content"]) + 2 for c in convs for m in c if m["role"] == "assistant")
    assert trained == answers  # packing moves rows together but masks exactly the same tokens
