"""`regularize:` L2-SP and EWC add the documented penalty to the training loss (checked on a tiny model),
once per optimizer step, with a Fisher that is the mean squared per-example gradient; θ0/F survive resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_model
from taia.config import build_config, config_yaml
from taia.errors import TaiaError
from taia.train import TrainConfig, train
from taia.train import regularize as reg_mod

ROWS = [
    {"instruction": "Say hi.", "input": "", "output": "hello there"},
    {"instruction": "Count to three.", "input": "", "output": "1, 2, 3"},
    {"instruction": "Repeat", "input": "abc", "output": "abc abc"},
    {"instruction": "Name a color.", "input": "", "output": "blue"},
]


def config(tmp_path: Path, model: Path, out: str = "out", **kw) -> TrainConfig:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS * 2))
    opts = dict(
        model=str(model), data=[str(data)], out=str(tmp_path / out), batch_size=4, micro_batch_size=2,
        max_steps=2, lr=3e-2, logging_steps=1, max_length=128, warmup=0.0,
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
    )  # fmt: skip
    opts.update(kw)
    return TrainConfig.model_validate(opts)


def built(tmp_path: Path, model_dir: Path, **kw):
    """The trainer `train` would build, without training."""
    from transformers import AutoTokenizer, set_seed

    from taia.data.mixing import mix
    from taia.train.chat import prepare
    from taia.train.model import build, load_base
    from taia.train.trainer import make_trainer

    cfg = config(tmp_path, model_dir, **kw)
    tok = AutoTokenizer.from_pretrained(model_dir)
    set_seed(cfg.seed)
    model, _ = build(cfg, load_base(model_dir))
    prepared = prepare(mix(cfg.data, None, 0).conversations, tok)
    return make_trainer(cfg, tmp_path / "t", model, tok, prepared)


def batch(trainer, rows: range):
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[i] for i in rows]))


def moved(params: dict, seed: int = 3, scale: float = 0.01) -> dict[str, torch.Tensor]:
    """Move every parameter by seeded noise; return the moves δ."""
    g = torch.Generator().manual_seed(seed)
    deltas = {n: torch.randn(p.shape, generator=g) * scale for n, p in params.items()}
    with torch.no_grad():
        for n, p in params.items():
            p.add_(deltas[n])
    return deltas


def lora_params():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model("llama"), LoraConfig(r=2, target_modules="all-linear"))
    return reg_mod.trainable(model)


def test_penalty_is_half_lambda_weighted_squared_distance_and_its_gradient():
    params = lora_params()
    assert params and all("lora_" in n for n in params)
    theta0 = reg_mod.snapshot(params)
    assert reg_mod.penalty(params, theta0, 0.3).item() == 0.0  # at θ0
    deltas = moved(params)
    g = torch.Generator().manual_seed(4)
    fisher = {n: torch.rand(p.shape, generator=g) for n, p in params.items()}
    l2 = reg_mod.penalty(params, theta0, 0.3)
    ewc = reg_mod.penalty(params, theta0, 0.3, fisher)
    by_hand_l2 = 0.15 * sum(float((d.double() ** 2).sum()) for d in deltas.values())
    by_hand_ewc = 0.15 * sum(float((fisher[n].double() * d.double() ** 2).sum()) for n, d in deltas.items())
    assert l2.item() == pytest.approx(by_hand_l2, rel=1e-5)
    assert ewc.item() == pytest.approx(by_hand_ewc, rel=1e-5)
    names = list(params)
    grads = torch.autograd.grad(l2, [params[n] for n in names])
    assert all(torch.allclose(gr, 0.3 * deltas[n], atol=1e-7) for n, gr in zip(names, grads, strict=True))
    grads = torch.autograd.grad(ewc, [params[n] for n in names])
    assert all(
        torch.allclose(gr, 0.3 * fisher[n] * deltas[n], atol=1e-7) for n, gr in zip(names, grads, strict=True)
    )


def test_compute_loss_is_the_sft_loss_plus_the_penalty(tmp_path, chat_model):
    from trl import SFTTrainer

    trainer = built(tmp_path, chat_model("llama"), regularize={"kind": "l2", "strength": 0.5})
    reg = trainer.regularizer
    assert type(trainer).__name__ == "RegularizedSFTTrainer" and reg.penalty().item() == 0.0
    deltas = moved(reg.params)
    pen = 0.25 * sum(float((d.double() ** 2).sum()) for d in deltas.values())
    model, inputs = trainer.model.train(), batch(trainer, range(2))
    with torch.no_grad():
        plain = SFTTrainer.compute_loss(trainer, model, dict(inputs)).item()
        assert trainer.compute_loss(model, dict(inputs)).item() == pytest.approx(plain + pen, abs=1e-6)
        assert trainer._metrics["train"]["l2_penalty"][-1] == pytest.approx(pen, rel=1e-5)
        # Trainer leaves accumulation to a loss normalised by num_items_in_batch: k micro-batches add pen/k
        trainer.current_gradient_accumulation_steps = 4
        plain = SFTTrainer.compute_loss(trainer, model, dict(inputs), num_items_in_batch=40).item()
        loss = trainer.compute_loss(model, dict(inputs), num_items_in_batch=40).item()
        assert loss == pytest.approx(plain + pen / 4, abs=1e-6)
        model.eval()  # evaluation losses carry no penalty
        assert (
            trainer.compute_loss(model, dict(inputs)).item()
            == SFTTrainer.compute_loss(trainer, model, dict(inputs)).item()
        )


@pytest.mark.parametrize("count_items", [False, True])
def test_accumulated_gradient_holds_the_penalty_gradient_once(tmp_path, chat_model, count_items):
    """Through the Trainer's own training_step, whether or not it leaves accumulation to the loss."""
    trainer = built(tmp_path, chat_model("llama"), regularize={"kind": "l2", "strength": 2.0})
    reg, model = trainer.regularizer, trainer.model
    deltas = moved(reg.params)
    micro = [batch(trainer, range(i, i + 1)) for i in range(3)]
    items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in micro) if count_items else None
    trainer.current_gradient_accumulation_steps = len(micro)

    def accumulated(regularizer) -> dict[str, torch.Tensor]:
        trainer.regularizer = regularizer
        model.zero_grad()
        for b in micro:
            trainer.training_step(model, dict(b), num_items_in_batch=items)
        return {n: p.grad.clone() for n, p in reg.params.items()}

    with_pen, without = accumulated(reg), accumulated(None)
    assert all(torch.allclose(with_pen[n] - without[n], 2.0 * deltas[n], atol=1e-6) for n in deltas)


def test_fisher_is_the_mean_squared_per_example_gradient(tmp_path, chat_model):
    trainer = built(tmp_path, chat_model("llama"), regularize={"kind": "ewc", "fisher_samples": 3})
    reg, model = trainer.regularizer, trainer.model
    assert reg.fisher_rows == 3 and reg.penalty().item() == 0.0
    names = list(reg.params)
    by_hand = {n: torch.zeros_like(p) for n, p in reg.params.items()}
    model.eval()
    for i in range(3):  # the model's own masked LM loss of one row at a time, not TRL's
        loss = model(**batch(trainer, range(i, i + 1))).loss
        for n, g in zip(names, torch.autograd.grad(loss, [reg.params[n] for n in names]), strict=True):
            by_hand[n] += g**2 / 3
    assert all(torch.allclose(reg.fisher[n], by_hand[n], rtol=1e-4, atol=1e-12) for n in names)
    # LoRA starts with B = 0, so ΔW = BA has no gradient in A: its Fisher is exactly 0 (documented)
    assert all(reg.fisher[n].abs().max() == 0 for n in names if "lora_A" in n)
    assert any(reg.fisher[n].abs().max() > 0 for n in names if "lora_B" in n)
    deltas = moved(reg.params)
    ewc = 0.005 * sum(float((by_hand[n].double() * d.double() ** 2).sum()) for n, d in deltas.items())
    assert reg.penalty().item() == pytest.approx(ewc, rel=1e-4)  # default strength 0.01
    norm = reg_mod.normalized(reg.fisher)
    mean = sum(float(f.sum()) for f in norm.values()) / sum(f.numel() for f in norm.values())
    assert mean == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize(("method", "kind"), [("lora", "ewc"), ("full", "l2"), ("molora", "l2")])
def test_train_runs_logs_and_reports_the_regulariser(tmp_path, chat_model, method, kind):
    extra = {"molora": {"num_experts": 2, "top_k": 1, "r": 2}} if method == "molora" else {}
    fisher = {"fisher_samples": 2} if kind == "ewc" else {}
    cfg = config(tmp_path, chat_model("llama"), method=method, regularize={"kind": kind, **fisher}, **extra)
    report = train(cfg)
    rep = report["regularize"]
    assert report["steps"] == 2 and rep["kind"] == kind and rep["strength"] == 0.01 and rep["elements"] > 0
    assert ("fisher_rows" in rep) == (kind == "ewc") and rep["final_penalty"] > 0
    assert json.loads((Path(cfg.out) / "taia_train.json").read_text())["regularize"] == rep
    logged = [json.loads(x) for x in (Path(cfg.out) / "loss.jsonl").read_text().splitlines()]
    assert logged[0][f"{kind}_penalty"] == 0.0 < logged[1][f"{kind}_penalty"]  # step 1 is at θ0
    assert ("molora_aux_loss" in logged[0]) == (method == "molora")  # composes with MoLoRA's aux loss
    if method == "full":
        assert rep["elements"] == sum(p.numel() for p in tiny_model("llama").parameters())
    if method == "lora":
        assert train(config(tmp_path, chat_model("llama"), out="plain", max_steps=1))["regularize"] is None


class _Interrupt(Exception):
    pass


def test_resume_restores_theta0_and_fisher_from_the_checkpoint(tmp_path, chat_model, monkeypatch):
    from transformers import TrainerCallback

    from taia.train import trainer as trainer_mod

    opts = dict(max_steps=4, save_steps=2, regularize={"kind": "ewc", "strength": 50.0, "fisher_samples": 2})
    whole = config(tmp_path, chat_model("llama"), out="whole", **opts)
    train(whole)
    cut = config(tmp_path, chat_model("llama"), out="cut", **opts)

    class StopAt3(TrainerCallback):  # after checkpoint-2 is saved
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise _Interrupt

    make = trainer_mod.make_trainer
    monkeypatch.setattr(trainer_mod, "make_trainer", lambda *a: _with(make(*a), StopAt3()))
    with pytest.raises(_Interrupt):
        train(cut)
    monkeypatch.undo()
    saved = load_file(str(Path(cut.out) / "checkpoints" / "checkpoint-2" / reg_mod.FILE))
    assert any(k.startswith("theta0.") for k in saved) and any(k.startswith("fisher.") for k in saved)
    restored = []
    monkeypatch.setattr(reg_mod, "restore", lambda r, c: restored.append(c) or _corrupt_then_restore(r, c))
    train(cut.model_copy(update={"resume": True}))
    assert restored and restored[0].endswith("checkpoint-2")
    a = load_file(str(Path(whole.out) / "adapter_model.safetensors"))
    b = load_file(str(Path(cut.out) / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


_restore = reg_mod.restore


def _corrupt_then_restore(reg, checkpoint) -> None:
    """θ0/F recomputed on resume would be right anyway: spoil them, so only the checkpoint's copy fixes it."""
    for t in reg.tensors().values():
        t.add_(1.0)
    _restore(reg, checkpoint)


def _with(trainer, callback):
    trainer.add_callback(callback)
    return trainer


def test_restore_refuses_a_missing_or_mismatched_file(tmp_path):
    params = lora_params()
    opts = TrainConfig.model_validate({"data": ["d"], "out": "o", "regularize": {"kind": "l2"}}).regularize
    assert opts is not None
    reg = reg_mod.Regularizer(opts, params, reg_mod.snapshot(params))
    with pytest.raises(TaiaError, match=r"has no regularize\.safetensors"):
        reg_mod.restore(reg, tmp_path)
    reg_mod.save(reg, tmp_path)
    other = dict(list(params.items())[1:])
    with pytest.raises(TaiaError, match="do not fit the model"):
        reg_mod.restore(reg_mod.Regularizer(opts, other, reg_mod.snapshot(other)), tmp_path)


def test_config_block_validates_and_reads_back():
    base = {"data": "d.jsonl", "out": "o"}
    assert build_config(TrainConfig, None, base).regularize is None
    cfg = build_config(TrainConfig, None, base, ["regularize.kind=ewc", "regularize.strength=0.5"])
    assert cfg.regularize is not None and (cfg.regularize.kind, cfg.regularize.strength) == ("ewc", 0.5)
    assert cfg.regularize.fisher_samples == 64 and not cfg.regularize.fisher_normalize
    import yaml

    assert TrainConfig.model_validate(yaml.safe_load(config_yaml(cfg))) == cfg
    with pytest.raises(TaiaError, match=r"unknown regularize kind 'ewk'; did you mean 'ewc'"):
        build_config(TrainConfig, None, base, ["regularize.kind=ewk"])
    for bad in (["regularize.kind=l2", "regularize.strength=0"], ["regularize.strength=1"]):
        with pytest.raises(TaiaError, match="regularize"):
            build_config(TrainConfig, None, base, bad)
    with pytest.raises(TaiaError, match="fisher_sample"):
        build_config(TrainConfig, None, base, ["regularize.kind=ewc", "regularize.fisher_sample=8"])
