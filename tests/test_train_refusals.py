"""What `taia train` refuses about its inputs before it creates the run dir (issue 19): a max_length shorter
than every prompt, a trainer_args value of the wrong type or one TrainingArguments rejects, a chat template
that raises or does not parse. Each is exit code 2, one `taia: error:` line naming the input, nothing on
disk — and the next run into the same `out` trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from taia.cli import main
from test_errors import fails
from test_train import data_file

BASE = dict(
    batch_size=4, micro_batch_size=4, max_steps=1, lr=3e-2, logging_steps=1, max_length=128, warmup=0.0,
    lora={"r": 4, "alpha": 8, "dropout": 0.0},
)  # fmt: skip

RAISES = "{% if messages[0]['role'] == 'user' %}{{ raise_exception('no user role here') }}{% endif %}"
UNPARSED = "{% for m in messages %}{{ m['content'] }"


def config_file(tmp_path: Path, model: Path, **kw) -> Path:
    path = tmp_path / "cfg.yaml"
    opts = {"model": str(model), "data": [str(data_file(tmp_path))], "out": str(tmp_path / "out"), **BASE}
    path.write_text(yaml.safe_dump({**opts, **kw}))
    return path


CASES = {
    "max_length": ({"max_length": 8}, ["max_length=8 is shorter than every prompt", "raise max_length"]),
    "wrong type": (
        {"trainer_args": {"dataloader_num_workers": "two"}},
        ["trainer_args.dataloader_num_workers='two'", "valid integer"],
    ),
    "rejected value": (
        {"trainer_args": {"eval_strategy": "sometimes"}},
        ["invalid training arguments (trainer_args: eval_strategy)", "sometimes"],
    ),
    "template raises": (
        {"chat_template": RAISES},
        ["cannot render training row 0", "TemplateError", "no user role here"],
    ),
    "template does not parse": (
        {"chat_template": UNPARSED},
        ["cannot render training row 0", "TemplateSyntaxError", "template line 1"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_before_the_run_dir_exists_and_the_next_run_trains(tmp_path, chat_model, capsys, case):
    bad, needles = CASES[case]
    out = tmp_path / "out"
    cfg = config_file(tmp_path, chat_model("llama"), **bad)
    line = fails(capsys, ["train", cfg], out, *needles)
    assert "Traceback" not in line
    assert main(["train", str(config_file(tmp_path, chat_model("llama")))]) == 0  # same out, good inputs
    assert json.loads((out / "taia_train.json").read_text())["steps"] == 1


def test_template_file_that_does_not_parse_is_named(tmp_path, chat_model, capsys):
    template = tmp_path / "broken.jinja"
    template.write_text(UNPARSED)
    cfg = config_file(tmp_path, chat_model("llama"), chat_template=str(template))
    fails(capsys, ["train", cfg], tmp_path / "out", f"chat_template='{template}'", "TemplateSyntaxError")


def test_a_row_the_template_cannot_render_is_refused(tmp_path, chat_model, capsys):
    """The length check renders prompts until one fits: one the template raises on is refused the same way."""
    picky = (
        "{% for m in messages %}{% if m['content'] == 'x' * 40 %}{{ raise_exception('too many x') }}"
        "{% endif %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}"
    )
    rows = [{"instruction": "a" * 40, "input": "", "output": "b"}] * 3
    rows.append({"instruction": "x" * 40, "input": "", "output": "y"})
    cfg = config_file(tmp_path, chat_model("llama"), chat_template=picky, max_length=16)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = fails(capsys, ["train", cfg], tmp_path / "out", "cannot render training row", "too many x")
    assert 'chat_template="{% for m in messages %}' in line and '…" cannot render' in line  # cut short


def test_max_length_fitting_some_prompts_trains(tmp_path, chat_model):
    """Only when no prompt fits: rows whose answer is cut off are TRL's to drop, the rest train."""
    rows = [
        {"instruction": "x" * 200, "input": "", "output": "long prompt, answer cut off"},
        {"instruction": "Hi.", "input": "", "output": "hello"},
    ]
    cfg = config_file(tmp_path, chat_model("llama"), max_length=64, batch_size=1, micro_batch_size=1)
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
    assert main(["train", str(cfg)]) == 0
