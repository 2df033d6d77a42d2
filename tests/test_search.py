"""`taia search`: the grid, equivalent specs merged, a planted best spec found, dev/test overlap refused,
the dev split carved out of a shared task, CLI == API."""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

import pytest
import yaml

from conftest import chat_tokenizer, lora_adapter, perturbed, tiny_model
from taia.classify import model_map
from taia.cli import main
from taia.errors import TaiaError
from taia.eval import EvalConfig, evaluate
from taia.eval.task import Sample
from taia.eval.tasks import get_task
from taia.plan import make_plan
from taia.search import SearchConfig, search
from taia.search import run as search_run
from taia.search.config import Grid
from taia.search.grid import candidates, distinct, make_spec
from taia.spec import load_spec

GRID = {"attn": [0, 0.5, 1], "ffn": [0, 1], "ffn_depth": [1.0, 0.5], "rest": ["base", "finetuned"]}
PLANTED = make_spec(0.5, 1.0, (0, 0), "base")  # attention at half, FFN of layer 0 only


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("search")
    paths = {k: root / k for k in ("base", "adapter", "finetuned")}
    tiny_model("llama").save_pretrained(paths["base"])
    chat_tokenizer().save_pretrained(paths["base"])
    lora_adapter(tiny_model("llama"), seed=5).save_pretrained(paths["adapter"])
    perturbed(tiny_model("llama"), seed=6, scale=0.3).save_pretrained(paths["finetuned"])
    return paths


def questions(prefix: str, n: int, gold: list[str] | None = None) -> list[Sample]:
    """Multiple-choice samples with seeded random options: a random tiny model's choice then depends on
    the sample and on the variant's weights (with fixed options it picks the same letter every time)."""
    rng = random.Random(prefix)
    words = ["sun", "tree", "cat", "road", "milk", "fire", "snow", "door", "bell", "rain"]
    return [
        Sample(
            id=f"{prefix}{i}",
            question=f"{prefix} {words[i % 10]} {words[(3 * i + 1) % 10]} {i}?",
            gold=gold[i] if gold else "A",
            options=tuple("".join(rng.choices(string.ascii_lowercase, k=4)) for _ in range(4)),
        )
        for i in range(n)
    ]


def predictions(tmp_path: Path, models: dict[str, Path], source: str, samples: list[Sample]) -> list[str]:
    """Each sample's answer under the planted spec (so it can be made the gold answer)."""
    spec = tmp_path / "planted.yaml"
    spec.write_text(yaml.safe_dump(PLANTED.model_dump(mode="json", by_alias=True)))
    cfg = EvalConfig(
        model=str(models["base"]), variants=[str(spec)], tasks=["csqa"], out=str(tmp_path / "plant"),
        **{source: str(models[source])},
    )  # fmt: skip
    evaluate(cfg, samples={"csqa": samples})
    rows = [json.loads(x) for x in (tmp_path / "plant/samples" / PLANTED.name / "csqa.jsonl").open()]
    by_id = {r["id"]: r["output"] for r in rows}
    return [by_id[s.id] for s in samples]


def fake_loader(tasks: dict[str, list[Sample]]):
    """A `load_samples` over in-memory tasks, honouring limit and exclude like the real one."""

    by_name = {get_task(k).name: v for k, v in tasks.items()}  # aliases (csqa) load the same task

    def load(name, root, limit=None, seed=0, exclude=frozenset()):
        kept = [s for s in by_name[get_task(name).name] if s.id not in exclude]
        return kept[:limit] if limit else kept

    return load


def test_grid_names_layers_and_preference_order():
    specs = candidates(Grid.model_validate(GRID), num_layers=8)
    names = [s.name for s in specs]
    assert len(names) == len(set(names)) == 3 * (1 + 2) * 2  # FFN 0 has no depth choice
    assert names[0] == "a1-f0-rbase"  # the paper's TAIA is preferred among ties
    assert "a0.5-f1-L0-3-rft" in names
    spec = load_spec(specs[names.index("a0.5-f1-L0-3-rft")].model_dump(by_alias=True))
    assert spec.groups["ffn"].layers == (0, 3) and spec.groups["norm"].lam == 1.0


def test_adapter_grid_merges_rest_choices(models):
    mm = model_map(models["base"])
    base, adapter = str(models["base"]), str(models["adapter"])  # checked: it must fit
    cfg = SearchConfig(base=base, adapter=adapter, dev_task="csqa", test_tasks=["mmlu"], out="x")
    _, names, molora = search_run.changed_tensors(cfg)
    specs, same = distinct(candidates(Grid.model_validate(GRID), mm.num_layers), names, mm)
    assert not molora and all(s.name.endswith("-rbase") for s in specs)  # LoRA never touched norms
    assert same["a1-f0-rft"] == "a1-f0-rbase" and len(specs) + len(same) == 18
    full = distinct(candidates(Grid.model_validate(GRID), mm.num_layers), list(mm.shapes), mm)[0]
    assert len(full) == 18  # a full fine-tune changed the norms too
    presets = ["base", "vanilla", "taia", "loracl"]
    assert search_run.twin(make_spec(1, 1, None, "base"), presets, names, mm) == "vanilla"
    assert search_run.twin(make_spec(1, 1, None, "base"), presets, list(mm.shapes), mm) is None
    assert search_run.twin(make_spec(1, 1, None, "finetuned"), presets, list(mm.shapes), mm) == "vanilla"
    assert search_run.twin(make_spec(1, 0, None, "base"), presets, list(mm.shapes), mm) == "taia"


@pytest.mark.parametrize("source", ["adapter", "finetuned"])
def test_search_finds_a_planted_best_spec(tmp_path, models, monkeypatch, source):
    dev = questions("d", 40)
    dev = questions("d", 40, predictions(tmp_path, models, source, dev))
    test = questions("t", 12)
    monkeypatch.setattr(search_run, "load_samples", fake_loader({"csqa": dev, "mmlu": test}))
    cfg = SearchConfig(
        base=str(models["base"]), dev_task="csqa", dev_limit=40, test_tasks=["mmlu"], grid=Grid(**GRID),
        out=str(tmp_path / "out"), batch_size=8, **{source: str(models[source])},
    )  # fmt: skip
    result = search(cfg)
    scores = {c["name"]: c["score"] for c in result["candidates"]}
    assert scores[PLANTED.name] == 1.0
    assert max(v for k, v in scores.items() if k != PLANTED.name) < 1.0  # the plant is the only perfect one
    assert result["best"] == f"best-{PLANTED.name}" and result["best_same_as"] is None
    best = load_spec(str(tmp_path / "out/best_spec.yaml"))
    assert best.groups == PLANTED.groups
    assert set(result["test"]["results"]) == {"base", "vanilla", "taia", result["best"]}
    assert "## Test (held out)" in (tmp_path / "out/search.md").read_text()
    assert (tmp_path / "out/plots/dev_grid.png").stat().st_size > 0


def test_dev_test_overlap_is_refused(monkeypatch):
    dev = questions("d", 10)
    same = dev[7]  # the same question, spaced and cased differently, under another id
    clash = [Sample(id="other-7", question=f"  {same.question.upper()} ", gold="B",
                    options=tuple(o.capitalize() for o in same.options))]  # fmt: skip
    monkeypatch.setattr(
        search_run, "load_samples", fake_loader({"csqa": dev, "mmlu": questions("t", 5) + clash})
    )
    cfg = SearchConfig(adapter="a", dev_task="csqa", dev_limit=10, test_tasks=["mmlu"], out="x")
    with pytest.raises(TaiaError, match=r"dev and test overlap: 1 sample.*'other-7'.*'d7'"):
        search_run.split(cfg)


def test_same_task_for_dev_and_test_gets_the_rest(monkeypatch):
    pool = questions("q", 30)
    monkeypatch.setattr(search_run, "load_samples", fake_loader({"csqa": pool}))
    cfg = SearchConfig(adapter="a", dev_task="csqa", dev_limit=10, test_tasks=["commonsenseqa"], out="x")
    dev, tests = search_run.split(cfg)
    assert [s.id for s in dev] == [f"q{i}" for i in range(10)]
    assert [s.id for s in tests["commonsenseqa"]] == [f"q{i}" for i in range(10, 30)]


def test_real_loader_excludes_dev_ids():
    from taia.eval.tasks import load_samples
    from taia.io.rows import data_root

    root = data_root(None)
    if root is None or not (root / "commonsenseqa").exists():
        pytest.skip("needs ../shared/data")
    dev = load_samples("csqa", root, 50, 0)
    rest = load_samples("csqa", root, None, 0, frozenset(s.id for s in dev))
    assert not {s.id for s in dev} & {s.id for s in rest}
    assert len(rest) == len(load_samples("csqa", root)) - 50


def test_cli_equals_api(tmp_path, models, monkeypatch):
    monkeypatch.setattr(
        search_run, "load_samples", fake_loader({"csqa": questions("d", 8), "mmlu": questions("t", 4)})
    )
    grid = "grid.attn=[0,1]", "grid.ffn=[0,1]", "grid.ffn_depth=[1.0]"
    common = ["--base", str(models["base"]), "--adapter", str(models["adapter"]), "--dev-task", "csqa",
              "--test-tasks", "mmlu", "--batch-size", "4"]  # fmt: skip
    assert main(["search", *common, "--out", str(tmp_path / "cli"), *grid]) == 0
    cfg = SearchConfig(
        base=str(models["base"]), adapter=str(models["adapter"]), dev_task="csqa", test_tasks=["mmlu"],
        batch_size=4, out=str(tmp_path / "api"), grid=Grid(attn=[0, 1], ffn=[0, 1], ffn_depth=[1.0]),
    )  # fmt: skip
    api = search(cfg)
    cli = json.loads((tmp_path / "cli/search.json").read_text())
    assert [(c["name"], c["score"]) for c in cli["candidates"]] == [
        (c["name"], c["score"]) for c in api["candidates"]
    ]
    assert cli["best"] == api["best"]
    # a second run resumes: nothing is re-answered, the same choice comes back
    assert main(["search", *common, "--out", str(tmp_path / "cli"), *grid]) == 0
    assert json.loads((tmp_path / "cli/search.json").read_text())["best"] == cli["best"]


def test_a_tensor_no_group_claims_is_refused_as_by_apply(tmp_path, models, monkeypatch, capsys):
    """The grid's λ come from apply's plan: a changed tensor no group claims is refused with `taia apply`'s
    one-line error, before the out dir is written (it once got λ = 0 in search, silently)."""
    mm = model_map(models["base"])
    names = [*mm.shapes, "model.extra.scale"]
    with pytest.raises(TaiaError) as applied:
        make_plan(names, mm, load_spec("taia"))  # what `taia apply` runs
    assert "1 tensor(s) not in any known block of this llama model: model.extra.scale;" in str(applied.value)
    with pytest.raises(TaiaError) as searched:
        distinct(candidates(Grid.model_validate(GRID), mm.num_layers), names, mm)
    assert str(searched.value) == str(applied.value)

    changed = search_run.changed_tensors

    def with_extra(cfg: SearchConfig):
        mm, names, molora = changed(cfg)
        return mm, [*names, "model.extra.scale"], molora

    monkeypatch.setattr(search_run, "changed_tensors", with_extra)
    monkeypatch.setattr(
        search_run, "load_samples", fake_loader({"csqa": questions("d", 8), "mmlu": questions("t", 4)})
    )
    out = tmp_path / "out"
    common = ["--base", str(models["base"]), "--adapter", str(models["adapter"]), "--dev-task", "csqa",
              "--test-tasks", "mmlu", "--out", str(out)]  # fmt: skip
    assert main(["search", *common]) == 2
    assert capsys.readouterr().err.strip() == f"taia: error: {applied.value}"
    assert not out.exists()


def test_config_errors():
    with pytest.raises(TaiaError, match="exactly one of adapter"):
        main_config(["dev_task=csqa", "test_tasks=mmlu", "out=x"])
    with pytest.raises(TaiaError, match=r"grid\.ffn_depth"):
        main_config(["adapter=a", "dev_task=csqa", "test_tasks=mmlu", "out=x", "grid.ffn_depth=[0]"])
    with pytest.raises(TaiaError, match="did you mean 'dev_limit'"):
        main_config(["adapter=a", "dev_task=csqa", "test_tasks=mmlu", "out=x", "dev_limt=5"])


def main_config(overrides: list[str]) -> SearchConfig:
    from taia.config import build_config

    return build_config(SearchConfig, None, {}, overrides)


def test_out_dir_of_another_search_or_of_something_else_is_refused(tmp_path):
    cfg = SearchConfig(adapter="a", dev_task="csqa", test_tasks=["mmlu"], out=str(tmp_path / "s"))
    search_run._prepare_out(cfg, Path(cfg.out))
    search_run._prepare_out(cfg, Path(cfg.out))  # the same search: resumed
    other = cfg.model_copy(update={"dev_limit": 7})
    with pytest.raises(TaiaError, match=r"holds another search .*dev_limit.*overwrite=true"):
        search_run._prepare_out(other, Path(cfg.out))
    search_run._prepare_out(other.model_copy(update={"overwrite": True}), Path(cfg.out))
    stranger = tmp_path / "x"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(TaiaError, match="not a taia search output"):
        search_run._prepare_out(cfg.model_copy(update={"out": str(stranger)}), stranger)
    assert [p.name for p in stranger.iterdir()] == ["notes.txt"]  # nothing written
