"""A resumed `taia eval` reuses a stored answer only when what produced it is unchanged: the variant's spec
(not its name), the fine-tune's weights and the prompt as sent (`taia.eval.identity`). An edited spec
file, an edited question or option, or a fine-tune replaced in place is answered again, and the run says
how many; rows stored before rows carried an identity stay readable and are answered again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import lora_adapter, perturbed, tiny_model
from taia.eval import EvalConfig, evaluate
from taia.eval.results import read_rows

ROWS = [{"q": f"Which is number {i}?", "choices": [f"n{i}", f"m{i}", f"k{i}"], "label": i % 3, "uid": f"u{i}"}
        for i in range(3)]  # fmt: skip
SUMS = [{"q": f"What is {i} plus {i}?", "a": str(2 * i), "uid": f"v{i}"} for i in range(2)]
PICK, SUMS_IDS = [f"pick//u{i}" for i in range(3)], [f"sums//v{i}" for i in range(2)]  # a task file's ids


def write_task(root: Path, name: str, kind: str, rows: list[dict]) -> Path:
    (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {"question": "q", "answer": "a", "id": "uid"}
    if kind == "mc":
        fields = {"question": "q", "options": "choices", "answer": "label", "id": "uid"}
    task = {"kind": kind, "data": f"{name}.jsonl", "fields": fields, "max_new_tokens": 3}
    (root / f"{name}.yaml").write_text(yaml.safe_dump(task))
    return root / f"{name}.yaml"


@pytest.fixture
def setup(tmp_path, chat_model, monkeypatch):
    """Inputs in tmp_path (a tiny model, an adapter, a spec file, two tasks) and `answered`: the
    (variant/task, sample ids) of every `run_task` call."""
    from taia.eval import runner

    lora_adapter(tiny_model("llama")).save_pretrained(tmp_path / "lora")
    (tmp_path / "half.yaml").write_text(yaml.safe_dump({"groups": {"attn": 0.5}}))
    answered: list[tuple[str, list[str]]] = []
    real = runner.run_task

    def counting(backend, task, samples, cfg, log, desc, *a, **k):
        answered.append((desc, [s.id for s in samples]))
        return real(backend, task, samples, cfg, log, desc, *a, **k)

    monkeypatch.setattr(runner, "run_task", counting)
    tasks = [str(write_task(tmp_path, "pick", "mc", ROWS)), str(write_task(tmp_path, "sums", "number", SUMS))]
    variants = ["base", str(tmp_path / "half.yaml")]
    cfg = EvalConfig(model=str(chat_model("llama")), adapter=str(tmp_path / "lora"), tasks=tasks,
                     variants=variants, out=str(tmp_path / "ev"), batch_size=4)  # fmt: skip
    return cfg, answered


def rows(out: str, variant: str, task: str) -> list[dict]:
    return [
        json.loads(x) for x in (Path(out) / "samples" / variant / f"{task}.jsonl").read_text().splitlines()
    ]


def test_a_spec_file_edited_under_its_name_is_answered_again(setup, tmp_path, capsys):
    cfg, answered = setup
    evaluate(cfg)
    before = rows(cfg.out, "half", "pick")
    answered.clear()
    (tmp_path / "half.yaml").write_text(yaml.safe_dump({"groups": {"attn": 1.0}}))  # same name, new λ
    capsys.readouterr()
    report = evaluate(cfg)
    assert sorted(answered) == [("half/pick", PICK), ("half/sums", SUMS_IDS)]  # not base
    out = capsys.readouterr().out
    assert "taia: re-answering 5 stored answers that another spec, fine-tune or prompt produced" in out
    assert "(half/pick 3, half/sums 2)" in out
    after = rows(cfg.out, "half", "pick")
    assert [r["id"] for r in after] == PICK  # replaced, not duplicated
    assert [r["scores"] for r in after] != [r["scores"] for r in before]
    fresh = evaluate(cfg.model_copy(update={"out": str(tmp_path / "fresh")}))
    assert rows(str(tmp_path / "fresh"), "half", "pick") == after  # what a fresh run with the new spec says
    assert report["results"] == fresh["results"] and report["run"]["specs"]["half"]["groups"]["attn"]
    answered.clear()
    evaluate(cfg)
    assert answered == []  # and now nothing is stale


def test_an_edited_question_or_option_is_answered_again(setup, tmp_path, capsys):
    cfg, answered = setup
    evaluate(cfg)
    edited = [{**ROWS[0], "q": "Which is number zero?"}, {**ROWS[1], "choices": ["n1", "m1", "x1"]}, ROWS[2]]
    write_task(tmp_path, "pick", "mc", edited)  # ids and golds kept
    answered.clear()
    capsys.readouterr()
    evaluate(cfg)
    assert sorted(answered) == [("base/pick", PICK[:2]), ("half/pick", PICK[:2])]
    assert "re-answering 4 stored answers" in capsys.readouterr().out
    assert rows(cfg.out, "base", "pick")[-2]["prompt"].count("Which is number zero?") == 1


@pytest.mark.parametrize("kind", ["adapter", "finetuned"])
def test_a_fine_tune_replaced_in_place_is_answered_again(setup, tmp_path, capsys, kind):
    cfg, answered = setup
    tuned = tmp_path / "tuned"
    if kind == "finetuned":
        perturbed(tiny_model("llama"), seed=1).save_pretrained(tuned)
        cfg = cfg.model_copy(update={"adapter": None, "finetuned": str(tuned)})
    else:
        shutil.copytree(tmp_path / "lora", tuned)
        cfg = cfg.model_copy(update={"adapter": str(tuned)})
    evaluate(cfg)
    shutil.rmtree(tuned)
    if kind == "finetuned":
        perturbed(tiny_model("llama"), seed=7).save_pretrained(tuned)  # same path, same shapes
    else:
        lora_adapter(tiny_model("llama"), seed=7).save_pretrained(tuned)
    answered.clear()
    capsys.readouterr()
    evaluate(cfg)
    assert sorted(answered) == [("half/pick", PICK), ("half/sums", SUMS_IDS)]  # base: kept
    assert "re-answering 5 stored answers" in capsys.readouterr().out
    assert sorted(p.name for p in Path(cfg.out).iterdir()) == [
        "eval_config.yaml", "results.json", "samples", "timings.jsonl",
    ]  # fmt: skip


def test_rows_stored_without_an_identity_stay_readable_and_are_answered_again(setup, capsys):
    cfg, answered = setup
    first = evaluate(cfg)
    path = Path(cfg.out) / "samples" / "base" / "pick.jsonl"
    old = [{k: v for k, v in r.items() if k != "identity"} for r in rows(cfg.out, "base", "pick")]
    path.write_text("".join(json.dumps(r) + "\n" for r in old))  # as a run before identities wrote them
    assert [r.identity for r in read_rows(path)] == [None, None, None]  # readable (the report's view)
    answered.clear()
    capsys.readouterr()
    again = evaluate(cfg)
    assert answered == [("base/pick", PICK)]
    out = capsys.readouterr().out
    assert "re-answering 3 stored answers" in out and "carry no identity (base/pick 3)" in out
    assert again["results"] == first["results"] and all(r["identity"] for r in rows(cfg.out, "base", "pick"))


def test_a_fresh_run_adds_only_the_identity_and_it_names_no_path(setup, tmp_path):
    cfg, _ = setup
    evaluate(cfg)
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("lora", "half.yaml", "pick.yaml", "pick.jsonl", "sums.yaml", "sums.jsonl"):
        (shutil.copytree if name == "lora" else shutil.copy)(tmp_path / name, moved / name)
    other = cfg.model_copy(update={
        "adapter": str(moved / "lora"), "tasks": [str(moved / "pick.yaml"), str(moved / "sums.yaml")],
        "variants": ["base", str(moved / "half.yaml")], "out": str(tmp_path / "ev2"),
    })  # fmt: skip
    evaluate(other)
    for v, t in (("base", "pick"), ("half", "pick"), ("half", "sums")):
        a, b = rows(cfg.out, v, t), rows(other.out, v, t)
        assert a == b  # the identity is of contents, not of where they are
        assert all(list(r)[-1] == "identity" and len(r["identity"]) == 16 for r in a)
    assert len({r["identity"] for r in rows(cfg.out, "base", "pick") + rows(cfg.out, "half", "pick")}) == 6


def test_a_replaced_adapter_routes_loracl_again(setup, tmp_path, monkeypatch, capsys):
    from taia.eval import loracl

    cfg, answered = setup
    cfg = cfg.model_copy(update={"variants": ["base", "vanilla", "loracl"], "tasks": cfg.tasks[:1]})
    routed: list[list[str]] = []
    real = loracl.route
    monkeypatch.setattr(
        loracl, "route", lambda b, v, t, s, *a: routed.append([x.id for x in s]) or real(b, v, t, s, *a)
    )
    evaluate(cfg)
    routed.clear()
    evaluate(cfg)
    assert routed == []  # nothing changed: nothing routed again
    shutil.rmtree(tmp_path / "lora")
    lora_adapter(tiny_model("llama"), seed=7).save_pretrained(tmp_path / "lora")
    answered.clear()
    capsys.readouterr()
    evaluate(cfg)
    assert answered == [("vanilla/pick", PICK)] and routed == [PICK]  # its routes compared old perplexities
    assert "re-answering 6 stored answers" in capsys.readouterr().out
    routes = {r["id"]: r["route"] for r in rows(cfg.out, "loracl", "pick")}
    for r in rows(cfg.out, "loracl", "pick"):
        assert (
            r["identity"] == {x["id"]: x for x in rows(cfg.out, routes[r["id"]], "pick")}[r["id"]]["identity"]
        )
