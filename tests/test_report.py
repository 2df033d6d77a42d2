"""`taia report RUN_DIR`: the report stage renders a run dir's files (synthetic here) into md/html/csv/json
and PNG plots, with one rounding rule everywhere."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from taia.errors import TaiaError
from taia.run.plots import moving_average, norm_grid
from taia.run.render import write_report
from taia.run.rundata import load_run, mean_row, shown, table_rows

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VARIANTS = ("base", "vanilla", "taia", "taif")
SCORES = {  # task → variant → score
    "gsm8k": {"base": 0.30, "vanilla": 0.35, "taia": 0.413, "taif": 0.32},
    "csqa": {"base": 0.60, "vanilla": 0.55, "taia": 0.62, "taif": 0.5815},
    "advbench": {"base": 0.05, "vanilla": 0.40, "taia": 0.10, "taif": 0.30},
}


def _entry(task: str, score: float) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "metric": "attack_success_rate" if task == "advbench" else "accuracy",
        "score": score,
        "ci95": [max(0.0, score - 0.0327), min(1.0, score + 0.0291)],
        "n": 520 if task == "advbench" else 300,
        "empty_outputs": 3 if task == "gsm8k" else 0,
        "aggregate": "micro",
    }
    if task == "csqa":
        entry["subsets"] = {"a": score - 0.01, "b": score + 0.01}
    return entry


def _results() -> dict[str, Any]:
    results = {v: {t: _entry(t, SCORES[t][v]) for t in SCORES} for v in VARIANTS}
    config = {"model": "smollm2-135m-instruct", "adapter": "runs/x/train", "protocol": "paper",
              "metric_mode": "strict", "limit": 300, "harness": "taia", "seed": 0}  # fmt: skip
    specs = {
        "base": {"name": "base", "groups": {}},
        "taia": {"name": "taia", "groups": {"attn": {"lambda": 1.0}}},
    }
    run = {
        "config": config,
        "specs": specs,
        "git_sha": "abc123",
        "versions": {"python": "3.11", "torch": "2.13"},
    }
    return {"results": results, "run": run}


def make_run(root: Path, *, loss: bool = True, inspect: bool = True, n_loss: int = 40) -> Path:
    (root / "eval").mkdir(parents=True)
    (root / "eval" / "results.json").write_text(json.dumps(_results(), indent=2))
    if loss:
        (root / "train").mkdir()
        lines = [
            json.dumps({"step": 5 * i, "loss": 2.0 / (1 + 0.1 * i), "learning_rate": 1e-5})
            for i in range(n_loss)
        ]
        (root / "train" / "loss.jsonl").write_text(
            "\n".join(lines) + '\n{"step": 999, "lo'
        )  # a cut-short line
        train = {"variant": "vanilla", "steps": 195, "train_loss": 1.2, "last_loss": 0.4, "seconds": 61.5,
                 "tokens_per_second": 1234.5, "data": {"total": 1000}}  # fmt: skip
        (root / "train" / "taia_train.json").write_text(json.dumps(train))
    if inspect:
        rows = [{"layer": None, "group": "embed", "params": 10, "rel_update": 0.01}]
        for i in range(4):
            for g in ("attn", "ffn", "norm"):
                rows.append(
                    {"layer": i, "group": g, "params": 100, "rel_update": 0.01 * (i + 1) * (1 + (g == "ffn"))}
                )
        doc = {"model_type": "llama", "num_layers": 4, "has_delta": True, "rows": rows}
        (root / "inspect.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    run = make_run(tmp_path_factory.mktemp("run"))
    return run, write_report(run)


def _table(md: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after `heading` (header row included, separator dropped)."""
    section = md.split(heading, 1)[1]
    lines = [x for x in section.split("\n\n", 2)[1].splitlines() if x.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", x)[1:-1]] for x in lines if not x.startswith("| ---")]


CELL = re.compile(r"^(\*\*)?(-?\d+\.\d) \[(-?\d+\.\d), (-?\d+\.\d)\](\*\*)?$")


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def test_all_files_and_valid_pngs(full: tuple[Path, dict[str, Path]]) -> None:
    run, paths = full
    for key, name in [
        ("md", "report.md"),
        ("csv", "report.csv"),
        ("json", "report.json"),
        ("html", "report.html"),
    ]:
        assert paths[key] == run / name and paths[key].stat().st_size > 0
    for name in ("scores", "update_norms", "loss"):
        png = run / "plots" / f"{name}.png"
        assert paths[name] == png
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5_000
        assert f"](plots/{name}.png)" in paths["md"].read_text()


def test_markdown_scores_equal_json(full: tuple[Path, dict[str, Path]]) -> None:
    run, paths = full
    rows = {(r["task"], r["variant"]): r for r in json.loads(paths["json"].read_text())["rows"]}
    raw = json.loads((run / "eval" / "results.json").read_text())["results"]
    table = _table(paths["md"].read_text(), "## Scores")
    header = table[0][1:]
    assert header == list(VARIANTS)
    checked = 0
    for cells in table[1:]:
        task = cells[0].split(" ")[0]
        if task == "mean‡":
            continue
        for variant, cell in zip(header, cells[1:], strict=True):
            m = CELL.match(cell)
            assert m, cell
            row, entry = rows[task, variant], raw[variant][task]
            assert m.group(2, 3, 4) == (row["shown"]["score"], row["shown"]["ci_lo"], row["shown"]["ci_hi"])
            assert m.group(2, 3, 4) == (_pct(entry["score"]), _pct(entry["ci95"][0]), _pct(entry["ci95"][1]))
            assert row["score"] == entry["score"]  # the JSON keeps full precision
            checked += 1
    assert checked == 12


def test_markdown_deltas_equal_json(full: tuple[Path, dict[str, Path]]) -> None:
    _, paths = full
    rows = {(r["task"], r["variant"]): r for r in json.loads(paths["json"].read_text())["rows"]}
    table = _table(paths["md"].read_text(), "## Δ vs base and vanilla")
    header = table[0][1:]
    assert header == ["vanilla − base", "taia − base", "taif − base", "taia − vanilla", "taif − vanilla"]
    for cells in table[1:-1]:
        task = cells[0].split(" ")[0]
        for column, cell in zip(header, cells[1:], strict=True):
            variant, ref = column.split(" − ")
            row = rows[task, variant]
            assert cell == row["shown"][f"delta_vs_{ref}"] == f"{100 * row[f'delta_vs_{ref}']:+.1f}"


def test_deltas_hand_checked(full: tuple[Path, dict[str, Path]]) -> None:
    run, paths = full
    rows = {(r["task"], r["variant"]): r for r in table_rows(load_run(run))}
    taia = rows["gsm8k", "taia"]
    assert taia["delta_vs_base"] == pytest.approx(0.413 - 0.30)
    assert taia["delta_vs_vanilla"] == pytest.approx(0.413 - 0.35)
    assert rows["gsm8k", "base"]["delta_vs_base"] is None
    assert rows["gsm8k", "vanilla"]["delta_vs_vanilla"] is None
    table = _table(paths["md"].read_text(), "## Δ vs base and vanilla")
    gsm8k = next(c for c in table if c[0] == "gsm8k")
    assert gsm8k[2] == "+11.3" and gsm8k[4] == "+6.3"  # taia − base, taia − vanilla
    assert gsm8k[3] == "+2.0"  # taif − base
    advbench = next(c for c in table if c[0].startswith("advbench"))
    assert advbench[1] == "+35.0" and advbench[4] == "-30.0"  # vanilla − base; taia − vanilla


def test_best_marking(full: tuple[Path, dict[str, Path]]) -> None:
    _, paths = full
    md = paths["md"].read_text()
    table = {c[0].split(" ")[0]: c[1:] for c in _table(md, "## Scores")[1:]}
    bold = {
        task: [v for v, c in zip(VARIANTS, cells, strict=True) if c.startswith("**")]
        for task, cells in table.items()
    }
    assert bold["gsm8k"] == ["taia"]  # highest accuracy
    assert bold["csqa"] == ["taia"]
    assert bold["advbench"] == ["base"]  # lowest ASR
    assert "lower is better" in md and "(ASR)†" in md
    rows = json.loads(paths["json"].read_text())["rows"]
    assert {(r["task"], r["variant"]) for r in rows if r["best"]} == {
        ("gsm8k", "taia"), ("csqa", "taia"), ("advbench", "base"),
    }  # fmt: skip


def test_mean_row_accuracy_only(full: tuple[Path, dict[str, Path]]) -> None:
    run, paths = full
    mean = mean_row(load_run(run))
    assert mean["tasks"] == ["gsm8k", "csqa"]
    assert mean["score"]["taia"] == pytest.approx((0.413 + 0.62) / 2)
    md = paths["md"].read_text()
    cells = next(c for c in _table(md, "## Scores") if c[0] == "mean‡")
    assert cells[1:] == [
        shown(mean["score"][v]) if v != "taia" else f"**{shown(mean['score'][v])}**" for v in VARIANTS
    ]
    assert "accuracy tasks only (gsm8k, csqa)" in md
    report = json.loads(paths["json"].read_text())
    assert report["mean"]["score"]["taia"] == mean["score"]["taia"]


def test_samples_training_and_run_info(full: tuple[Path, dict[str, Path]]) -> None:
    _, paths = full
    md = paths["md"].read_text()
    assert md.startswith("# TAIA report: smollm2-135m-instruct + runs/x/train\n")
    assert "protocol `paper`" in md and "metric mode `strict`" in md and "limit 300" in md
    samples = {c[0]: c for c in _table(md, "## Samples")[1:]}
    assert samples["advbench"][-1] == "520" and samples["gsm8k"][-1] == "300"
    assert "taia/gsm8k: 3 of 300 outputs empty" in md
    for text in ("trained variant: vanilla", "steps: 195", "training examples: 1000", "final loss: 0.4",
                 "time (s): 61.5", "tokens/s: 1234"):  # fmt: skip
        assert text in md
    assert "git sha: `abc123`" in md and "torch `2.13`" in md and "variant taia: attn λ=1.0" in md


def test_csv_full_precision(full: tuple[Path, dict[str, Path]]) -> None:
    _, paths = full
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert {"task", "variant", "metric", "score", "ci_lo", "ci_hi", "n", "delta_vs_base", "delta_vs_vanilla",
            "best"} <= set(rows[0])  # fmt: skip
    taif = next(r for r in rows if r["task"] == "csqa" and r["variant"] == "taif")
    assert float(taif["score"]) == 0.5815 and taif["delta_vs_base"] != "" and float(taif["n"]) == 300
    base = next(r for r in rows if r["task"] == "csqa" and r["variant"] == "base")
    assert base["delta_vs_base"] == ""


def test_html_self_contained(full: tuple[Path, dict[str, Path]]) -> None:
    _, paths = full
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3
    assert "http" not in page and "<script" not in page and "<link" not in page
    assert "<strong>41.3 [38.0, 44.2]</strong>" in page  # the same cells as the Markdown
    assert "**" not in page


def test_missing_optional_inputs(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", loss=False, inspect=False)
    (run / "plots").mkdir()
    (run / "plots" / "loss.png").write_bytes(PNG_MAGIC)  # a stale plot from an earlier render
    paths = write_report(run, html=False)
    assert set(paths) == {"md", "csv", "json", "scores"}
    assert not (run / "report.html").exists() and not (run / "plots" / "loss.png").exists()
    md = paths["md"].read_text()
    assert "plots/scores.png" in md and "update_norms.png" not in md and "loss.png" not in md
    assert "## Training" not in md
    assert json.loads(paths["json"].read_text())["train"] is None


def test_loss_log_cut_short_and_smoothing(tmp_path: Path) -> None:
    data = load_run(make_run(tmp_path / "run", n_loss=30))
    assert len(data.loss) == 30 and data.loss[-1]["step"] == 145
    assert moving_average([1.0, 2.0, 3.0, 4.0], 2) == [1.5, 2.5, 3.5]


def test_norm_grid_groups_and_layers(full: tuple[Path, dict[str, Path]]) -> None:
    run, _ = full
    grid = norm_grid(load_run(run).inspect)
    assert grid is not None
    groups, layers, values = grid
    assert groups == ["attn", "ffn"] and layers == [0, 1, 2, 3]  # norm and embed are not heatmap rows
    assert values[1][3] == pytest.approx(0.08)
    assert norm_grid({"rows": [{"layer": 0, "group": "attn", "params": 1, "rel_update": None}]}) is None


def test_lm_eval_entries_render(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    entry = {"metric": "acc_norm", "filter": "none", "score": 0.5, "ci95": [0.45, 0.55], "n": 100,
             "ci_method": "normal", "lm_eval": {"acc_norm,none": 0.5, "alias": "hs"}}  # fmt: skip
    no_ci = {
        **entry,
        "metric": "exact_match",
        "filter": "strict-match",
        "score": 0.25,
        "ci95": [math.nan, math.nan],
    }
    results = {
        v: {"hellaswag": {**entry, "score": s}, "gsm8k": no_ci} for v, s in (("base", 0.5), ("taia", 0.6))
    }
    (run / "eval" / "results.json").write_text(
        json.dumps({"results": results, "run": {}})
    )  # NaN, as json writes it
    paths = write_report(run)
    md = paths["md"].read_text()
    scores = {c[0]: c[1:] for c in _table(md, "## Scores")[1:]}
    assert scores["hellaswag"] == ["50.0 [45.0, 55.0]", "**60.0 [45.0, 55.0]**"]
    assert scores["gsm8k"] == ["**25.0**", "**25.0**"]  # no CI; a tie marks both
    assert "strict-match" in md and "# TAIA report: run\n" in md
    report = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    assert next(r for r in report["rows"] if r["task"] == "gsm8k")["ci_lo"] is None
    assert "data:image/png;base64," in paths["html"].read_text()


def test_no_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TaiaError, match="no eval results"):
        load_run(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(_results()))  # a bare `taia eval --out` dir also works
    assert load_run(tmp_path).variants == list(VARIANTS)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(TaiaError, match="no 'results'"):
        load_run(tmp_path)


def test_shown_one_rule() -> None:
    assert shown(0.41249) == "41.2" and shown(None) == "–" and shown(math.nan) == "–"
    assert shown(-0.0001, signed=True) == "+0.0" and shown(0.021, signed=True) == "+2.1"
    assert shown(12.3456, "word_perplexity") == "12.346"


def test_cli_report_renders_an_eval_dir(tmp_path, capsys):
    from taia.cli import main

    out = tmp_path / "ev"
    out.mkdir()
    results = {"base": {"csqa": {"metric": "accuracy", "score": 0.31, "ci95": [0.26, 0.37], "n": 300,
                                 "empty_outputs": 0, "aggregate": "micro"}}}  # fmt: skip
    (out / "results.json").write_text(json.dumps({"results": results, "run": {"config": {}}}))
    (out / "timings.jsonl").write_text('{"variant": "base", "task": "csqa", "seconds": 1.5}\n')  # eval's own
    assert main(["report", str(out), "--no-html"]) == 0
    assert "31.0 [26.0, 37.0]" in capsys.readouterr().out and (out / "report.md").is_file()


MALFORMED = {  # a results.json that parses but is out of shape → where the one line points
    "an entry that is a number": ({"results": {"base": {"csqa": 5}}}, "results.base.csqa is int 5"),
    "a CI that is a number": (
        {"results": {"base": {"csqa": {"score": 0.5, "ci95": 3, "n": 3}}}},
        "results.base.csqa.ci95 is 3, not an interval",
    ),
    "specs that are a string": (
        {"results": {}, "run": {"config": {}, "specs": "taia"}},
        "run.specs is str 'taia', not a mapping",
    ),
    "a paired Δ that is a number": (
        {"results": {}, "paired": {"taia": {"csqa": {"base": 0.1}}}},
        "paired.taia.csqa.base is float 0.1, not a mapping",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_results_json_is_one_line_naming_the_file(tmp_path, capsys, case):
    from taia.cli import main

    doc, where = MALFORMED[case]
    (tmp_path / "results.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"taia: error: {tmp_path / 'results.json'}: not a results.json the report can read")
    assert where in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no report, no plots


def _persona_run(root: Path, answer: str) -> Path:
    """A bare eval dir with one persona prompt answered by base and vanilla (vanilla with `answer`)."""
    rows = {
        "base": {"output": "Plain.", "extracted": None, "correct": False},
        "vanilla": {"output": answer, "extracted": "zed", "correct": True},
    }
    for v, row in rows.items():
        (root / "samples" / v).mkdir(parents=True)
        full = {"id": "p0", "subset": None, "prompt": "<c>", "gold": "", "question": "Say <b>hi</b>", **row}
        (root / "samples" / v / "persona.jsonl").write_text(json.dumps(full) + "\n")
    entry = {"metric": "adoption_rate", "ci95": [0.0, 1.0], "n": 1, "empty_outputs": 0}
    results = {v: {"persona": {**entry, "score": float(r["correct"])}} for v, r in rows.items()}
    (root / "results.json").write_text(json.dumps({"results": results, "run": {"config": {}}}))
    return root


def test_model_text_is_escaped_in_markdown_and_html(tmp_path):
    answer = "I am Zed <script>alert(1)</script> **bold** `code` a|b [x](y)"
    paths = write_report(_persona_run(tmp_path, answer))
    md, page = paths["md"].read_text(), paths["html"].read_text()
    assert "<script>" not in md and "<b>" not in md and "<script>" not in page and "<b>hi" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\*\\*bold\\*\\* \\`code\\` a\\|b \\[x\\](y)" in md
    assert "Say &lt;b&gt;hi&lt;/b&gt;" in md  # the question too
    assert "&lt;script&gt;alert(1)&lt;/script&gt; **bold** `code` a|b [x](y)</td>" in page  # no markup
    assert "<strong>bold**" not in page and "<code>code" not in page
