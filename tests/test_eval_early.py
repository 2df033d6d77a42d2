"""`taia eval` refuses a spec that cannot be applied to the adapter before it creates its output: the one
line names the pattern and no eval_config.yaml, timings.jsonl or samples/ is left behind."""

from __future__ import annotations

import json

import yaml

from conftest import lora_adapter, tiny_model
from taia.cli import main


def test_an_override_matching_nothing_in_the_adapter_leaves_no_output(tmp_path, chat_model, capsys):
    model = chat_model("llama")
    lora_adapter(tiny_model("llama")).save_pretrained(tmp_path / "lora")
    rows = [{"q": f"Which is {i}?", "choices": ["a", "b"], "label": i % 2, "uid": f"u{i}"} for i in range(3)]
    (tmp_path / "pick.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {"question": "q", "options": "choices", "answer": "label", "id": "uid"}
    task = {"kind": "mc", "data": str(tmp_path / "pick.jsonl"), "fields": fields, "max_new_tokens": 4}
    (tmp_path / "pick.yaml").write_text(yaml.safe_dump(task))
    spec = {"groups": {"attn": 1.0}, "overrides": [{"pattern": "no_such_module", "lambda": 1.0}]}
    (tmp_path / "odd.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "ev"
    capsys.readouterr()  # the fixtures' save progress bars
    argv = ["eval", "--model", str(model), "--adapter", str(tmp_path / "lora"),
            "--tasks", str(tmp_path / "pick.yaml"), "--variants", f"base,{tmp_path / 'odd.yaml'}",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "taia: error: spec override pattern 'no_such_module' matches no tensor"
    assert not out.exists()
