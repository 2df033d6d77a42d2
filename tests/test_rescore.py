"""`taia score DIR --mode MODE`: stored answers scored again without generating, beside the old results."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import lora_adapter, tiny_model
from taia.cli import main
from taia.eval import EvalConfig, evaluate
from taia.eval.rescore import ScoreConfig, rescore
from taia.run.render import write_report

ROWS = [{"q": f"What is {i} plus {i}?", "a": str(2 * i), "uid": f"v{i}"} for i in range(12)]


def _answer(i: int, turn: int) -> str:
    """Answer styles that strict and flexible scoring read differently; `turn` moves with the variant."""
    style = (i + turn) % 4
    return [
        f"The answer is {2 * i}.",  # right in every mode
        f"so it ends with {2 * i}",  # right only in flexible mode: no stated answer
        f"The answer is {2 * i + 1}.",  # wrong
        f"{i} + {i} = {2 * i}. The answer is 2 * {i} = {2 * i}.",  # a stated expression's result
    ][style]


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """The tiny model's backend answers question i in a style set by i and by how often i was asked."""
    from taia.eval.backends.hf import HFBackend

    seen: Counter[int] = Counter()

    def generate(self, ids, n, stop):
        out = []
        for prompt in ids:
            i = int(re.findall(r"What is (\d+) plus", self.tokenizer.decode(prompt))[-1])
            out.append(_answer(i, seen[i]))
            seen[i] += 1
        return out

    monkeypatch.setattr(HFBackend, "_generate_batch", generate)
    return seen


@pytest.fixture
def setup(tmp_path: Path, chat_model) -> dict[str, Path]:
    adapter = tmp_path / "lora"
    lora_adapter(tiny_model("llama")).save_pretrained(adapter)
    (tmp_path / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    task = {"kind": "number", "data": "sums.jsonl", "fields": {"question": "q", "answer": "a", "id": "uid"}}
    (tmp_path / "sums.yaml").write_text(json.dumps(task))
    return {"model": chat_model("llama"), "adapter": adapter, "task": tmp_path / "sums.yaml"}


def _eval(setup: dict[str, Path], out: Path, mode: str = "strict") -> EvalConfig:
    cfg = EvalConfig(model=str(setup["model"]), adapter=str(setup["adapter"]), tasks=[str(setup["task"])],
                     variants=["base", "vanilla", "taia"], out=str(out), metric_mode=mode, max_new_tokens=8,
                     limit=10, batch_size=3)  # fmt: skip
    evaluate(cfg)
    return cfg


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_same_mode_reproduces_the_stored_results(tmp_path, setup, answers):
    _eval(setup, tmp_path / "ev")
    before = _files(tmp_path / "ev")
    done = rescore(ScoreConfig(run_dir=str(tmp_path / "ev")))
    after = _files(tmp_path / "ev")
    assert after["results.json"] == before["results.json"]  # byte for byte
    assert after["results.strict.json"] == before["results.json"]
    assert {k: v for k, v in after.items() if k != "results.strict.json"} == before
    stored = json.loads(before["results.json"])
    assert done["results"][str(tmp_path / "ev")]["results"] == stored["results"]
    assert stored["mode"] == "strict" and "mcnemar" in stored["paired"]["taia"]["sums"]["base"]


def test_another_mode_equals_a_fresh_eval_in_it(tmp_path, setup, answers):
    _eval(setup, tmp_path / "ev")
    strict = (tmp_path / "ev" / "results.json").read_text()
    rescore(ScoreConfig(run_dir=str(tmp_path / "ev"), mode="flexible"))
    answers.clear()  # the same answers again, for a fresh eval scored in flexible mode
    _eval(setup, tmp_path / "fresh", mode="flexible")
    got = json.loads((tmp_path / "ev" / "results.json").read_text())
    fresh = json.loads((tmp_path / "fresh" / "results.json").read_text())
    assert (got["results"], got["paired"], got["mode"]) == (fresh["results"], fresh["paired"], "flexible")
    assert got["run"]["config"]["metric_mode"] == "flexible"
    assert (tmp_path / "ev" / "results.strict.json").read_text() == strict
    assert (tmp_path / "ev" / "results.flexible.json").read_text() == (
        tmp_path / "ev" / "results.json"
    ).read_text()
    scores = {v: got["results"][v]["sums"]["score"] for v in got["results"]}
    assert all(scores[v] > json.loads(strict)["results"][v]["sums"]["score"] for v in scores)
    # the stored rows are left as answered and scored
    rows = [json.loads(x) for x in (tmp_path / "ev/samples/base/sums.jsonl").read_text().splitlines()]
    assert any(r["output"].startswith("so it ends with") and not r["correct"] for r in rows)


def test_cli_equals_api_on_a_run_dir(tmp_path, setup, answers, capsys):
    _eval(setup, tmp_path / "run" / "eval")
    write_report(tmp_path / "run")
    shutil.copytree(tmp_path / "run", tmp_path / "api")
    assert main(["score", str(tmp_path / "run"), "--mode", "flexible"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("wrote ") and "report.md" in out.splitlines()[-1]
    rescore(ScoreConfig(run_dir=str(tmp_path / "api"), mode="flexible"))
    cli, api = _files(tmp_path / "run"), _files(tmp_path / "api")
    assert cli.keys() == api.keys()
    for name in ("eval/results.json", "eval/results.flexible.json", "eval/results.strict.json", "report.md"):
        assert cli[name] == api[name], name
    report = cli["report.md"].decode()
    assert "metric mode `flexible`" in report and "## Paired significance (McNemar)" in report
    assert "report.html" in cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--mode", "loose"],
            r"invalid ScoreConfig: mode: .*unknown scoring mode 'loose'; expected one of strict",
        ),
        (["--mode", "strict", "elsewhere"], r"elsewhere: no eval results to re-score: expected results.json"),
    ],
)
def test_refusals_leave_nothing(tmp_path, setup, answers, capsys, argv, message):
    _eval(setup, tmp_path / "ev")
    before = _files(tmp_path)
    target = [str(tmp_path / a) if a == "elsewhere" else a for a in argv]
    if "elsewhere" not in argv:
        target.append(str(tmp_path / "ev"))
    capsys.readouterr()  # the eval's own output
    assert main(["score", *target]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"taia: error: .*" + message, err[0]), err
    assert _files(tmp_path) == before


def test_a_missing_answer_file_is_refused_before_writing(tmp_path, setup, answers, capsys):
    _eval(setup, tmp_path / "ev")
    (tmp_path / "ev" / "samples" / "taia" / "sums.jsonl").unlink()
    before = _files(tmp_path)
    capsys.readouterr()
    assert main(["score", str(tmp_path), "--mode", "flexible"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"taia: error: {tmp_path / 'ev/samples/taia/sums.jsonl'}: no stored answers to re-score "
                   "(the eval is incomplete or was moved)"]  # fmt: skip
    assert _files(tmp_path) == before


def test_score_verb_loads_no_torch():
    code = (
        "import sys\nfrom taia.cli import parse\ntry:\n    parse(['score', '--help'])\nexcept SystemExit:\n"
        "    pass\nimport taia.eval.rescore\nprint('torch' in sys.modules)"
    )
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
