"""MoLoRA (taia.molora, taia.train.molora): routing, load balancing, gradients, save/load, PEFT interplay,
errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from conftest import logits, tiny_model
from taia.errors import TaiaError
from taia.molora import (
    MoLoraConfig,
    MoLoraLinear,
    inject_molora,
    load_molora,
    molora_modules,
    molora_state_dict,
    read_molora_tensors,
    save_molora,
    set_molora_enabled,
)
from taia.train.molora import aux_loss

MLP = {
    "llama": [f"model.layers.{i}.mlp.{p}" for i in range(2) for p in ("gate_proj", "up_proj", "down_proj")],
    "gpt2": [f"transformer.h.{i}.mlp.{p}" for i in range(2) for p in ("c_fc", "c_proj")],
}
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
L0, L1 = "model.layers.0.mlp", "model.layers.1.mlp"


def randomize_experts(model: nn.Module, seed: int = 3, scale: float = 0.5) -> None:
    """Non-zero B (and a random router) so the experts change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in molora_modules(model).values():
            m.experts_B.copy_(torch.randn(m.experts_B.shape, generator=g) * scale)
            m.router.weight.copy_(torch.randn(m.router.weight.shape, generator=g))


def lm_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    ids = torch.randint(0, 128, (2, 12))
    return {"input_ids": ids, "labels": ids}


def standalone(cfg: MoLoraConfig, n_in: int = 6, n_out: int = 5, seed: int = 0) -> MoLoraLinear:
    torch.manual_seed(seed)
    return MoLoraLinear(nn.Linear(n_in, n_out), cfg)


# --- config -------------------------------------------------------------------------------------------


def test_config_validation():
    assert MoLoraConfig().model_dump() == {
        "num_experts": 4, "top_k": 2, "r": 8, "alpha": 16.0, "dropout": 0.05, "aux_loss_coef": 0.01,
    }  # fmt: skip
    for bad in ({"top_k": 5}, {"num_experts": 1, "top_k": 1}, {"top_k": 0}, {"r": 0}, {"experts": 4}):
        with pytest.raises(ValidationError):
            MoLoraConfig(**bad)


# --- forward / routing --------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_init_gives_base_logits(arch):
    base = logits(tiny_model(arch))
    model = tiny_model(arch)
    wrapped = inject_molora(model, MLP[arch], MoLoraConfig())
    assert set(wrapped) == set(MLP[arch]) == set(molora_modules(model))
    assert not any(m.training for m in wrapped.values())  # injected into an eval model: eval too
    assert torch.equal(logits(model), base)


def test_gates_have_top_k_nonzeros_and_rows_sum_to_one():
    m = standalone(MoLoraConfig(num_experts=5, top_k=3))
    gates, probs, top_i = m.route(torch.randn(40, 6))
    assert gates.shape == probs.shape == (40, 5) and top_i.shape == (40, 3)
    assert ((gates != 0).sum(-1) == 3).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(40))
    # the non-zeros are where the top-k probabilities are, in the same proportions
    chosen = probs.gather(-1, top_i)
    torch.testing.assert_close(gates.gather(-1, top_i), chosen / chosen.sum(-1, keepdim=True))


def test_top1_gate_is_the_raw_probability():
    m = standalone(MoLoraConfig(num_experts=4, top_k=1))
    gates, probs, _ = m.route(torch.randn(30, 6))
    assert ((gates != 0).sum(-1) == 1).all()
    # Switch-style: the raw (not renormalised, which would be exactly 1) probability of the chosen expert
    torch.testing.assert_close(gates.sum(-1), probs.max(-1).values)
    assert (gates.sum(-1) < 1).all()


@pytest.mark.parametrize("top_k", [1, 2])
def test_router_gets_gradient_from_the_task_loss(top_k):
    m = standalone(MoLoraConfig(num_experts=4, top_k=top_k, dropout=0.0))
    with torch.no_grad():
        m.experts_B.normal_()
    m.train()
    m(torch.randn(3, 7, 6)).pow(2).sum().backward()  # no aux loss: the gradient comes through the gates
    grad = m.router.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert m.experts_A.grad is not None and m.experts_A.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.base_layer.parameters())


def test_output_matches_explicit_per_token_sum():
    cfg = MoLoraConfig(num_experts=3, top_k=2, r=2, alpha=3.0, dropout=0.0)
    m = standalone(cfg)
    with torch.no_grad():
        m.experts_B.normal_()
    x = torch.randn(4, 6)
    gates, _, _ = m.route(x)
    want = m.base_layer(x).clone()
    for t in range(4):
        for e in range(3):
            want[t] += gates[t, e] * (m.experts_B[e] @ (m.experts_A[e] @ x[t])) * (3.0 / 2)
    torch.testing.assert_close(m(x), want)


# --- load balancing -----------------------------------------------------------------------------------


def test_aux_loss_matches_hand_computation():
    m = standalone(MoLoraConfig(num_experts=3, top_k=2), n_in=2)
    w = [[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]
    x = [[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]]
    with torch.no_grad():
        m.router.weight.copy_(torch.tensor(w))
    m.train()
    m(torch.tensor(x))
    E, k, T = 3, 2, len(x)
    counts, psum = [0] * E, [0.0] * E
    for xt in x:
        z = [sum(wi * xi for wi, xi in zip(row, xt, strict=True)) for row in w]
        p = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
        for e in sorted(range(E), key=lambda e: -p[e])[:k]:
            counts[e] += 1
        psum = [a + b for a, b in zip(psum, p, strict=True)]
    want = E * sum((counts[e] / (T * k)) * (psum[e] / T) for e in range(E))
    assert m.aux_loss is not None
    assert m.aux_loss.item() == pytest.approx(want, rel=1e-6)
    m.eval()
    m(torch.tensor(x))
    assert m.aux_loss is None  # only training forwards record it


def test_aux_loss_is_one_for_uniform_routing():
    m = standalone(MoLoraConfig(num_experts=4, top_k=2))
    with torch.no_grad():
        m.router.weight.zero_()  # every probability is 1/E
    m.train()
    m(torch.randn(2, 9, 6))
    assert m.aux_loss is not None and m.aux_loss.item() == pytest.approx(1.0)


def test_aux_loss_averages_modules_and_is_none_in_eval():
    model = tiny_model("llama")
    inject_molora(model, MLP["llama"], MoLoraConfig())
    model(input_ids=lm_batch()["input_ids"])
    assert aux_loss(model) is None
    model.train()
    model(input_ids=lm_batch()["input_ids"])
    each = [m.aux_loss for m in molora_modules(model).values()]
    total = aux_loss(model)
    assert total is not None and all(a is not None for a in each)
    torch.testing.assert_close(total, torch.stack(each).mean())  # type: ignore[arg-type]
    assert aux_loss(tiny_model("llama")) is None


# --- training ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_training_updates_only_molora(arch):
    cfg = MoLoraConfig(num_experts=4, top_k=2)
    model = tiny_model(arch).requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    inject_molora(model, MLP[arch], cfg)
    start = {k: v.clone() for k, v in molora_state_dict(model).items()}
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step in range(3):
        out = model(**lm_batch(step))
        aux = aux_loss(model)
        assert aux is not None
        (out.loss + cfg.aux_loss_coef * aux).backward()
        if step == 0:
            for path, m in molora_modules(model).items():
                assert m.router.weight.grad is not None and m.router.weight.grad.abs().sum() > 0, path
        opt.step()
        opt.zero_grad()
    after = molora_state_dict(model)
    for path in MLP[arch]:
        for name in ("router.weight", "experts_A", "experts_B"):
            assert not torch.equal(after[f"{path}.{name}"], start[f"{path}.{name}"]), (path, name)
    now = model.state_dict()
    for key, value in before.items():
        parts = key.rsplit(".", 1)
        wrapped_key = f"{parts[0]}.base_layer.{parts[1]}" if parts[0] in MLP[arch] else key
        assert torch.equal(now[wrapped_key], value), key


def test_new_parameters_follow_the_base_dtype():
    model = tiny_model("llama").to(torch.bfloat16)
    inject_molora(model, MLP["llama"][:1], MoLoraConfig())
    assert {t.dtype for t in molora_state_dict(model).values()} == {torch.bfloat16}
    assert logits(model).dtype == torch.bfloat16


# --- enable / disable ---------------------------------------------------------------------------------


def test_disabling_gives_the_model_without_molora():
    base = logits(tiny_model("llama"))
    model = tiny_model("llama")
    inject_molora(model, MLP["llama"], MoLoraConfig())
    randomize_experts(model)
    with_experts = logits(model)
    assert not torch.allclose(with_experts, base)
    assert set_molora_enabled(model, False) == len(MLP["llama"])
    assert torch.equal(logits(model), base)
    set_molora_enabled(model, True)
    assert torch.equal(logits(model), with_experts)


# --- save / load --------------------------------------------------------------------------------------


def saved_molora(tmp_path, arch: str = "llama"):
    cfg = MoLoraConfig(num_experts=3, top_k=2, r=4)
    model = tiny_model(arch)
    inject_molora(model, MLP[arch], cfg)
    randomize_experts(model)
    save_molora(model, tmp_path, cfg)
    return model, cfg


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_save_load_round_trip(tmp_path, arch):
    model, cfg = saved_molora(tmp_path, arch)
    meta = json.loads((tmp_path / "molora_config.json").read_text())
    assert meta == {"config": cfg.model_dump(), "targets": MLP[arch], "format": "taia-molora-v1"}
    assert set(load_file(tmp_path / "molora.safetensors")) == set(molora_state_dict(model))
    fresh = tiny_model(arch)
    assert set(load_molora(fresh, tmp_path)) == set(MLP[arch])
    assert torch.equal(logits(fresh), logits(model))


def test_read_molora_tensors(tmp_path):
    assert read_molora_tensors(tmp_path) is None
    model, _ = saved_molora(tmp_path)
    read = read_molora_tensors(tmp_path)
    assert read is not None
    meta, tensors = read
    assert meta["targets"] == MLP["llama"]
    assert set(tensors) == set(molora_state_dict(model))
    (tmp_path / "molora.safetensors").unlink()
    with pytest.raises(TaiaError, match=r"molora\.safetensors is missing"):
        read_molora_tensors(tmp_path)


def _rewrite(tmp_path, edit) -> None:
    tensors = load_file(tmp_path / "molora.safetensors")
    edit(tensors)
    save_file(tensors, tmp_path / "molora.safetensors")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.update({f"{L0}.up_proj.experts_A": torch.zeros(3, 5, 32)}), "experts_A has shape"),
        (lambda t: t.pop(f"{L1}.down_proj.router.weight"), rf"missing tensor {L1}\.down_proj\.router"),
        (lambda t: t.update({f"{L0}.extra": torch.zeros(1)}), rf"unexpected tensor {L0}\.extra"),
    ],
    ids=["shape", "missing", "unexpected"],
)
def test_load_is_strict_and_leaves_the_model_untouched(tmp_path, edit, match):
    saved_molora(tmp_path)
    _rewrite(tmp_path, edit)
    fresh = tiny_model("llama")
    with pytest.raises(TaiaError, match=match):
        load_molora(fresh, tmp_path)
    assert molora_modules(fresh) == {}


def test_load_rejects_bad_config(tmp_path):
    saved_molora(tmp_path)
    meta = json.loads((tmp_path / "molora_config.json").read_text())
    (tmp_path / "molora_config.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(TaiaError, match="not a taia-molora-v1 file"):
        load_molora(tiny_model("llama"), tmp_path)
    (tmp_path / "molora_config.json").write_text(json.dumps({**meta, "config": {"top_k": 9}}))
    with pytest.raises(TaiaError, match="invalid MoLoRA config"):
        load_molora(tiny_model("llama"), tmp_path)
    with pytest.raises(TaiaError, match="no MoLoRA files"):
        load_molora(tiny_model("llama"), tmp_path / "nowhere")


# --- PEFT ---------------------------------------------------------------------------------------------


def test_with_peft_attention_lora(tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

    peft_model = get_peft_model(tiny_model("llama"), LoraConfig(target_modules=ATTN, r=4))
    inject_molora(peft_model.get_base_model(), MLP["llama"], MoLoraConfig())
    keys = set(molora_state_dict(peft_model))
    assert keys == {f"{p}.{n}" for p in MLP["llama"] for n in ("router.weight", "experts_A", "experts_B")}
    assert keys == set(molora_state_dict(peft_model.get_base_model()))
    peft_keys = set(get_peft_model_state_dict(peft_model))
    assert peft_keys and not any("router" in k or "experts_" in k for k in peft_keys)
    for name, p in peft_model.named_parameters():
        molora = ".router." in name or ".experts_" in name
        assert p.requires_grad == (molora or "lora_" in name), name
    # both kinds of adapter train together
    peft_model.train()
    (peft_model(**lm_batch()).loss + aux_loss(peft_model)).backward()  # type: ignore[operator]
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    # the PEFT adapter and the MoLoRA file are saved side by side and reload into a fresh PeftModel
    randomize_experts(peft_model)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    peft_model.eval()
    want = logits(peft_model)
    peft_model.save_pretrained(tmp_path)
    save_molora(peft_model, tmp_path, MoLoraConfig())
    saved_peft = load_file(tmp_path / "adapter_model.safetensors")
    assert not any("router" in k or "experts_" in k for k in saved_peft)
    fresh = PeftModel.from_pretrained(tiny_model("llama"), tmp_path)
    load_molora(fresh, tmp_path)
    assert torch.equal(logits(fresh), want)


def test_eval_variants_of_a_molora_run_come_from_one_plan(tmp_path):
    """LoRA layers and MoLoRA experts are decided together: `taia` keeps the attention LoRA and drops the
    experts (a plan of the experts alone kept nothing, and refused), `taif` the reverse."""
    from peft import LoraConfig, get_peft_model

    from taia.eval.variants import load_variants, resolve_specs

    base_dir, adapter_dir = tmp_path / "base", tmp_path / "adapter"
    tiny_model("llama").save_pretrained(base_dir)
    peft_model = get_peft_model(tiny_model("llama"), LoraConfig(target_modules=ATTN, r=4))
    inject_molora(peft_model.get_base_model(), MLP["llama"], MoLoraConfig())
    randomize_experts(peft_model)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    peft_model.save_pretrained(adapter_dir)
    save_molora(peft_model, adapter_dir, MoLoraConfig())
    peft_model.eval()
    want = {"vanilla": logits(peft_model)}
    with peft_model.disable_adapter():
        want["taif"] = logits(peft_model)
    set_molora_enabled(peft_model, False)
    want["taia"] = logits(peft_model)
    with peft_model.disable_adapter():
        want["base"] = logits(peft_model)
    variants = load_variants(base_dir, adapter_dir, None, resolve_specs(list(want)), None)
    for name in ["taia", "vanilla", "base", "taif", "taia"]:
        torch.testing.assert_close(logits(variants.switch(name)), want[name])


# --- injection errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("targets", "match"),
    [
        (["model.layers.0.mlp.up_proj", "model.layers.9.mlp.up_proj"], "no such module"),
        (["model.layers.0.mlp.nope"], "no such module"),
        (["model.layers.0.post_attention_layernorm"], "is a LlamaRMSNorm, not a linear layer"),
        (["model.layers.0.mlp"], "not a linear layer"),
        (["model.layers.0.mlp.up_proj", "model.layers.0.mlp.up_proj"], "repeat"),
    ],
)
def test_inject_errors_leave_the_model_untouched(targets, match):
    model = tiny_model("llama")
    with pytest.raises(TaiaError, match=match):
        inject_molora(model, targets, MoLoraConfig())
    assert molora_modules(model) == {}


def test_inject_twice_is_an_error():
    model = tiny_model("llama")
    inject_molora(model, MLP["llama"][:1], MoLoraConfig())
    with pytest.raises(TaiaError, match="already has MoLoRA"):
        inject_molora(model, MLP["llama"][:1], MoLoraConfig())
