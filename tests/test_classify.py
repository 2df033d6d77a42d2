"""The structure-aware classifier: module tree → (group, layer) for every parameter and tensor name."""

from __future__ import annotations

from collections import Counter
from functools import cache

import pytest
import torch
from safetensors import safe_open
from torch import nn

from conftest import MODEL_TYPES, lora_adapter, tiny_config, tiny_model
from taia.classify import GROUPS, ModelMap, ParamInfo, classify, meta_model, model_map
from taia.errors import TaiaError
from taia.plan import make_plan
from taia.spec import load_spec

# Where each architecture keeps its decoder-layer stack (independent of the classifier's own search).
LAYER_STACK = {"gpt2": "transformer.h", "gpt_neox": "gpt_neox.layers"}
TIED = {"gemma", "gemma2", "gemma3_text", "gpt2"}
MOE = {"mixtral", "qwen2_moe", "qwen3_moe"}
ATTN_ATTRS = {"self_attn", "attn", "attention"}


@cache
def _map(model_type: str) -> ModelMap:
    return model_map(tiny_config(model_type))


@cache
def _meta(model_type: str) -> nn.Module:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(tiny_config(model_type))


def _expected(model_type: str, name: str) -> ParamInfo:
    """An independent oracle from the module path: which block of the layer holds this parameter."""
    stack = LAYER_STACK.get(model_type, "model.layers") + "."
    if name.startswith(stack):
        index, *rest = name[len(stack) :].split(".")
        top = rest[0]
        if top in ATTN_ATTRS:
            return ParamInfo("attn", int(index))
        if top == "mlp":
            sub = rest[1]
            if sub in ("gate", "shared_expert_gate"):
                return ParamInfo("router", int(index))
            if sub == "experts":
                return ParamInfo("experts", int(index))
            return ParamInfo("ffn", int(index))
        if "norm" in top or top.startswith("ln_"):
            return ParamInfo("norm", int(index))
        raise AssertionError(f"oracle does not know {name}")
    module = name.rsplit(".", 1)[0].rsplit(".", 1)[-1]
    if module in ("embed_tokens", "embed_in", "wte", "wpe"):
        return ParamInfo("embed")
    if "norm" in module or module == "ln_f":
        return ParamInfo("norm")
    if module in ("lm_head", "embed_out"):
        return ParamInfo("head")
    raise AssertionError(f"oracle does not know {name}")


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_every_parameter_in_its_block(model_type):
    params = classify(tiny_config(model_type))
    model = _meta(model_type)
    assert set(params) == {n for n, _ in model.named_parameters()}
    assert not [n for n, i in params.items() if i.group == "other"]
    assert all(i.group in GROUPS for i in params.values())
    stack = LAYER_STACK.get(model_type, "model.layers") + "."
    for name, info in params.items():
        assert info == _expected(model_type, name), name
        if name.startswith(stack):
            assert info.layer in (0, 1), name
        else:
            assert info.layer is None, name


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_group_counts_match_module_tree(model_type):
    """Per group: tensor and element counts equal those of the submodules of each decoder layer."""
    mm = _map(model_type)
    model = _meta(model_type)
    stack = model.get_submodule(LAYER_STACK.get(model_type, "model.layers"))
    assert mm.num_layers == len(stack) == 2

    want_tensors: Counter[tuple[str, int | None]] = Counter()
    want_numel: Counter[tuple[str, int | None]] = Counter()
    for index, layer in enumerate(stack):
        for attr, child in layer.named_children():
            if attr in ATTN_ATTRS:
                groups = {"": "attn"}
            elif attr == "mlp" and model_type in MOE:
                groups = {
                    sub: {"gate": "router", "shared_expert_gate": "router", "experts": "experts"}.get(
                        sub, "ffn"
                    )
                    for sub, _ in child.named_children()
                }
            elif attr == "mlp":
                groups = {"": "ffn"}
            else:
                groups = {"": "norm"}
            for sub, group in groups.items():
                block = child.get_submodule(sub) if sub else child
                for p in block.parameters():
                    want_tensors[(group, index)] += 1
                    want_numel[(group, index)] += p.numel()

    got_tensors: Counter[tuple[str, int | None]] = Counter()
    got_numel: Counter[tuple[str, int | None]] = Counter()
    for name, info in mm.params.items():
        if info.layer is not None:
            got_tensors[(info.group, info.layer)] += 1
            got_numel[(info.group, info.layer)] += torch.Size(mm.shapes[name]).numel()
    assert got_tensors == want_tensors
    assert got_numel == want_numel
    # Every dense layer has attention and an MLP; MoE layers have experts and a router.
    for index in (0, 1):
        assert want_tensors[("attn", index)] > 0
        assert want_tensors[("norm", index)] >= 2
        if model_type in MOE:
            assert want_tensors[("experts", index)] > 0 and want_tensors[("router", index)] > 0
        else:
            assert want_tensors[("ffn", index)] > 0
    # Outside the stack: total element count adds up to the whole model.
    outside = sum(torch.Size(s).numel() for n, s in mm.shapes.items() if mm.params[n].layer is None)
    assert outside + sum(got_numel.values()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_head_and_embeddings(model_type):
    params = classify(tiny_config(model_type))
    groups = Counter(i.group for i in params.values())
    assert groups["embed"] == (2 if model_type == "gpt2" else 1)
    assert groups["norm"] >= 2 * 2 + 1  # two per layer, and the final norm
    cfg = tiny_config(model_type).get_text_config()
    assert bool(cfg.tie_word_embeddings) == (model_type in TIED)
    if model_type in TIED:
        # Tied: no separate parameter, but a checkpoint's `lm_head.weight` key still reads as head.
        assert groups["head"] == 0
        assert _map(model_type).lookup("lm_head.weight") == ParamInfo("head")
    else:
        head = [n for n, i in params.items() if i.group == "head"]
        assert len(head) == 1 and head[0].endswith(".weight")
        assert params[head[0]] == ParamInfo("head", None)


def test_gpt2_c_proj_leaf_name_trap():
    params = classify(tiny_config("gpt2"))
    for layer in (0, 1):
        assert params[f"transformer.h.{layer}.attn.c_proj.weight"] == ParamInfo("attn", layer)
        assert params[f"transformer.h.{layer}.attn.c_proj.bias"] == ParamInfo("attn", layer)
        assert params[f"transformer.h.{layer}.mlp.c_proj.weight"] == ParamInfo("ffn", layer)
        assert params[f"transformer.h.{layer}.attn.c_attn.weight"] == ParamInfo("attn", layer)
        assert params[f"transformer.h.{layer}.mlp.c_fc.weight"] == ParamInfo("ffn", layer)
        assert params[f"transformer.h.{layer}.ln_1.weight"] == ParamInfo("norm", layer)
    assert params["transformer.wte.weight"] == ParamInfo("embed")
    assert params["transformer.wpe.weight"] == ParamInfo("embed")
    assert params["transformer.ln_f.weight"] == ParamInfo("norm")


def test_phi3_fused_projections():
    params = classify(tiny_config("phi3"))
    assert params["model.layers.0.self_attn.qkv_proj.weight"] == ParamInfo("attn", 0)
    assert params["model.layers.1.self_attn.o_proj.weight"] == ParamInfo("attn", 1)
    assert params["model.layers.1.mlp.gate_up_proj.weight"] == ParamInfo("ffn", 1)
    assert params["model.layers.0.mlp.down_proj.weight"] == ParamInfo("ffn", 0)


def test_mixtral_experts_and_router():
    params = classify(tiny_config("mixtral"))
    for layer in (0, 1):
        assert params[f"model.layers.{layer}.mlp.experts.gate_up_proj"] == ParamInfo("experts", layer)
        assert params[f"model.layers.{layer}.mlp.experts.down_proj"] == ParamInfo("experts", layer)
        assert params[f"model.layers.{layer}.mlp.gate.weight"] == ParamInfo("router", layer)
    assert not any(i.group == "ffn" for i in params.values())


def test_qwen2_moe_shared_expert():
    params = classify(tiny_config("qwen2_moe"))
    for proj in ("gate_proj", "up_proj", "down_proj"):
        assert params[f"model.layers.0.mlp.shared_expert.{proj}.weight"] == ParamInfo("ffn", 0)
    assert params["model.layers.1.mlp.shared_expert_gate.weight"] == ParamInfo("router", 1)
    assert params["model.layers.1.mlp.gate.weight"] == ParamInfo("router", 1)
    assert params["model.layers.1.mlp.experts.gate_up_proj"] == ParamInfo("experts", 1)
    assert params["model.layers.0.self_attn.q_proj.bias"] == ParamInfo("attn", 0)


def test_qk_norm_inside_attention_is_attn():
    for mt in ("qwen3_moe", "qwen3", "gemma3_text"):
        params = classify(tiny_config(mt))
        assert params["model.layers.0.self_attn.q_norm.weight"] == ParamInfo("attn", 0), mt
        assert params["model.layers.1.self_attn.k_norm.weight"] == ParamInfo("attn", 1), mt
        assert params["model.layers.1.input_layernorm.weight"] == ParamInfo("norm", 1), mt


def test_mixtral_legacy_checkpoint_keys():
    mm = _map("mixtral")
    assert mm.lookup("model.layers.1.block_sparse_moe.experts.3.w2.weight") == ParamInfo("experts", 1)
    assert mm.lookup("model.layers.0.block_sparse_moe.experts.0.w1.weight") == ParamInfo("experts", 0)
    assert mm.lookup("model.layers.1.block_sparse_moe.gate.weight") == ParamInfo("router", 1)
    assert mm.lookup("model.layers.0.block_sparse_moe.gate.weight") == ParamInfo("router", 0)
    assert mm.lookup("model.layers.0.self_attn.q_proj.weight") == ParamInfo("attn", 0)
    assert mm.lookup("totally.unknown.tensor") == ParamInfo("other", None)


def test_mixtral_saved_checkpoint_keys_all_classified(tmp_path):
    tiny_model("mixtral").save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    mm = _map("mixtral")
    infos = {k: mm.lookup(k) for k in keys}
    assert not [k for k, i in infos.items() if i.group == "other"]
    groups = Counter(i.group for i in infos.values())
    assert groups["experts"] > 0 and groups["router"] == 2 and groups["attn"] == 2 * 4
    for k, info in infos.items():
        if k.startswith("model.layers."):
            assert info.layer == int(k.split(".")[2]), k
            if ".experts." in k:
                assert info.group == "experts", k
        else:
            assert info.layer is None, k


def test_gpt2_keys_without_base_prefix():
    mm = _map("gpt2")
    for key in (
        "h.0.attn.c_attn.weight",
        "h.1.attn.c_proj.bias",
        "h.1.mlp.c_proj.weight",
        "ln_f.weight",
        "wte.weight",
    ):
        assert mm.lookup(key) == mm.lookup(f"transformer.{key}") != ParamInfo("other"), key
    assert mm.lookup("h.0.attn.c_attn.weight") == ParamInfo("attn", 0)
    assert mm.lookup("h.1.mlp.c_proj.weight") == ParamInfo("ffn", 1)
    # The other direction: a llama key with the prefix stripped still resolves.
    assert _map("llama").lookup("layers.1.mlp.up_proj.weight") == ParamInfo("ffn", 1)


def test_peft_adapter_style_names():
    mm = _map("llama")
    assert mm.lookup("model.layers.0.self_attn.q_proj.base_layer.weight") == ParamInfo("attn", 0)
    assert mm.lookup("model.layers.0.self_attn.q_proj.lora_A.weight") == ParamInfo("attn", 0)
    assert mm.lookup("model.layers.1.self_attn.o_proj.lora_B.default.weight") == ParamInfo("attn", 1)
    assert mm.lookup("model.layers.1.mlp.down_proj.lora_A.weight") == ParamInfo("ffn", 1)
    assert mm.lookup("model.layers.1.mlp.down_proj.base_layer.weight") == ParamInfo("ffn", 1)
    assert mm.lookup("model.embed_tokens.lora_embedding_A") == ParamInfo("embed")
    assert mm.lookup("lm_head.lora_B.weight") == ParamInfo("head")
    gpt2 = _map("gpt2")
    assert gpt2.lookup("transformer.h.0.mlp.c_proj.lora_A.weight") == ParamInfo("ffn", 0)
    assert gpt2.lookup("transformer.h.0.attn.c_proj.lora_A.weight") == ParamInfo("attn", 0)


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "phi3", "gemma", "mixtral", "qwen2_moe"])
def test_model_config_and_path_agree(model_type, tmp_path):
    config = tiny_config(model_type)
    config.save_pretrained(tmp_path)
    from_config = model_map(config)
    from_path = model_map(tmp_path)
    from_str = classify(str(tmp_path))
    from_model = model_map(tiny_model(model_type))
    assert from_config.params == from_path.params == from_model.params == from_str
    assert from_config.shapes == from_path.shapes == from_model.shapes
    assert from_config.model_type == from_model.model_type == model_type
    assert not any(i.group == "other" for i in from_model.params.values())


def test_peft_model_classified_as_base():
    base = classify(tiny_config("llama"))
    wrapped = lora_adapter(tiny_model("llama"))
    assert classify(wrapped) == base


def test_meta_model_has_no_storage():
    model = meta_model(tiny_config("llama"))
    assert all(p.device.type == "meta" for p in model.parameters())


# --- remote-code style models: classes without roles in their names --------------------------------


class SelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.out = nn.Linear(8, 8)


class Dense(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8)


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(8)
        self.attn = SelfAttention()
        self.ln2 = nn.LayerNorm(8)
        self.mlp = Dense()


class RemoteNet(nn.Module):
    def __init__(self, extra: bool = False) -> None:
        super().__init__()
        self.wte = nn.Embedding(10, 8)
        self.blocks = nn.ModuleList([Block() for _ in range(3)])
        self.short = nn.ModuleList([nn.Linear(8, 8)])  # a shorter stack that is not the decoder
        self.ln_f = nn.LayerNorm(8)
        self.head = nn.Linear(8, 10, bias=False)
        if extra:
            self.scale = nn.Parameter(torch.ones(8))

    def get_output_embeddings(self) -> nn.Module:
        return self.head


def test_remote_code_attribute_name_fallback():
    mm = model_map(RemoteNet())
    assert mm.num_layers == 3
    assert mm.model_type == "RemoteNet"
    p = mm.params
    for i in range(3):
        assert p[f"blocks.{i}.attn.qkv.weight"] == ParamInfo("attn", i)
        assert p[f"blocks.{i}.attn.out.bias"] == ParamInfo("attn", i)
        assert p[f"blocks.{i}.mlp.up.weight"] == ParamInfo("ffn", i)  # class `Dense`, attribute `mlp`
        assert p[f"blocks.{i}.mlp.down.bias"] == ParamInfo("ffn", i)
        assert p[f"blocks.{i}.ln1.weight"] == ParamInfo("norm", i)
        assert p[f"blocks.{i}.ln2.bias"] == ParamInfo("norm", i)
    assert p["wte.weight"] == ParamInfo("embed")
    assert p["ln_f.weight"] == ParamInfo("norm")
    assert p["head.weight"] == ParamInfo("head")
    assert p["short.0.weight"] == ParamInfo("other")


def test_unknown_top_level_parameter_needs_an_override():
    mm = model_map(RemoteNet(extra=True))
    assert mm.params["scale"] == ParamInfo("other", None)
    names = [n for n in mm.params if not n.startswith("short.")]
    assert [n for n in names if mm.params[n].group == "other"] == ["scale"]

    with pytest.raises(TaiaError, match=r"1 tensor\(s\).*RemoteNet.*: scale;"):
        make_plan(names, mm, load_spec("taia"))

    by_lambda = make_plan(
        names, mm, load_spec({"groups": {"attn": 1.0}, "overrides": [{"pattern": "^scale$", "lambda": 0.5}]})
    )
    assert by_lambda["scale"].lam == 0.5
    assert by_lambda["scale"].action == "scaled"
    assert by_lambda["blocks.0.attn.qkv.weight"].lam == 1.0
    assert by_lambda["blocks.0.mlp.up.weight"].lam == 0.0

    by_group = make_plan(
        names,
        mm,
        load_spec({"groups": {"attn": 1.0}, "overrides": [{"pattern": "^scale$", "group": "attn"}]}),
    )
    assert by_group["scale"].lam == 1.0
    to_ffn = make_plan(
        names, mm, load_spec({"groups": {"attn": 1.0}, "overrides": [{"pattern": "^scale$", "group": "ffn"}]})
    )
    assert to_ffn["scale"].lam == 0.0
    # Reassigning to `other` does not assign it.
    with pytest.raises(TaiaError, match="scale"):
        make_plan(
            names,
            mm,
            load_spec({"groups": {"attn": 1.0}, "overrides": [{"pattern": "^scale$", "group": "other"}]}),
        )


def test_no_layer_stack_is_an_error():
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)

    with pytest.raises(TaiaError, match=r"decoder-layer stack.*Flat"):
        model_map(Flat())
