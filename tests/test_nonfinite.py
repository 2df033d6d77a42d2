"""A variant whose scores are not finite is refused, never averaged into a result: a λ that overflows the
weights (`attn: 1.0e+39`, a float the spec parser takes as finite) and a fine-tune with NaN weights, on a
choice task (log-likelihoods) and a generation task (logits), each one line naming variant and task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import lora_adapter, tiny_model
from taia.cli import main
from taia.spec import load_spec
from test_eval_resume import ROWS, SUMS, write_task


def nan_fine_tune(path: Path) -> None:
    """A full fine-tune whose every weight is NaN (what fp16 overflow in training can leave)."""
    model = tiny_model("llama")
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.save_pretrained(path)


def test_the_spec_parser_takes_1e39_as_a_finite_lambda(tmp_path):
    (tmp_path / "big.yaml").write_text("groups:\n  attn: 1.0e+39\n")
    assert load_spec(str(tmp_path / "big.yaml")).groups["attn"].lam == 1e39  # overflows fp32 weights


@pytest.mark.parametrize("task", ["pick", "sums"])
@pytest.mark.parametrize("source", ["overflowing-lambda", "nan-weights"])
def test_non_finite_scores_are_refused_naming_variant_and_task(tmp_path, chat_model, capsys, source, task):
    model = chat_model("llama")
    if source == "nan-weights":
        nan_fine_tune(tmp_path / "ft")
        tune, variant = ["--finetuned", str(tmp_path / "ft")], "vanilla"
    else:
        lora_adapter(tiny_model("llama")).save_pretrained(tmp_path / "lora")
        (tmp_path / "big.yaml").write_text("groups:\n  attn: 1.0e+39\n")
        tune, variant = ["--adapter", str(tmp_path / "lora")], str(tmp_path / "big.yaml")
    kind, rows = ("mc", ROWS) if task == "pick" else ("number", SUMS)
    task_file = write_task(tmp_path, task, kind, rows)
    out = tmp_path / "ev"
    argv = ["eval", "--model", str(model), *tune, "--tasks", str(task_file), "--variants", f"base,{variant}",
            "--max-new-tokens", "3", "--out", str(out)]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 2
    name = "vanilla" if source == "nan-weights" else "big"
    what = "option log-likelihoods" if task == "pick" else "logits"
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"taia: error: {name}/{task}: the model's {what} for sample '{task}//")
    assert "are not finite (NaN or Inf): refused, not scored" in err
    assert not (out / "results.json").exists()  # no accuracy of it, nor of anything else
    assert not (out / "samples" / name / f"{task}.jsonl").exists()  # none of its answers kept
    assert len((out / "samples" / "base" / f"{task}.jsonl").read_text().splitlines()) == len(rows)
    assert main(argv) == 2  # resumed: base's answers kept, the variant refused again
    assert capsys.readouterr().err.strip().splitlines()[-1] == err


def test_finite_scores_pass_the_check_unchanged(tmp_path, chat_model):
    lora_adapter(tiny_model("llama")).save_pretrained(tmp_path / "lora")
    task_file = write_task(tmp_path, "pick", "mc", ROWS)
    argv = ["eval", "--model", str(chat_model("llama")), "--adapter", str(tmp_path / "lora"), "--tasks",
            str(task_file), "--variants", "base,vanilla", "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]
    assert all(results[v]["pick"]["n"] == 3 for v in ("base", "vanilla"))
