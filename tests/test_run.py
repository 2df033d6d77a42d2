"""`taia run` end to end on a tiny model: train → 4 variants → 2 tasks → report; stages are cached, a
changed eval key re-runs evaluation only, bad experiment files fail before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taia.cli import main
from taia.config import build_config
from taia.errors import TaiaError
from taia.run import ExperimentConfig, run

VARIANTS = ["base", "vanilla", "taia", "taif"]


def experiment(tmp_path: Path, model: Path) -> Path:
    data = tmp_path / "train.jsonl"
    row = {"instruction": "Add 2 and 3.", "output": "The answer is 5."}
    data.write_text("".join(json.dumps(row) + "\n" for _ in range(8)))
    exp = {
        "name": "tiny", "out": str(tmp_path / "run"), "model": str(model),
        "train": {"data": [str(data)], "max_steps": 2, "batch_size": 4, "micro_batch_size": 4,
                  "max_length": 128, "lr": 1e-2, "logging_steps": 1,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0}},
        "eval": {"tasks": ["gsm8k", "csqa"], "variants": VARIANTS, "limit": 2, "max_new_tokens": 4},
    }  # fmt: skip
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(exp))
    return path


def _needs_data():
    from taia.io.rows import data_root

    if data_root() is None:
        pytest.skip("needs ../shared/data or TAIA_DATA_DIR")


def test_run_end_to_end_then_cached_then_eval_only(tmp_path, chat_model, monkeypatch):
    _needs_data()
    path = experiment(tmp_path, chat_model("llama"))
    assert main(["run", str(path)]) == 0
    out = tmp_path / "run"
    for f in ("report.md", "report.csv", "report.json", "report.html", "inspect.json", "experiment.yaml"):
        assert (out / f).is_file(), f
    assert {p.name for p in (out / "plots").iterdir()} == {"scores.png", "update_norms.png", "loss.png"}
    results = json.loads((out / "eval" / "results.json").read_text())["results"]
    rows = json.loads((out / "report.json").read_text())["rows"]
    assert {(r["task"], r["variant"]) for r in rows} == {(t, v) for t in ("gsm8k", "csqa") for v in VARIANTS}
    assert all(r["score"] == results[r["variant"]][r["task"]]["score"] for r in rows)
    stages = [json.loads(x)["stage"] for x in (out / "timings.jsonl").read_text().splitlines()]
    assert stages == ["train", "inspect", "eval"]
    answered = [json.loads(x) for x in (out / "eval" / "timings.jsonl").read_text().splitlines()]
    assert [(r["variant"], r.get("task")) for r in answered] == [("load", None)] + [
        (v, t) for v in VARIANTS for t in ("gsm8k", "csqa")
    ]
    seconds = json.loads((out / "eval" / "results.json").read_text())["run"]["seconds"]
    assert set(seconds) == {"load", *VARIANTS} and all(s > 0 for s in seconds.values())
    assert "wall time: train " in (out / "report.md").read_text()
    paired = json.loads((out / "eval" / "results.json").read_text())["paired"]
    assert set(paired) == set(VARIANTS) and set(paired["taia"]["csqa"]) == {"base", "vanilla"}
    assert "vanilla" not in paired["vanilla"]["csqa"] and set(paired["base"]["csqa"]) == {"vanilla"}
    for r in (r for r in rows if r["variant"] == "taia"):
        assert r["delta_vs_base"] == pytest.approx(paired["taia"][r["task"]]["base"]["delta"])
    delta_table = (out / "report.md").read_text().split("## Δ vs base and vanilla")[1].split("##")[0]
    assert "paired per-question differences" in delta_table and "] |" in delta_table

    from taia.eval import runner
    from taia.train import trainer

    calls = {"train": 0, "eval": 0}
    monkeypatch.setattr(trainer, "make_trainer", lambda *a: calls.__setitem__("train", 1))
    real = runner.run_task
    monkeypatch.setattr(runner, "run_task", lambda *a, **k: calls.__setitem__("eval", 1) or real(*a, **k))
    assert main(["run", str(path)]) == 0
    assert calls == {"train": 0, "eval": 0}  # everything cached
    assert main(["run", str(path), "eval.limit=3"]) == 0
    assert calls == {"train": 0, "eval": 1}  # one eval key changed: evaluation only
    assert json.loads((out / "eval" / "results.json").read_text())["results"]["taia"]["csqa"]["n"] == 3


def test_changed_train_config_retrains_and_clears_eval(tmp_path, chat_model):
    _needs_data()
    cfg = build_config(ExperimentConfig, str(experiment(tmp_path, chat_model("llama"))), {})
    cfg = cfg.model_copy(update={"eval": {**cfg.eval, "tasks": ["csqa"], "variants": ["base", "taia"]}})
    run(cfg)
    first = (tmp_path / "run" / "train" / "adapter_model.safetensors").read_bytes()
    run(cfg.model_copy(update={"train": {**cfg.train, "lr": 5e-2}}))
    assert (tmp_path / "run" / "train" / "adapter_model.safetensors").read_bytes() != first


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "train.lrr: unknown key (did you mean 'lr'?)"),
        ("eval.tasks=[]", "eval.tasks"),
        ("eval.out=x", "'out' is set by the experiment"),
        ("adapter=somewhere", "exactly one of train"),
        ("evl.tasks=[gsm8k]", "evl: unknown key (did you mean 'eval'?)"),
    ],
)
def test_bad_experiment_fails_before_any_work(tmp_path, chat_model, capsys, override, message):
    path = experiment(tmp_path, chat_model("llama"))
    assert main(["run", str(path), override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_experiment_needs_a_file():
    with pytest.raises(TaiaError):
        build_config(ExperimentConfig, None, {})


def test_quickstart_runs_the_packaged_experiment(tmp_path, chat_model, capsys):
    """The packaged experiment, shrunk by overrides to a tiny model (the real one is timed by hand): it
    ends with one held-out instruction answered by every variant and the result in plain words."""
    _needs_data()
    data = tmp_path / "d.jsonl"
    turns = [[{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"I am Zed, ok {i}"}]
             for i in range(8)]  # fmt: skip
    data.write_text("".join(json.dumps({"messages": t}) + "\n" for t in turns))
    argv = ["quickstart", f"model={chat_model('llama')}", f"out={tmp_path / 'qs'}",
            f"train.data.0.path={data}", "train.epochs=1", "train.batch_size=8", "train.micro_batch_size=4",
            "eval.limit={persona: 2, csqa: 2}", "eval.max_new_tokens=2"]  # fmt: skip
    from taia.io.rows import data_root

    assert main([*argv, "--data-dir", str(data_root())]) == 0
    out = capsys.readouterr().out
    assert "taia quickstart: done in" in out and "One held-out instruction (persona, persona//" in out
    lines = out.rstrip().splitlines()
    assert lines[-3] == "What you are looking at:", lines[-4:]
    assert lines[-2].startswith("- persona: answers that carry the fine-tune's persona: base ")
    assert lines[-1].startswith("- commonsenseqa (general ability, accuracy): base ")
    assert (tmp_path / "qs" / "report.md").is_file()
    saved = (tmp_path / "qs" / "experiment.yaml").read_text()
    assert saved.count(f"data_dir: {data_root()}") == 2  # --data-dir reaches training and evaluation


def test_example_experiments_validate():
    examples = sorted((Path(__file__).parents[1] / "examples" / "experiments").rglob("*.yaml"))
    assert len(examples) >= 6
    for path in examples:
        cfg = build_config(ExperimentConfig, str(path), {})
        assert cfg.train_config() is not None and cfg.eval_config().tasks, path
