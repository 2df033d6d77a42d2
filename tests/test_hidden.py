"""`taia inspect --hidden-states`: cosine to base and rank ratio after attention, against hand computations.

The hand side runs separately loaded models (base, and vanilla merged by PEFT or the full fine-tune) one
prompt at a time (no padding), takes `output_hidden_states`, and reads the attention residual h + attn(h)
as the input of the norm in front of the FFN (pre-norm Llama and GPT-2), found here by leaf name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import lora_adapter, perturbed, tiny_model
from taia.analysis import hidden
from taia.analysis import hidden_outputs as report
from taia.cli import main
from taia.config import InspectConfig, build_config
from taia.errors import TaiaError
from taia.eval.kinds import request
from taia.eval.task import Sample
from taia.eval.tasks import get_task
from taia.io.rows import data_root

QUESTIONS = ["Where do birds live?", "Why is the sky blue?", "What is two plus two, in words please?"]
OPTIONS = ("in a nest", "in the sea")


def samples(tasks: tuple[str, ...] = ("csqa",)) -> dict[str, list[Sample]]:
    return {t: [Sample(str(i), q, "A", OPTIONS) for i, q in enumerate(QUESTIONS)] for t in tasks}


@pytest.fixture(scope="module")
def models(chat_model, tmp_path_factory):
    """models(arch) → (base dir with tokenizer, LoRA adapter dir, full fine-tune dir)."""
    cache: dict[str, tuple[Path, Path, Path]] = {}

    def get(arch: str = "llama") -> tuple[Path, Path, Path]:
        if arch not in cache:
            root = tmp_path_factory.mktemp(f"hidden-{arch}")
            lora_adapter(tiny_model(arch)).save_pretrained(root / "adapter")
            perturbed(tiny_model(arch)).save_pretrained(root / "finetuned")
            cache[arch] = (chat_model(arch), root / "adapter", root / "finetuned")
        return cache[arch]

    return get


def config(base: Path, source: str, path: Path, **kw) -> InspectConfig:
    fields = {"base": str(base), source: str(path), "hidden_states": True, "tasks": ["csqa"], "batch_size": 2}
    return InspectConfig(**{**fields, **kw})


def by_key(result: dict, task: str = "all") -> dict[tuple[str, int | None], dict]:
    return {(r["variant"], r["layer"]): r for r in result["rows"] if r["task"] == task}


# ------------------------------------------------------------------------------------------ measures


def test_effective_rank_of_constructed_matrices():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(7, 1, generator=g), torch.randn(1, 5, generator=g)
    assert hidden.effective_rank(u.double() @ v.double()) == pytest.approx(1.0, abs=1e-9)
    assert hidden.effective_rank(u @ v) == pytest.approx(1.0, abs=1e-5)  # fp32 rounding: σ₂ ≈ 1e-7·σ₁
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    assert hidden.effective_rank(q) == pytest.approx(6.0, abs=1e-9)  # orthogonal: full rank
    assert hidden.effective_rank(3.0 * q[:4]) == pytest.approx(4.0, abs=1e-9)  # orthonormal rows, scaled
    assert hidden.effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0]))) == pytest.approx(2.0)
    p = torch.tensor([0.75, 0.25], dtype=torch.float64)  # σ = (3, 1)
    want = math.exp(-float((p * p.log()).sum()))
    assert hidden.effective_rank(torch.diag(torch.tensor([3.0, 1.0]))) == pytest.approx(want, rel=1e-12)
    assert hidden.effective_rank(torch.zeros(3, 4)) == 0.0


def test_token_cosines_ignore_pads():
    a = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 1.0]]])
    b = torch.tensor([[[float("nan"), 1.0], [1.0, 0.0], [1.0, 1.0]]])
    mask = torch.tensor([[0, 1, 1]])
    got = hidden.token_cosines(a, b, mask)
    assert got.tolist() == pytest.approx([(1.0 + 1 / math.sqrt(2)) / 2])


@pytest.mark.parametrize(("arch", "attn_cls"), [("llama", "LlamaAttention"), ("gpt2", "GPT2Attention")])
def test_attention_blocks_are_found_structurally(models, arch, attn_cls):
    from peft import PeftModel

    base, adapter, _ = models(arch)
    plain = AutoModelForCausalLM.from_pretrained(str(base))
    layers = plain.model.layers if arch == "llama" else plain.transformer.h
    blocks = hidden.attention_blocks(plain)
    assert [b[0] for b in blocks] == list(layers)
    assert [type(b[1]).__name__ for b in blocks] == [attn_cls] * 2
    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(adapter))
    wrapped = hidden.attention_blocks(peft)  # the live modules under the PEFT wrapper, not meta copies
    inner = peft.get_base_model()
    assert [b[0] for b in wrapped] == list(inner.model.layers if arch == "llama" else inner.transformer.h)
    assert all(p.device.type != "meta" for b in wrapped for p in b[1].parameters())


# ------------------------------------------------------------------------------------------ by hand


def residual_input(model, arch: str) -> tuple[list[torch.Tensor], list]:
    """Hooks keeping the input of the norm before each FFN: h + attn(h) in a pre-norm block."""
    layers = model.model.layers if arch == "llama" else model.transformer.h
    kept: list[torch.Tensor] = []
    norms = [layer.post_attention_layernorm if arch == "llama" else layer.ln_2 for layer in layers]
    handles = [n.register_forward_pre_hook(lambda m, args: kept.append(args[0][0])) for n in norms]
    return kept, handles


def hand(base_dir: Path, other, arch: str, prompts: list[str]) -> dict[str, list[float]]:
    """Per layer: mean over prompts of the per-prompt token-mean cosine, and both mean effective ranks."""
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    base = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    cos: list[float] = []
    ranks: dict[str, list[float]] = {"base": [], "other": []}
    for text in prompts:
        ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        states, layer_ranks = {}, {}
        for key, model in (("base", base), ("other", other)):
            kept, handles = residual_input(model, arch)
            with torch.no_grad():
                states[key] = model(input_ids=ids, output_hidden_states=True).hidden_states
            for h in handles:
                h.remove()
            layer_ranks[key] = [float(_erank(r)) for r in kept]
        per = [
            float(torch.nn.functional.cosine_similarity(o[0].double(), b[0].double(), dim=-1).mean())
            for o, b in zip(states["other"], states["base"], strict=True)
        ]
        cos = _plus(cos, per)
        for key in ranks:
            ranks[key] = _plus(ranks[key], layer_ranks[key])
    n = len(prompts)
    return {"cosine": [c / n for c in cos], **{k: [r / n for r in v] for k, v in ranks.items()}}


def _plus(a: list[float], b: list[float]) -> list[float]:
    return [x + y for x, y in zip(a, b, strict=True)] if a else list(b)


def _erank(x: torch.Tensor) -> float:
    s = torch.linalg.svdvals(x.double())
    p = s / s.sum()
    return math.exp(-float((p * p.log()).sum()))


def vanilla_model(source: str, base: Path, path: Path):
    if source == "finetuned":
        return AutoModelForCausalLM.from_pretrained(str(path)).eval()
    from peft import PeftModel

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base)), str(path))
    return model.merge_and_unload().eval()


def csqa_prompts(base: Path) -> list[str]:
    tok = AutoTokenizer.from_pretrained(str(base))
    return [request(get_task("csqa"), s, "standard", tok).context for s in samples()["csqa"]]


@pytest.mark.parametrize(
    ("arch", "source"), [("llama", "adapter"), ("llama", "finetuned"), ("gpt2", "adapter")]
)
def test_vanilla_matches_hand_computation(models, arch, source):
    base, adapter, finetuned = models(arch)
    path = adapter if source == "adapter" else finetuned
    result = hidden.inspect_hidden(config(base, source, path, variants=["vanilla"]), samples())
    prompts = csqa_prompts(base)
    assert prompts[0] == f"Question: {QUESTIONS[0]}\nAnswer:"
    want = hand(base, vanilla_model(source, base, path), arch, prompts)
    got = by_key(result)
    assert result["tasks"] == {"csqa": 3} and result["num_layers"] == 2
    for index, value in enumerate(want["cosine"]):
        layer = None if index == 0 else index - 1
        assert got["vanilla", layer]["cosine"] == pytest.approx(value, abs=1e-5), (layer, value)
    for layer in range(2):
        row = got["vanilla", layer]
        assert row["base_erank"] == pytest.approx(want["base"][layer], rel=1e-5)
        assert row["erank"] == pytest.approx(want["other"][layer], rel=1e-5)
        assert row["rank_ratio"] == pytest.approx(want["other"][layer] / want["base"][layer], rel=1e-5)
        assert row["cosine"] < 0.999  # the fine-tune really moved the states: the test can fail
    emb = got["vanilla", None]["cosine"]
    assert emb == pytest.approx(1.0, abs=1e-6) if source == "adapter" else emb < 0.999


@pytest.mark.parametrize("source", ["adapter", "finetuned"])
def test_base_against_itself_is_one_at_every_layer(models, source):
    base, adapter, finetuned = models("llama")
    path = adapter if source == "adapter" else finetuned
    # base after another variant: switching back must restore the base exactly
    cfg = config(base, source, path, variants=["vanilla", "base", "taia"])
    got = by_key(hidden.inspect_hidden(cfg, samples()))
    for layer in (None, 0, 1):
        assert abs(got["base", layer]["cosine"] - 1.0) <= 1e-6, layer
    for layer in (0, 1):
        assert got["base", layer]["rank_ratio"] == pytest.approx(1.0, abs=1e-9)
    # TAIA keeps base embeddings; at layer 0 TAIF runs base embeddings through base attention
    assert got["taia", None]["cosine"] == pytest.approx(1.0, abs=1e-6)


def test_taif_first_residual_equals_base(models):
    base, _, finetuned = models("llama")
    got = by_key(hidden.inspect_hidden(config(base, "finetuned", finetuned, variants=["taif"]), samples()))
    assert got["taif", 0]["rank_ratio"] == pytest.approx(1.0, abs=1e-9)  # emb + attn both from base
    assert got["taif", 0]["cosine"] < 0.999  # the layer's FFN is the fine-tune's


def test_per_task_rows_and_pooled_means(models):
    base, adapter, _ = models("gpt2")
    cfg = config(base, "adapter", adapter, tasks=["csqa", "mmlu"], variants=["taia"])
    result = hidden.inspect_hidden(cfg, samples(("csqa", "mmlu")))
    assert result["tasks"] == {"csqa": 3, "mmlu": 3}
    pooled, csqa, mmlu = by_key(result), by_key(result, "csqa"), by_key(result, "mmlu")
    for key, row in pooled.items():  # same prompts in both tasks: the pooled mean is either's
        assert row["cosine"] == pytest.approx(csqa[key]["cosine"], abs=1e-12)
        assert row["cosine"] == pytest.approx(mmlu[key]["cosine"], abs=1e-12)
    assert len(result["rows"]) == 3 * 3  # (emb + 2 layers) × 1 variant × (all, csqa, mmlu)


def test_padding_does_not_change_the_numbers(models):
    base, adapter, _ = models("llama")
    one = hidden.inspect_hidden(config(base, "adapter", adapter, batch_size=1), samples())
    three = hidden.inspect_hidden(config(base, "adapter", adapter, batch_size=3), samples())
    for key, row in by_key(one).items():
        for field in ("cosine", "erank", "rank_ratio"):
            if row[field] is not None:
                assert by_key(three)[key][field] == pytest.approx(row[field], rel=1e-5), (key, field)


# ------------------------------------------------------------------------------------------ CLI == API


def test_cli_equals_api_and_writes_outputs(models, monkeypatch, tmp_path, capsys):
    base, adapter, _ = models("llama")
    monkeypatch.setattr(hidden, "load_samples", lambda name, root, limit, seed: samples()["csqa"][:limit])
    out = tmp_path / "hs"
    argv = ["inspect", "--base", str(base), "--adapter", str(adapter), "--hidden-states"]
    argv += ["--tasks", "csqa", "--limit", "2", "--batch-size", "2", "--out", str(out), "--json"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tasks"] == {"csqa": 2} and printed["variants"] == ["vanilla", "taia", "taif"]
    assert json.loads((out / report.RESULT).read_text()) == printed
    csv_lines = (out / report.CSV).read_text().splitlines()
    assert csv_lines[0] == ",".join(report.COLUMNS) and len(csv_lines) == 1 + 3 * 3
    assert csv_lines[1].startswith("all,vanilla,emb,")
    for png in (report.COSINE_PNG, report.RANK_PNG):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cfg = config(base, "adapter", adapter, limit=2, out=str(out), json_output=True)
    assert build_config(InspectConfig, str(out / report.CONFIG), {}) == cfg  # the CLI's resolved config
    assert hidden.inspect_hidden(cfg) == printed


def test_cli_table(models, monkeypatch, capsys):
    base, _, finetuned = models("llama")
    monkeypatch.setattr(hidden, "load_samples", lambda name, root, limit, seed: samples()["csqa"])
    argv = [
        "inspect",
        "--base",
        str(base),
        "--finetuned",
        str(finetuned),
        "--hidden-states",
        "--tasks",
        "csqa",
    ]
    assert main([*argv, "--variants", "vanilla,taia"]) == 0
    text = capsys.readouterr().out
    assert "cosine to base" in text and "rank ratio" in text and "base erank" in text
    lines = text.splitlines()
    assert lines[0].startswith("llama, 2 layers; 3 prompts (csqa 3)")
    assert lines[2].split() == ["layer", "vanilla", "taia"] and lines[3].split()[0] == "emb"
    assert lines[3].split()[2] == "1.0000"  # TAIA's embeddings are the base's


def test_cli_errors_are_one_line(models, capsys):
    base, adapter, _ = models("llama")
    assert main(["inspect", "--model", str(base), "--hidden-states", "--tasks", "csqa"]) == 2
    assert "hidden_states compares variants" in capsys.readouterr().err
    assert main(["inspect", "--base", str(base), "--adapter", str(adapter), "--tasks", "csqa"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taia: error: ") and err.count("\n") == 1 and "only apply with hidden_states" in err


# ------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"base": "b", "adapter": "a", "tasks": "csqa"}, "tasks only apply with hidden_states"),
        ({"base": "b", "adapter": "a", "out": "o"}, "out only apply with hidden_states"),
        ({"model": "m", "hidden_states": True, "tasks": "csqa"}, "hidden_states compares variants"),
        ({"base": "b", "adapter": "a", "hidden_states": True}, "hidden_states needs tasks"),
        ({"base": "b", "adapter": "a", "hidden_states": True, "tasks": "csqa,csqa"}, "listed twice"),
        (
            {"base": "b", "adapter": "a", "hidden_states": True, "tasks": "csqa", "batch_size": 0},
            "batch_size",
        ),
        ({"base": "b", "adapter": "a", "hidden_states": True, "tasks": "csqa", "limit": 0}, "limit"),
    ],
)
def test_config_errors(fields, match):
    with pytest.raises(TaiaError, match=match):
        build_config(InspectConfig, None, fields)


def test_config_lists_defaults_and_round_trip(tmp_path):
    fields = {"base": "b", "finetuned": "f", "hidden_states": True, "tasks": "csqa, mmlu", "variants": "taia"}
    cfg = build_config(InspectConfig, None, fields)
    assert cfg.tasks == ["csqa", "mmlu"] and cfg.variants == ["taia"] and cfg.protocol == "standard"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert build_config(InspectConfig, str(tmp_path / "c.yaml"), {}) == cfg
    assert build_config(InspectConfig, None, {"base": "b", "adapter": "a"}).variants == [
        "vanilla",
        "taia",
        "taif",
    ]


# ------------------------------------------------------------------------------------------ real data


def test_real_csqa_prompts(models):
    root = data_root()
    if root is None or not (root / "commonsenseqa").is_dir():
        pytest.skip("no task data under the data root")
    base, adapter, _ = models("llama")
    result = hidden.inspect_hidden(config(base, "adapter", adapter, limit=2, data_dir=str(root)))
    assert result["tasks"] == {"csqa": 2} and result["tokens"] > 20
    for row in result["rows"]:
        assert -1.0 <= row["cosine"] <= 1.0 + 1e-9
