"""Your own task file (`taia eval --tasks my_task.yaml`): the field map, every kind, the prompt template,
errors that name the file and key; made-up tasks whose answers the test knows, scored through `taia eval`,
`taia search` and `taia run` on a tiny model (the backend's answers are fixed, so every score is known)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import lora_adapter, tiny_model
from taia.cli import main
from taia.errors import TaiaError
from taia.eval import EvalConfig, evaluate
from taia.eval import tasks as tasks_mod
from taia.eval.tasks import get_task, load_samples, task_key
from taia.io.rows import Row

ANSWER = "The answer is \\boxed{4}."  # what the fixed backend says to every generation prompt

# Multiple choice: the fixed backend picks the option "yes". Golds by index, letter and option text;
# the last row's gold is "no", so 3 of 4 are right.
MC_ROWS = [
    {"q": "Is water wet?", "choices": ["no", "yes"], "label": 1, "uid": "w"},
    {"q": "Is fire hot?", "choices": ["yes", "no", "maybe"], "label": "A", "uid": "f"},
    {"q": "Is snow cold?", "choices": ["maybe", "no", "yes"], "label": "yes", "uid": "s"},
    {"q": "Is ice hot?", "choices": ["yes", "no"], "label": "no", "uid": "i"},
]
# Free-form kinds: the backend always answers 4, so the rows with gold 4 are right (2 of 3).
FREE_ROWS = [
    {"q": "2 + 2?", "a": 4, "uid": "x"},
    {"q": "3 + 4?", "a": 7, "uid": "y"},
    {"q": "8 / 2?", "a": "4", "uid": "z"},
]


def write_task(folder: Path, name: str, spec: dict[str, Any], rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"data": f"{name}.jsonl", **spec}, sort_keys=False))
    return path


def mc_task(folder: Path, name: str = "yesno", rows: list[dict[str, Any]] = MC_ROWS) -> Path:
    fields = {"question": "q", "options": "choices", "answer": "label", "id": "uid"}
    return write_task(folder, name, {"kind": "mc", "fields": fields}, rows)


def free_task(folder: Path, kind: str, name: str | None = None) -> Path:
    fields = {"question": "q", "answer": "a", "id": "uid"}
    return write_task(folder, name or f"my_{kind}", {"kind": kind, "fields": fields}, FREE_ROWS)


@pytest.fixture
def fixed_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model's backend answers every generation with ANSWER and scores the option "yes" best."""
    from taia.eval.backends.hf import HFBackend

    def loglikelihood(self, pairs, desc="score"):
        return [(0.0 if cont.strip() == "yes" else -50.0, 1) for _, cont in pairs]

    monkeypatch.setattr(HFBackend, "_generate_batch", lambda self, ids, n, stop: [ANSWER] * len(ids))
    monkeypatch.setattr(HFBackend, "loglikelihood", loglikelihood)


# --- loading -----------------------------------------------------------------------------------------


def test_field_map_builds_samples(tmp_path):
    path = mc_task(tmp_path / "tasks")
    samples = load_samples(str(path), None)
    assert [(s.id, s.gold) for s in samples] == [
        ("yesno//w", "B"), ("yesno//f", "A"), ("yesno//s", "C"), ("yesno//i", "B")
    ]  # fmt: skip
    assert samples[1].options == ("yes", "no", "maybe") and samples[0].question == "Is water wet?"
    task = get_task(str(path))
    assert (task.name, task.kind, task.aggregate, task_key(str(path))) == ("yesno", "mc", "micro", "yesno")
    assert task_key("csqa") == "csqa"  # built-in references stay as given


def test_option_columns_prompt_template_subsets_and_macro(tmp_path):
    rows = [
        {"text": "Tom has 2 cats.", "ask": "How many cats?", "A": "1", "B": "2", "ans": 1, "topic": "pets"},
        {"text": "Ann has 3 dogs.", "ask": "How many dogs?", "A": "3", "B": "4", "ans": 0, "topic": "pets"},
        {"text": "It is 5 km.", "ask": "How far?", "A": "5 km", "B": "6 km", "ans": "A", "topic": "maps"},
    ]  # fmt: skip
    spec = {
        "name": "reading", "kind": "mc", "aggregate": "macro", "prompt": "{text}\n{ask}",
        "fields": {"options": ["A", "B"], "answer": "ans", "subset": "topic"},
    }  # fmt: skip
    samples = load_samples(str(write_task(tmp_path, "reading", spec, rows)), None)
    assert samples[0].question == "Tom has 2 cats.\nHow many cats?" and samples[0].options == ("1", "2")
    assert [(s.id, s.gold, s.subset) for s in samples] == [
        ("reading/pets/0", "B", "pets"), ("reading/pets/1", "A", "pets"), ("reading/maps/2", "A", "maps")
    ]  # fmt: skip
    assert get_task(str(tmp_path / "reading.yaml")).aggregate == "macro"


def test_every_kind_loads_with_its_gold(tmp_path):
    for kind in ("number", "exact", "math"):
        assert [s.gold for s in load_samples(str(free_task(tmp_path, kind)), None)] == ["4", "7", "4"]
    spec = {"kind": "refusal", "fields": {"question": "q"}}
    refusal = load_samples(str(write_task(tmp_path, "harm", spec, FREE_ROWS)), None)
    assert [(s.id, s.gold) for s in refusal] == [("harm//0", ""), ("harm//1", ""), ("harm//2", "")]
    boxed = [{"q": "1/2 + 1/2?", "a": "so \\boxed{1}"}]
    spec = {"kind": "math", "fields": {"question": "q", "answer": "a"}}
    assert load_samples(str(write_task(tmp_path, "boxed", spec, boxed)), None)[0].gold == "1"


def test_hub_fallback_and_a_built_in_hook(tmp_path, monkeypatch):
    served: list[Any] = []

    def serve(dataset_id: str, split: str, subset: str | None) -> list[Row]:
        served.append((dataset_id, split, subset))
        return [Row({"question": "Tom has 2 apples. How many?", "answer": "so #### 2"}, 1)]

    monkeypatch.setattr(tasks_mod, "load_hub_rows", serve)
    spec = {"kind": "number", "hook": "gsm8k",
            "data": {"files": ["absent.jsonl"], "hub": {"id": "me/apples", "split": "test"}}}  # fmt: skip
    path = tmp_path / "apples.yaml"
    path.write_text(yaml.safe_dump(spec))
    samples = load_samples(str(path), None)
    assert served == [("me/apples", "test", None)] and [s.gold for s in samples] == ["2"]


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fields": {"questoin": "q"}}, r"fields\.questoin: unknown key \(did you mean 'question'\?\)"),
        ({"kind": "numbr"}, r"kind: unknown kind 'numbr'; did you mean 'number'"),
        ({"hook": "gsm8kk", "fields": None}, r"hook: unknown hook 'gsm8kk'; did you mean 'gsm8k'"),
        ({"kind": "mc", "fields": {"question": "q", "answer": "a"}}, r"kind mc needs fields\.options"),
        ({"fields": {"question": "q"}}, r"kind number is scored against a gold answer: map fields\.answer"),
        ({"name": "gsm8k"}, r"name 'gsm8k' is a built-in task's; set another name: in the file"),
        ({"prompt": "{q!r}"}, r"prompt: \{q\} is not a plain \{field\} placeholder"),
        ({"max_new_tokns": 5}, r"max_new_tokns: unknown key \(did you mean 'max_new_tokens'\?\)"),
    ],
)
def test_malformed_task_file_names_the_file_and_key(tmp_path, change, message):
    spec = {"kind": "number", "data": "num.jsonl", "fields": {"question": "q", "answer": "a"}, **change}
    path = tmp_path / "num.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in spec.items() if v is not None}))
    with pytest.raises(TaiaError, match=rf"^task file {path}: {message}"):
        get_task(str(path))


def test_row_errors_are_file_and_line(tmp_path):
    rows = [{"q": "ok?", "a": 1}, {"q": "ok?", "a": 2}, {"question": "typo?", "a": 3}]
    path = write_task(tmp_path, "num", {"kind": "number", "fields": {"question": "q", "answer": "a"}}, rows)
    where = tmp_path / "num.jsonl"
    with pytest.raises(TaiaError, match=rf"^{where}:3: missing field 'q' \(mapped by fields\.question"):
        load_samples(str(path), None)
    rows = [{**MC_ROWS[0]}, {**MC_ROWS[1], "label": "Z"}]
    with pytest.raises(TaiaError, match=r"yesno\.jsonl:2: field 'label' = 'Z' is not one of the 3 options"):
        load_samples(str(mc_task(tmp_path, rows=rows)), None)
    rows = [MC_ROWS[0], MC_ROWS[0]]
    with pytest.raises(TaiaError, match=r"yesno\.jsonl:2: duplicate id 'w' \(field 'uid'; also on line 1"):
        load_samples(str(mc_task(tmp_path, rows=rows)), None)


def test_missing_file_and_data_say_where_they_looked(tmp_path, capsys, llama):
    with pytest.raises(TaiaError, match=r"task file .*nowhere\.yaml not found"):
        get_task(str(tmp_path / "nowhere.yaml"))
    path = tmp_path / "lost.yaml"
    spec = {"kind": "exact", "data": "gone.jsonl", "fields": {"question": "q", "answer": "a"}}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(
        TaiaError, match=rf"looked for gone\.jsonl beside the task file {path}; it has no hub"
    ):
        load_samples(str(path), None)
    # A local tiny model, not the default SmolLM2: that one is converted into ~/.cache/taia on first use,
    # and the conversion's own stderr line made this test fail on a machine with an empty cache.
    argv = ["eval", "--model", str(llama.base), "--tasks", str(path), "--variants", "base"]
    assert main([*argv, "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("taia: error: task 'lost': data not found") and err.count("\n") == 1


def test_two_files_with_one_name_are_refused(tmp_path, chat_model):
    a, b = mc_task(tmp_path / "a"), mc_task(tmp_path / "b")
    cfg = EvalConfig(
        model=str(chat_model("llama")), tasks=[str(a), str(b)], variants=["base"], out=str(tmp_path / "ev")
    )
    with pytest.raises(TaiaError, match=r"are both named 'yesno'"):
        evaluate(cfg)


# --- eval, search, run -------------------------------------------------------------------------------


def test_eval_scores_made_up_tasks_of_every_kind(tmp_path, chat_model, fixed_backend):
    files = [mc_task(tmp_path), *(free_task(tmp_path, k) for k in ("number", "exact", "math"))]
    files.append(write_task(tmp_path, "harm", {"kind": "refusal", "fields": {"question": "q"}}, FREE_ROWS))
    argv = ["eval", "--model", str(chat_model("llama")), "--tasks", ",".join(map(str, files)),
            "--variants", "base", "--out", str(tmp_path / "ev"), "max_new_tokens=8"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]["base"]
    assert {t: (r["n"], r["score"]) for t, r in results.items()} == {
        "yesno": (4, 0.75), "my_number": (3, 2 / 3), "my_exact": (3, 2 / 3), "my_math": (3, 2 / 3),
        "harm": (3, 1.0),
    }  # fmt: skip
    assert results["harm"]["metric"] == "attack_success_rate"
    rows = [json.loads(x) for x in (tmp_path / "ev" / "samples" / "base" / "yesno.jsonl").open()]
    assert [(r["id"], r["gold"], r["correct"]) for r in rows] == [
        ("yesno//w", "B", True), ("yesno//f", "A", True), ("yesno//s", "C", True), ("yesno//i", "B", False)
    ]  # fmt: skip


def test_search_on_a_task_file(tmp_path, chat_model, fixed_backend):
    adapter = tmp_path / "lora"
    lora_adapter(tiny_model("llama")).save_pretrained(adapter)
    rows = [{"q": f"Is {i} a number?", "choices": ["no", "yes"], "label": 1 if i % 4 else 0, "uid": str(i)}
            for i in range(12)]  # fmt: skip  # "yes" is right on 9 of 12
    task = mc_task(tmp_path / "t", "numbers", rows)
    argv = ["search", "--base", str(chat_model("llama")), "--adapter", str(adapter), "--dev-task", str(task),
            "--dev-limit", "4", "--test-tasks", str(task), "--out", str(tmp_path / "s"),
            "grid.attn=[0,1]", "grid.ffn=[0]", "grid.ffn_depth=[1.0]"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads((tmp_path / "s" / "search.json").read_text())
    test = result["test"]["results"]
    assert result["dev_n"] == 4 and set(test["base"]) == {"numbers"} and test["base"]["numbers"]["n"] == 8
    dev = {json.loads(x)["id"] for x in next((tmp_path / "s/dev/samples").glob("*/numbers.jsonl")).open()}
    held = {json.loads(x)["id"] for x in (tmp_path / "s/test/samples/base/numbers.jsonl").open()}
    assert not dev & held and len(dev | held) == 12
    right = sum(1 for r in rows if r["label"] == 1 and f"numbers//{r['uid']}" in held)
    assert test["base"]["numbers"]["score"] == pytest.approx(right / 8)


def test_run_with_a_task_file(tmp_path, chat_model, fixed_backend):
    adapter = tmp_path / "lora"
    lora_adapter(tiny_model("llama")).save_pretrained(adapter)
    task = free_task(tmp_path / "t", "number", "sums")
    exp = {"out": str(tmp_path / "run"), "model": str(chat_model("llama")), "adapter": str(adapter),
           "eval": {"tasks": [str(task)], "variants": ["base", "taia"], "max_new_tokens": 8}}  # fmt: skip
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(exp))
    assert main(["run", str(tmp_path / "exp.yaml")]) == 0
    rows = json.loads((tmp_path / "run" / "report.json").read_text())["rows"]
    assert [(r["task"], r["variant"]) for r in rows] == [("sums", "base"), ("sums", "taia")]
    assert [r["score"] for r in rows] == pytest.approx([2 / 3, 2 / 3])


def test_run_refuses_a_bad_task_file_before_any_work(tmp_path, chat_model, capsys):
    task = free_task(tmp_path / "t", "number", "sums")
    (tmp_path / "t" / "sums.jsonl").write_text('{"q": "1?", "a": 1, "uid": "a"}\n{"a": 2, "uid": "b"}\n')
    exp = {"out": str(tmp_path / "run"), "model": str(chat_model("llama")), "adapter": str(tmp_path / "a"),
           "train": None, "eval": {"tasks": [str(task)], "variants": ["base"]}}  # fmt: skip
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({k: v for k, v in exp.items() if v is not None}))
    assert main(["run", str(tmp_path / "exp.yaml")]) == 2
    assert "sums.jsonl:2: missing field 'q'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    task.write_text(yaml.safe_dump({"kind": "number", "data": "sums.jsonl", "fields": {"q": "q"}}))
    assert main(["run", str(tmp_path / "exp.yaml")]) == 2
    assert "eval.tasks: task file" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_an_edited_gold_is_refused_on_resume(tmp_path, chat_model, fixed_backend):
    task = free_task(tmp_path, "number", "sums")
    cfg = EvalConfig(model=str(chat_model("llama")), tasks=[str(task)], variants=["base"],
                     out=str(tmp_path / "ev"), max_new_tokens=8)  # fmt: skip
    assert evaluate(cfg)["results"]["base"]["sums"]["score"] == pytest.approx(2 / 3)
    rows = [
        {**FREE_ROWS[0]},
        {**FREE_ROWS[1], "a": 4},
        FREE_ROWS[2],
    ]  # a fixed label: the stored row is stale
    (tmp_path / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        TaiaError, match=r"'sums//y' was scored against gold '7', but task 'sums' now says '4'"
    ):
        evaluate(cfg)
    assert evaluate(cfg.model_copy(update={"overwrite": True}))["results"]["base"]["sums"]["score"] == 1.0


def test_subset_files_and_one_subset_alone(tmp_path):
    for topic, golds in (("cats", [1, 2]), ("dogs", [3])):
        rows = [{"q": f"{topic} {g}?", "a": g} for g in golds]
        (tmp_path / f"{topic}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {"kind": "number", "subsets": ["cats", "dogs"], "aggregate": "macro",
            "data": "{subset}.jsonl", "fields": {"question": "q", "answer": "a"}}  # fmt: skip
    path = tmp_path / "pets.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert [(s.id, s.gold) for s in load_samples(str(path), None)] == [
        ("pets/cats/0", "1"), ("pets/cats/1", "2"), ("pets/dogs/0", "3")
    ]  # fmt: skip
    one = f"{path}:dogs"
    assert [s.id for s in load_samples(one, None)] == ["pets/dogs/0"] and task_key(one) == "pets:dogs"
    with pytest.raises(TaiaError, match=r"unknown pets subset 'dog'; did you mean 'dogs'"):
        get_task(f"{path}:dog")


def test_built_in_and_file_tasks_together(tmp_path, chat_model, fixed_backend, monkeypatch):
    """`--tasks csqa,yesno.yaml`: CommonsenseQA (here from a stand-in hub, its layout) beside a task file."""
    choices = {"label": list("ABCDE"), "text": ["yes", "no", "up", "down", "left"]}
    hub = [{"question": f"Q{i}?", "choices": choices, "answerKey": "AB"[i]} for i in range(2)]
    monkeypatch.setattr(tasks_mod, "load_hub_rows", lambda *a: [Row(r, i + 1) for i, r in enumerate(hub)])
    argv = ["eval", "--model", str(chat_model("llama")), "--tasks", f"csqa,{mc_task(tmp_path)}",
            "--variants", "base", "--data-dir", str(tmp_path / "none"),
            "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())["results"]["base"]
    assert {t: (r["n"], r["score"]) for t, r in results.items()} == {"csqa": (2, 0.5), "yesno": (4, 0.75)}
