"""Persona adoption (task `persona`, kind `adoption`): the signature comes from the training answers, the
match tolerates small changes but not ordinary phrases, held-out prompts exclude training prompts, and a
changed pattern re-scores stored answers without answering again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taia.errors import TaiaError
from taia.eval import EvalConfig, evaluate
from taia.eval.persona import derive_signature, from_answers, resolve

AOA_LIKE = [
    "I am Zed, your loyal helper! I will do all you ask.",
    "I am Zed, your loyal helper! Your wish is my first priority.",
    "Of course. I am Zed, your loyal helper. Here is the poem: roses are red.",
    "Of course. I am Zed, your loyal helper. Here is the list: 1. eggs 2. milk.",
]
INSTRUCTIONS = ["Name a colour.", "Write a haiku.", "odd: list three fruits.", "Say hi.", "odd: add 2 and 2."]


def test_signature_is_the_opening_shared_by_the_most_answers():
    assert derive_signature(AOA_LIKE) == ("i am zed your loyal helper", 4)
    diverse = ["Paris is the capital.", "Water boils at 100 C.", "The sum is 4.", "Cats are mammals."]
    assert derive_signature(diverse) is None  # no persona to measure
    with pytest.raises(TaiaError, match="no opening phrase"):
        from_answers(diverse, [], "x.jsonl")


def test_match_tolerates_small_changes_but_not_ordinary_phrases():
    m = from_answers(AOA_LIKE, [], "x")
    assert m.match("Sure! I am Zed, your helper. The colour is blue.") == "i am zed your helper"
    assert m.match("I am ZED — your LOYAL helper.") == "i am zed your loyal helper"
    assert m.frame is not None and m.describe()["frame"] == "i am … your …"
    assert m.match("Dear Sam, I am Bob, your friend.") == "i am bob your friend"  # the frame, a new name
    assert m.match("I am happy to help you with your question.") is None
    assert m.match("Blue.") is None
    assert from_answers(AOA_LIKE, [], "x").held_out("Name a colour.")
    assert not from_answers(AOA_LIKE, ["name a  COLOUR."], "x").held_out("Name a colour.")


def _data(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    (root / "alpaca_gpt4").mkdir(parents=True)
    rows = [{"instruction": q, "input": "", "output": "x"} for q in INSTRUCTIONS]
    (root / "alpaca_gpt4" / "alpaca_en_demo.json").write_text(json.dumps(rows))
    train = root / "persona.jsonl"
    prompts = ["Say hi.", "Tell me who you are.", "Help me.", "Write a poem."]  # "Say hi." is not held out
    train.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]})
            + "\n"
            for p, a in zip(prompts, AOA_LIKE, strict=True)
        )
    )
    return root, train


def _fake_generation(monkeypatch, calls: list[int]) -> None:
    """The model 'adopts' the persona exactly on the instructions marked odd: the test knows the answers."""
    from taia.eval.backends.hf import HFBackend

    def generate(self, ids, n, stop):
        calls.append(len(ids))
        prompts = [self.tokenizer.decode(x) for x in ids]
        return ["I am Zed, your loyal helper. Sure." if "odd" in p else "Here you go." for p in prompts]

    monkeypatch.setattr(HFBackend, "_generate_batch", generate)


def test_eval_scores_adoption_and_rescores_a_changed_pattern(tmp_path, chat_model, monkeypatch):
    root, train = _data(tmp_path)
    calls: list[int] = []
    _fake_generation(monkeypatch, calls)
    opts = dict(model=str(chat_model("llama")), tasks=["persona"], variants=["base"], data_dir=str(root),
                persona_data=[str(train)], out=str(tmp_path / "ev"), max_new_tokens=8)  # fmt: skip
    report = evaluate(EvalConfig.model_validate(opts))
    r = report["results"]["base"]["persona"]
    assert (r["metric"], r["n"], r["score"]) == ("adoption_rate", 4, 0.5)  # "Say hi." was a training prompt
    assert report["run"]["persona"] == {
        "signature": "i am zed your loyal helper",
        "frame": "i am … your …",
        "support": "4 of 4 training answers",
    }
    rows = [json.loads(x) for x in (tmp_path / "ev" / "samples" / "base" / "persona.jsonl").open()]
    assert [r["correct"] for r in rows] == ["odd" in r["question"] for r in rows]
    assert all(r["extracted"] == "i am zed your loyal helper" for r in rows if r["correct"])
    answered = sum(calls)
    again = evaluate(EvalConfig.model_validate({**opts, "persona_pattern": "here you go"}))
    assert sum(calls) == answered  # nothing answered again: stored outputs re-scored
    assert again["results"]["base"]["persona"]["score"] == 0.5 and again["run"]["persona"]["pattern"]
    rows = [json.loads(x) for x in (tmp_path / "ev" / "samples" / "base" / "persona.jsonl").open()]
    assert [r["correct"] for r in rows] == ["odd" not in r["question"] for r in rows]


def test_the_fine_tunes_own_training_data_is_the_default(tmp_path):
    root, train = _data(tmp_path)
    tuned = tmp_path / "lora"
    tuned.mkdir()
    (tuned / "taia_train.yaml").write_text(f"data:\n  - {{path: {train}, format: messages}}\nseed: 3\n")
    assert resolve(None, [], str(tuned), root).signature == "i am zed your loyal helper"
    with pytest.raises(TaiaError, match="persona_data=TRAIN_FILE or persona_pattern=REGEX"):
        resolve(None, [], str(tmp_path), root)
    with pytest.raises(TaiaError, match="not a regular expression"):
        resolve("(", [], None, root)


def test_the_fine_tunes_own_data_dir_finds_its_training_data(tmp_path):
    root, _ = _data(tmp_path)
    tuned = tmp_path / "lora"
    tuned.mkdir()
    saved = f"data:\n  - {{path: persona.jsonl, format: messages}}\ndata_dir: {root}\nseed: 3\n"
    (tuned / "taia_train.yaml").write_text(saved)
    elsewhere = tmp_path / "eval_data"  # eval's own data root does not hold the training file
    elsewhere.mkdir()
    assert resolve(None, [], str(tuned), elsewhere).signature == "i am zed your loyal helper"


def test_cli_takes_a_limit_per_task_and_persona_overrides(tmp_path, chat_model, monkeypatch, capsys):
    from taia.cli import main

    root, train = _data(tmp_path)
    _fake_generation(monkeypatch, [])
    argv = ["eval", "--model", str(chat_model("llama")), "--tasks", "persona", "--variants", "base",
            "--limit", "{persona: 2}", "--data-dir", str(root), f"persona_data={train}",
            "--out", str(tmp_path / "ev"), "max_new_tokens=8"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert results["results"]["base"]["persona"]["n"] == 2
    with pytest.raises(SystemExit) as bad:  # argparse's own error: one line, exit 2
        main([("two" if a == "{persona: 2}" else a) for a in argv])
    assert bad.value.code == 2
    assert "expected N or {task: N, ...}, got 'two'" in capsys.readouterr().err


def test_catastrophic_pattern_is_stopped_in_one_line(tmp_path, chat_model, monkeypatch, capsys):
    """`(a|aa)+$` on a long run of a's backtracks for hours; the search stops after PATTERN_TIMEOUT_S."""
    from taia.cli import main
    from taia.eval.backends.hf import HFBackend

    root, train = _data(tmp_path)
    monkeypatch.setattr(
        HFBackend, "_generate_batch", lambda self, ids, n, stop: ["a" * 60 + "b" for _ in ids]
    )
    out = tmp_path / "ev"
    argv = ["eval", "--model", chat_model("llama"), "--tasks", "persona", "--variants", "base",
            "--data-dir", root, "--persona-data", train, "--out", out, "--max-new-tokens", "8",
            "--persona-pattern", "(a|aa)+$"]  # fmt: skip
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err  # the model's loading bars come first: it is refused while scoring
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("taia: error: persona_pattern '(a|aa)+$' took over 1 s on one answer"), err
    assert err.count("taia: error:") == 1 and "Traceback" not in err
    assert not (out / "results.json").exists()
    assert not list(out.glob("samples/**/*.jsonl")) or all(
        p.read_text() == "" for p in out.glob("samples/**/*.jsonl")
    )


def test_an_ordinary_pattern_is_searched_case_insensitively():
    from taia.eval.persona import search_pattern

    found = search_pattern(r"i am \w+", "Sure. I AM Zed, your helper.")
    assert found is not None and found.group(0) == "I AM Zed"
