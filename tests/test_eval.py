"""`taia eval`: variants switched in place equal freshly applied ones, results resume without loss or
duplicates, a tiny model runs every task end to end, bad inputs fail early with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import logits
from taia.apply import apply_adapter, apply_checkpoint
from taia.cli import main
from taia.errors import TaiaError
from taia.eval import EvalConfig, evaluate
from taia.eval.results import SampleLog
from taia.eval.variants import load_variants, resolve_specs
from taia.spec import load_spec

ORDER = ["vanilla", "taia", "base", "taif", "taia"]  # switching back and forth must not drift


def fresh(model_dir: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "mixtral"])
def test_adapter_variants_switched_in_place_equal_fresh_apply(tmp_path, saved, model_type):
    from peft import PeftModel

    s = saved(model_type)
    variants = load_variants(
        s.base, s.adapter, None, resolve_specs(["vanilla", "taia", "base", "taif"]), None
    )
    for name in ORDER:
        got = logits(variants.switch(name))
        if name == "base":
            want = logits(fresh(s.base))
        else:
            apply_adapter(s.base, s.adapter, tmp_path / name, load_spec(name), overwrite=True)
            want = logits(PeftModel.from_pretrained(fresh(s.base), tmp_path / name).eval())
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model_type", ["llama", "qwen2_moe"])
def test_full_variants_switched_in_place_equal_fresh_apply(tmp_path, saved, model_type):
    s = saved(model_type)
    specs = resolve_specs(["vanilla", "taia", "base", "taif"])
    variants = load_variants(s.base, None, s.finetuned, specs, None)
    for name in ORDER:
        apply_checkpoint(s.base, s.finetuned, tmp_path / name, load_spec(name), overwrite=True)
        torch.testing.assert_close(logits(variants.switch(name)), logits(fresh(tmp_path / name)))


def test_sample_log_drops_a_cut_line_and_never_duplicates(tmp_path):
    path = tmp_path / "s.jsonl"
    log = SampleLog(path)
    log.append([{"id": "a", "correct": True}, {"id": "b", "correct": False}])
    with path.open("a") as f:
        f.write('{"id": "c", "corr')  # a crash mid-line
    again = SampleLog(path)
    assert again.done() == {"a", "b"}
    again.append([{"id": "b", "correct": True}, {"id": "c", "correct": True}])
    ids = [json.loads(x)["id"] for x in path.read_text().splitlines()]
    assert ids == ["a", "b", "c"]


def eval_config(tmp_path: Path, model: Path, **kw) -> EvalConfig:
    opts = dict(model=str(model), tasks=["gsm8k", "csqa"], variants=["base"], limit=3,
                out=str(tmp_path / "ev"), max_new_tokens=4, batch_size=2)  # fmt: skip
    opts.update(kw)
    return EvalConfig.model_validate(opts)


def _needs_data():
    from taia.io.rows import data_root

    if data_root() is None:
        pytest.skip("needs ../shared/data or TAIA_DATA_DIR")


ALL_TASKS = ["gsm8k", "svamp", "math500", "bbh", "csqa", "logiqa", "mmlu", "medqa", "advbench"]


@pytest.mark.parametrize("protocol", ["standard", "paper"])
def test_every_task_end_to_end_on_a_tiny_model(tmp_path, chat_model, protocol):
    _needs_data()
    cfg = eval_config(tmp_path, chat_model("llama"), tasks=ALL_TASKS, limit=2, protocol=protocol)
    report = evaluate(cfg)
    for task in ALL_TASKS:
        r = report["results"]["base"][task]
        assert r["n"] == 2 and 0.0 <= r["score"] <= 1.0 and r["ci95"][0] <= r["score"] <= r["ci95"][1]
        rows = (Path(cfg.out) / "samples" / "base" / f"{task}.jsonl").read_text().splitlines()
        assert len(rows) == 2 and all(
            {"prompt", "output", "gold", "correct"} <= json.loads(x).keys() for x in rows
        )
    assert report["results"]["base"]["advbench"]["metric"] == "attack_success_rate"


def test_resume_answers_only_what_is_missing(tmp_path, chat_model, monkeypatch):
    _needs_data()
    cfg = eval_config(tmp_path, chat_model("llama"), limit=2)
    first = evaluate(cfg)
    more = cfg.model_copy(update={"limit": 4})
    calls: list[int] = []
    from taia.eval import runner

    real = runner.run_task
    monkeypatch.setattr(
        runner, "run_task", lambda b, t, s, *a, **k: calls.append(len(s)) or real(b, t, s, *a, **k)
    )
    evaluate(more)
    assert sum(calls) == 4  # 2 new samples in each of 2 tasks; the 4 done ones are skipped
    calls.clear()
    again = evaluate(more)
    assert calls == []  # nothing missing: no model is even loaded
    assert again["results"]["base"]["gsm8k"]["n"] == 4 and first["results"]["base"]["gsm8k"]["n"] == 2


def test_cli_runs_variants_of_an_adapter(tmp_path, chat_model):
    _needs_data()
    from conftest import lora_adapter, tiny_model

    lora_adapter(tiny_model("llama")).save_pretrained(tmp_path / "lora")
    argv = ["eval", "--model", str(chat_model("llama")), "--adapter", str(tmp_path / "lora"),
            "--tasks", "csqa", "--variants", "base,vanilla,taia", "--limit", "3",
            "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]
    assert set(results) == {"base", "vanilla", "taia"}
    scores = {v: [json.loads(x)["scores"] for x in (tmp_path / "ev" / "samples" / v / "csqa.jsonl").open()]
              for v in results}  # fmt: skip
    assert scores["base"] != scores["vanilla"] != scores["taia"]


def test_bad_inputs(tmp_path, chat_model, capsys, monkeypatch):
    base = ["eval", "--model", str(chat_model("llama")), "--out", str(tmp_path / "ev")]
    assert main([*base, "--tasks", "gsm8kk"]) == 2
    assert "did you mean 'gsm8k'" in capsys.readouterr().err
    assert main([*base, "--tasks", "gsm8k", "--variants", "taai"]) == 2
    assert "'taia'" in capsys.readouterr().err.split("did you mean")[1]
    monkeypatch.setenv("TAIA_DATA_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(
        "taia.eval.tasks.load_hub_rows", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
    )
    assert (
        main([*base, "--tasks", "gsm8k", "--variants", "base", "--data-dir", str(tmp_path / "nowhere")]) == 2
    )
    err = capsys.readouterr().err
    assert "gsm8k/test.jsonl" in err and "TAIA_DATA_DIR" in err
    with pytest.raises(TaiaError, match="needs a fine-tune"):
        evaluate(eval_config(tmp_path, chat_model("llama"), variants=["taia"], out=str(tmp_path / "x")))


def test_empty_outputs_are_scored_wrong_and_reported(tmp_path, chat_model, monkeypatch, capsys):
    _needs_data()
    from taia.eval.backends.hf import HFBackend

    monkeypatch.setattr(HFBackend, "_generate_batch", lambda self, ids, n, stop: [""] * len(ids))
    report = evaluate(eval_config(tmp_path, chat_model("llama"), tasks=["gsm8k", "advbench"], limit=2))
    for task in ("gsm8k", "advbench"):
        r = report["results"]["base"][task]
        assert (r["empty_outputs"], r["score"]) == (2, 0.0)
    assert "gsm8k: 2 of 2 outputs are empty" in capsys.readouterr().out


def test_an_interrupted_run_loses_nothing_and_duplicates_nothing(tmp_path, chat_model, monkeypatch):
    _needs_data()
    from taia.eval.backends.hf import HFBackend

    cfg = eval_config(tmp_path, chat_model("llama"), tasks=["gsm8k"], limit=6, batch_size=2)
    real, calls = HFBackend._generate_batch, []

    def flaky(self, ids, n, stop):
        calls.append(len(ids))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user hits Ctrl-C during the second batch
        return real(self, ids, n, stop)

    monkeypatch.setattr(HFBackend, "_generate_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        evaluate(cfg)
    path = Path(cfg.out) / "samples" / "base" / "gsm8k.jsonl"
    first = path.read_text().splitlines()
    assert len(first) == 2  # the finished batch is on disk
    monkeypatch.setattr(HFBackend, "_generate_batch", real)
    assert evaluate(cfg)["results"]["base"]["gsm8k"]["n"] == 6
    lines = path.read_text().splitlines()
    assert lines[:2] == first and len({json.loads(x)["id"] for x in lines}) == len(lines) == 6


def test_bad_limits_are_refused_before_any_output(tmp_path, chat_model, capsys):
    out = tmp_path / "ev"
    base = ["eval", "--model", str(chat_model("llama")), "--variants", "base", "--out", str(out)]
    assert main([*base, "--tasks", "tiny_mc", "--harness", "lm-eval", "--limit", "{tiny_mc: 2}"]) == 2
    err = capsys.readouterr().err
    assert "--harness lm-eval takes one limit for every task, not a limit per task" in err
    assert not out.exists()
    assert main([*base, "--tasks", "gsm8k,csqa", "--limit", "{csqa: 2, gsm8kk: 2}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("unknown task in limit 'gsm8kk'; did you mean 'gsm8k'? (known: csqa, gsm8k)")
    assert "\n" not in err and not out.exists()
    aliased = eval_config(tmp_path, chat_model("llama"), tasks=["csqa"], limit={"commonsenseqa": 2})
    aliased.check_limit(["csqa"])  # an alias names its task


def test_a_malformed_sample_row_is_one_line_naming_file_and_sample(tmp_path):
    from taia.eval.results import read_rows

    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a", "output": "x"}\n', encoding="utf-8")
    for read in (lambda: SampleLog(path).rescore(lambda row: row), lambda: read_rows(path)):
        with pytest.raises(TaiaError) as bad:
            read()
        assert str(bad.value).startswith(f"{path}: 'a': not a scored sample row: no subset, prompt")
        assert "\n" not in str(bad.value)
    assert [p.name for p in tmp_path.iterdir()] == ["s.jsonl"]


def test_the_runs_generation_budget_replaces_the_tasks(tmp_path, chat_model, monkeypatch):
    _needs_data()
    from taia.eval.backends.hf import HFBackend

    budgets: list[int] = []
    fake = lambda self, ids, n, stop: budgets.append(n) or [""] * len(ids)  # noqa: E731
    monkeypatch.setattr(HFBackend, "_generate_batch", fake)
    evaluate(eval_config(tmp_path, chat_model("llama"), tasks=["gsm8k"], limit=2))  # max_new_tokens=4
    assert set(budgets) == {4}
    evaluate(eval_config(tmp_path, chat_model("llama"), tasks=["gsm8k"], limit=2, max_new_tokens=None,
                         out=str(tmp_path / "own")))  # fmt: skip
    assert set(budgets) == {4, 512}  # gsm8k's own
