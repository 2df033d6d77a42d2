"""The `loracl` variant (taia.eval.loracl): per prompt, base's or vanilla's answer, whichever model has the
lower perplexity on the prompt. Every perplexity is checked against base and fine-tuned models loaded
*separately* (the reference code scored one merged model twice, so its routing compared a model with
itself). Also: `HFBackend.prompt_nll` on padded batches, accuracy of the routed rows, resume, bad inputs.
Run: `pytest tests/test_loracl.py`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from conftest import chat_tokenizer, lora_adapter, perturbed, tiny_model
from taia.errors import TaiaError
from taia.eval import EvalConfig, evaluate
from taia.eval.backends.hf import HFBackend
from taia.eval.task import Sample

ROUTING = ("route", "nll_base", "nll_vanilla", "ppl_base", "ppl_vanilla")
QUESTIONS = [
    "Tom has 3 apples and buys 2 more. How many apples does he have?",
    "What is 12 times 7?",
    "A train goes 60 km in one hour. How far does it go in 3 hours at that speed?",
    "Add 1 and 1.",
    "Sara had 40 stickers, gave away a quarter of them and then bought 9. How many now?",
    "What is 100 - 37?",
]
OPTIONS = ("a river", "a bank", "the moon", "a kitchen", "a forest")


def samples(n: int = 6) -> dict[str, list[Sample]]:
    return {
        "gsm8k": [Sample(f"g{i}", q, str(i)) for i, q in enumerate(QUESTIONS[:n])],
        "csqa": [Sample(f"c{i}", f"Where would you keep item {i}? {q}", "ABCDE"[i % 5], OPTIONS)
                 for i, q in enumerate(QUESTIONS[:n])],
    }  # fmt: skip


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """{"adapter": a LoRA dir, "finetuned": a perturbed full checkpoint}, both of chat_model('llama')'s
    weights (tiny_model('llama'), seed 0); neither saves a tokenizer, so the base's is used."""
    root = tmp_path_factory.mktemp("loracl")
    lora_adapter(tiny_model("llama")).save_pretrained(root / "adapter")
    perturbed(tiny_model("llama")).save_pretrained(root / "finetuned")
    return {"adapter": root / "adapter", "finetuned": root / "finetuned"}


def config(tmp_path: Path, model: Path, **kw) -> EvalConfig:
    opts = dict(model=str(model), tasks=["gsm8k", "csqa"], variants=["base", "vanilla", "loracl"],
                out=str(tmp_path / "ev"), max_new_tokens=4, batch_size=4)  # fmt: skip
    return EvalConfig.model_validate({**opts, **kw})


def read_rows(out: Path, variant: str, task: str) -> dict[str, dict]:
    lines = (out / "samples" / variant / f"{task}.jsonl").read_text().splitlines()
    return {r["id"]: r for r in map(json.loads, lines)}


def hand_nll(model, tokenizer, text: str) -> tuple[float, int]:
    """Σ_{t≥1} −log p(x_t | x_<t) and n − 1, from one unpadded forward of the prompt alone."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 2:
        return 0.0, 0
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logprobs = torch.log_softmax(logits[:-1].double(), dim=-1)
    return float(-sum(logprobs[t - 1, ids[t]] for t in range(1, len(ids)))), len(ids) - 1


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_prompt_nll_equals_hand_computation_on_padded_batches(model_type, monkeypatch):
    model, tok = tiny_model(model_type), chat_tokenizer()
    prompts = ["x", "Hi there", QUESTIONS[1], "ab", "Tom has 3 apples and buys 2 more?", "Q: 2+2?\nA:"]
    want = [hand_nll(model, tok, p) for p in prompts]
    assert sorted({n for _, n in want}) == sorted({len(p) - 1 for p in prompts})  # lengths differ
    for tokens in (2048, 40):  # 40: the token budget cuts batches below batch_size
        monkeypatch.setattr("taia.eval.backends.hf._NLL_TOKENS", tokens)
        got = HFBackend(model, tok, batch_size=3).prompt_nll(prompts)
        assert [n for _, n in got] == [n for _, n in want]
        assert got[0] == (0.0, 0)  # one token: nothing predicted
        torch.testing.assert_close([s for s, _ in got], [s for s, _ in want], rtol=1e-5, atol=1e-4)


def load_separately(model_dir: Path, kind: str, path: Path):
    """Base and vanilla as two independent models (never the one model switched, never one twice)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    if kind == "adapter":
        vanilla = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), path)
    else:
        vanilla = AutoModelForCausalLM.from_pretrained(path)
    return base, vanilla.eval()


@pytest.mark.parametrize(("kind", "protocol"), [("adapter", "standard"), ("adapter", "paper"),
                                                ("finetuned", "standard")])  # fmt: skip
def test_routes_by_perplexity_of_separately_loaded_models(tmp_path, chat_model, tuned, kind, protocol):
    model_dir = chat_model("llama")
    cfg = config(tmp_path, model_dir, protocol=protocol, **{kind: str(tuned[kind])})
    report = evaluate(cfg, samples=samples())
    base, vanilla = load_separately(model_dir, kind, tuned[kind])
    tok, out, routes = chat_tokenizer(), Path(cfg.out), []
    for task in cfg.tasks:
        answered = {v: read_rows(out, v, task) for v in ("base", "vanilla", "loracl")}
        for sid, row in answered["loracl"].items():
            assert "<|im_start|>" in row["prompt"] or task == "csqa"  # the templated prompt the model reads
            nb, nv = (s / n for s, n in (hand_nll(m, tok, row["prompt"]) for m in (base, vanilla)))
            assert abs(nb - nv) > 1e-3  # the fine-tune really changes the prompt's perplexity
            assert row["nll_base"] == pytest.approx(nb, abs=1e-4)
            assert row["nll_vanilla"] == pytest.approx(nv, abs=1e-4)
            assert row["route"] == ("vanilla" if nv < nb else "base")
            assert {k: v for k, v in row.items() if k not in ROUTING} == answered[row["route"]][sid]
            routes.append(row["route"])
        rows = answered["loracl"].values()
        result = report["results"]["loracl"][task]
        chosen = [answered[r["route"]][r["id"]] for r in rows]
        assert result["score"] == pytest.approx(sum(r["correct"] for r in chosen) / 6)
        assert result["routed_vanilla"] == pytest.approx(sum(r["route"] == "vanilla" for r in rows) / 6)
        assert set(report["paired"]["loracl"][task]) == {"base", "vanilla"}
    assert set(routes) == {"base", "vanilla"}, routes  # both routes taken, so routing is really tested


def test_tie_goes_to_base_and_one_token_prompts_tie():
    from taia.eval.loracl import mean_nll, routed_row

    rows = {"base": {"id": "a", "output": "b"}, "vanilla": {"id": "a", "output": "v"}}
    assert routed_row(rows, {"base": 1.5, "vanilla": 1.5})["route"] == "base"
    assert routed_row(rows, {"base": 1.5, "vanilla": 1.25})["output"] == "v"
    assert mean_nll(0.0, 0) == 0.0


def test_resume_scores_only_prompts_without_a_row(tmp_path, chat_model, tuned, monkeypatch):
    cfg = config(tmp_path, chat_model("llama"), adapter=str(tuned["adapter"]))
    calls: list[int] = []
    real = HFBackend.prompt_nll

    def spy(self, prompts, **kw):
        calls.append(len(prompts))
        return real(self, prompts, **kw)

    monkeypatch.setattr(HFBackend, "prompt_nll", spy)
    first = evaluate(cfg, samples=samples(3))
    assert calls == [3, 3, 3, 3]  # 2 tasks × (base, vanilla)
    before = (Path(cfg.out) / "samples" / "loracl" / "gsm8k.jsonl").read_text()
    calls.clear()
    evaluate(cfg, samples=samples(5))
    assert calls == [2, 2, 2, 2]  # only the 2 new prompts of each task
    after = (Path(cfg.out) / "samples" / "loracl" / "gsm8k.jsonl").read_text()
    assert after.startswith(before) and len(after.splitlines()) == 5
    calls.clear()
    monkeypatch.setattr("taia.eval.backends.make_backend", lambda *a: pytest.fail("loaded a model"))
    again = evaluate(cfg, samples=samples(5))
    assert calls == [] and again["results"]["loracl"]["gsm8k"]["n"] == 5
    assert first["results"]["loracl"]["csqa"]["n"] == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"variants": ["base", "loracl"]}, "add vanilla to the variants"),
        ({"variants": ["taia", "loracl"]}, "add base and vanilla"),
        ({"adapter": None}, "needs a fine-tune"),
        ({"backend": "vllm"}, "needs --backend hf"),
        ({"harness": "lm-eval"}, "needs harness=taia"),
    ],
)
def test_bad_inputs_fail_before_any_work(tmp_path, chat_model, tuned, change, message):
    cfg = config(tmp_path, chat_model("llama"), **{"adapter": str(tuned["adapter"]), **change})
    with pytest.raises(TaiaError, match=message):
        evaluate(cfg, samples=samples(2))
    assert not Path(cfg.out).exists()


def test_experiment_without_vanilla_fails_before_training(tmp_path):
    from taia.run import ExperimentConfig

    exp = {"out": str(tmp_path / "run"), "adapter": "somewhere",
           "eval": {"tasks": ["gsm8k"], "variants": ["base", "taia", "loracl"]}}  # fmt: skip
    with pytest.raises(ValidationError, match=r"eval\.variants: variant 'loracl' routes between"):
        ExperimentConfig.model_validate(exp)
    exp["eval"]["variants"] = ["base", "vanilla", "loracl"]
    assert ExperimentConfig.model_validate(exp).eval_config().variants[-1] == "loracl"


def test_report_shows_loracl_in_the_given_order(tmp_path, chat_model, tuned, monkeypatch):
    from taia.run.render import write_report

    monkeypatch.setattr("taia.run.plots.make_plots", lambda *a: {})  # plots take any variant names; slow

    variants = ["base", "loracl", "vanilla", "taia"]
    cfg = config(tmp_path, chat_model("llama"), adapter=str(tuned["adapter"]), variants=variants)
    report = evaluate(cfg, samples=samples(2))
    assert list(report["results"]) == variants
    assert report["run"]["specs"]["loracl"]["description"].startswith("LoRACL")
    paths = write_report(Path(cfg.out), html=True)
    md = paths["md"].read_text()
    assert "| task | base | loracl | vanilla | taia |" in md and "variant loracl: LoRACL" in md
    rows = json.loads(paths["json"].read_text())["rows"]
    assert {(r["task"], r["variant"]) for r in rows} == {(t, v) for t in cfg.tasks for v in variants}


def test_a_spec_file_may_not_take_the_routers_name(tmp_path):
    from taia.eval.variants import resolve_specs, variant_names

    specs = resolve_specs(["vanilla", "loracl", "base"])
    assert variant_names(["vanilla", "loracl", "base"], specs) == ["vanilla", "loracl", "base"]
    (tmp_path / "mine.yaml").write_text("name: loracl\ngroups: {attn: 1.0}\n")
    with pytest.raises(TaiaError, match="two variants are named 'loracl'"):
        resolve_specs(["base", str(tmp_path / "mine.yaml")])
