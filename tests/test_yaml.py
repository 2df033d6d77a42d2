"""taia's one YAML reader (taia.config.safe_yaml, issue 19): alias expansion and nesting are bounded in
every YAML taia reads (configs, overrides, task files, saved configs), and YAML 1.2 floats (`1e-5`,
`1.0e39`) are the numbers they look like."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taia.config import build_config, safe_yaml
from taia.spec import load_spec
from taia.train.config import TrainConfig
from test_errors import fails

LAUGHS = "\n".join(
    ['  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"  {c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
)


def bomb(tmp_path: Path, head: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"{head}\ntrainer_args:\n{LAUGHS}\n")
    return path


def test_the_bomb_is_small():
    assert len(LAUGHS) < 800  # the 758 bytes: 9**9 "lol"s once expanded


def test_alias_bomb_in_train_config(llama, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = bomb(tmp_path, f"model: {llama.base}\ndata: [d.jsonl]\nout: {out}")
    fails(capsys, ["train", cfg], out, f"{cfg} is not valid YAML", "aliases expand the document by")


def test_alias_bomb_in_apply_config(llama, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = tmp_path / "apply.yaml"
    cfg.write_text(f"base: {llama.base}\nadapter: {llama.adapter}\nout: {out}\nspec:\n{LAUGHS}\n")
    fails(capsys, ["apply", cfg], out, f"{cfg} is not valid YAML", "aliases expand")


def test_alias_bomb_in_a_spec_file(llama, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: s\ngroups: {{attn: 1}}\nx:\n{LAUGHS}\n")
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", llama.adapter, "--out", out, "--spec", spec]
    fails(capsys, args, out, str(spec), "aliases expand")


def test_alias_bomb_in_an_override(llama, tmp_path, capsys):
    out = tmp_path / "out"
    laughs = "[" + ",".join(["&a [lol,lol,lol,lol,lol,lol,lol,lol,lol]"] + ["*a"] * 8) + "]"
    levels = laughs
    for _ in range(6):  # 9**7 nodes from a few hundred bytes
        levels = "[" + ",".join([f"&n{_} {levels}"] + [f"*n{_}"] * 8) + "]"
    args = ["apply", "--base", llama.base, "--adapter", llama.adapter, "--out", out, f"spec={levels}"]
    fails(capsys, args, out, "cannot parse the value of override")


def test_alias_bomb_in_a_task_file(llama, tmp_path, capsys):
    task = tmp_path / "mine.yaml"
    task.write_text(f"kind: exact\ndata: d.jsonl\nextra:\n{LAUGHS}\n")
    out = tmp_path / "out"
    args = ["eval", "--model", llama.base, "--tasks", task, "--variants", "base", "--out", out]
    fails(capsys, args, out, f"task file {task}: cannot read", "aliases expand")


def test_recursive_alias_and_deep_nesting_are_yaml_errors():
    with pytest.raises(yaml.YAMLError, match="recursive alias"):
        safe_yaml("a: &a [*a]")
    with pytest.raises(yaml.YAMLError, match="nested too deeply"):
        safe_yaml("[" * 50_000 + "]" * 50_000)


def test_ordinary_anchors_still_work():
    data = safe_yaml("base: &b {r: 8, alpha: 16}\nlora:\n  <<: *b\n  r: 4\nlist: [*b, *b]\n")
    assert data["lora"] == {"r": 4, "alpha": 16}
    assert data["list"] == [{"r": 8, "alpha": 16}] * 2


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-5", 1e-5), ("1.0e39", 1e39), ("1E5", 1e5), ("-2.5e-3", -2.5e-3), ("1.0e+3", 1e3), ("1_000e3", 1e6)],
)
def test_exponent_floats_are_numbers(text, value):
    assert safe_yaml(f"x: {text}") == {"x": value}


@pytest.mark.parametrize("text", ["e5", "1e", "abc1e5", "1e5x", "0x1e5", "'1e-5'", "1e5.0"])
def test_what_is_no_float_stays_no_float(text):
    assert not isinstance(safe_yaml(f"x: {text}")["x"], float)


def test_exponent_lambda_in_a_spec_file(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: s\ngroups:\n  attn: 1.0e-1\n  ffn: 5e-1\n")
    loaded = load_spec(str(spec))
    assert loaded.model_dump(by_alias=True)["groups"]["attn"]["lambda"] == pytest.approx(0.1)
    assert loaded.model_dump(by_alias=True)["groups"]["ffn"]["lambda"] == pytest.approx(0.5)


def test_exponent_values_reach_trainer_args_as_floats(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("model: m\ndata: [d.jsonl]\nout: o\nlr: 2e-4\ntrainer_args: {weight_decay: 1e-2}\n")
    train = build_config(TrainConfig, str(cfg), {}, ["warmup=5e-2"])
    assert train.lr == pytest.approx(2e-4)
    assert train.trainer_args == {"weight_decay": pytest.approx(1e-2)}
    assert isinstance(train.trainer_args["weight_decay"], float)
    assert train.warmup == pytest.approx(0.05)


def test_alias_bomb_in_a_saved_config_of_an_output_dir(tmp_path):
    """A verb reads back its own saved config to decide resume / refuse: a hostile one planted in the
    output dir is one line, before anything there is touched."""
    from taia.errors import TaiaError
    from taia.io import stage

    out = tmp_path / "out"
    out.mkdir()
    (out / "eval_config.yaml").write_text(f"tasks: [gsm8k]\nx:\n{LAUGHS}\n")
    kind = stage.OutputKind(config="eval_config.yaml", foreign="{out} foreign", changed="{out}: {keys}")
    with pytest.raises(TaiaError, match=r"eval_config\.yaml is not valid YAML: .*aliases expand") as e:
        stage.decide(out, kind, lambda saved: [], overwrite=False)
    assert "\n" not in str(e.value) and sorted(p.name for p in out.iterdir()) == ["eval_config.yaml"]
