"""CLI == API: the command is a thin layer over the library, and its resolved config reproduces its output."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from taia.apply import apply
from taia.cli import VERBS, main, parse
from taia.cliargs import flag
from taia.config import ApplyConfig, build_config
from taia.io.checkpoint import open_checkpoint
from taia.train.config import TrainConfig


def weights(path) -> dict[str, bytes]:
    ckpt = open_checkpoint(path)
    out = {}
    for name, ref in ckpt.refs.items():
        with open(ref.file, "rb") as f:
            f.seek(ref.start)
            out[name] = f.read(ref.end - ref.start)
    return out


def test_cli_equals_api_full_checkpoint(llama, tmp_path, capsys):
    args = ["--base", str(llama.base), "--finetuned", str(llama.finetuned), "--spec", "taia-ref"]
    assert main(["apply", *args, "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    report = apply(ApplyConfig(base=str(llama.base), finetuned=str(llama.finetuned), spec="taia-ref",
                               out=str(tmp_path / "api")))  # fmt: skip
    assert weights(tmp_path / "cli") == weights(tmp_path / "api")
    cli_report = json.loads((tmp_path / "cli" / "taia_report.json").read_text())
    assert cli_report["groups"] == report["groups"]
    assert "ffn      reverted" in printed and "attn     kept" in printed


def test_cli_equals_api_adapter(llama, tmp_path):
    args = ["apply", "--base", str(llama.base), "--adapter", str(llama.adapter)]
    assert main([*args, "--out", str(tmp_path / "c")]) == 0
    apply(ApplyConfig(base=str(llama.base), adapter=str(llama.adapter), out=str(tmp_path / "a")))
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (tmp_path / "c" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()


def test_config_file_and_overrides_and_resolved_config_roundtrip(llama, tmp_path):
    cfg = {"base": str(llama.base), "finetuned": str(llama.finetuned), "out": str(tmp_path / "one")}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["apply", str(tmp_path / "exp.yaml"), "spec=taif"]) == 0
    resolved = yaml.safe_load((tmp_path / "one" / "taia_config.yaml").read_text())
    assert resolved["spec"]["name"] == "taif" and resolved["spec"]["groups"]["ffn"]["lambda"] == 1.0
    # The saved config alone reproduces the output.
    resolved["out"] = str(tmp_path / "two")
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(resolved))
    assert main(["apply", str(tmp_path / "again.yaml")]) == 0
    assert weights(tmp_path / "one") == weights(tmp_path / "two")


def test_overwrite_flag(llama, tmp_path, capsys):
    out = tmp_path / "o"
    args = ["apply", "--base", str(llama.base), "--finetuned", str(llama.finetuned), "--out", str(out)]
    assert main(args) == 0
    assert main([*args, "--spec", "taif"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--spec", "taif", "--overwrite"]) == 0
    assert json.loads((out / "taia_report.json").read_text())["spec"]["name"] == "taif"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_console_script_is_installed():
    exe = shutil.which("taia") or f"{sys.executable} -m taia.cli"
    result = subprocess.run([*exe.split(), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "apply" in result.stdout and "inspect" in result.stdout


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_lists_every_config_field(verb, capsys):
    with pytest.raises(SystemExit) as done:
        parse([verb, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    spec = VERBS[verb]
    for name in spec.model().model_fields:
        assert (name if name in spec.arguments else flag(name)) in text, (verb, name)


def test_a_config_field_is_a_flag(tmp_path):
    """Flags come from the config model: a field no flag was written for by hand is one, typed."""
    argv = ["train", "--data", "a.json", "--data", "b.json", "--lr", "1e-4", "--lora", "{r: 8}", "--out", "o"]
    ns = parse(argv)
    cfg = build_config(TrainConfig, None, {k: v for k, v in vars(ns).items() if k not in ("command", "args")})
    assert [d.path for d in cfg.data] == ["a.json", "b.json"]
    assert cfg.lr == 1e-4 and cfg.lora.r == 8
    ns = parse(["run", "x.yaml", "--no-report-html", "--data-dir", "d"])
    assert ns.report_html is False and ns.data_dir == "d"


def test_help_and_light_configs_do_not_import_torch():
    """`taia VERB --help` and the configs of apply / inspect / eval / search / report stay quick: no torch
    (train and run configs hold MoLoraConfig, which lives beside the torch module in taia.molora)."""
    code = """
import sys
from taia.cli import parse
import taia.config, taia.eval.config, taia.search.config
for verb in ("apply", "inspect", "eval", "search", "report"):
    try:
        parse([verb, "--help"])
    except SystemExit:
        pass
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr


class _Ran(Exception):
    """Raised by a stand-in for taia.run.run: the experiment it was given, and nothing run."""


def _experiment(argv, monkeypatch):
    import taia.run

    def stop(cfg):
        raise _Ran(cfg)

    monkeypatch.setattr(taia.run, "run", stop, raising=False)
    with pytest.raises(_Ran) as ran:
        main(argv)
    return ran.value.args[0]


def test_data_dir_flag_sets_both_sections_and_yields_to_overrides(tmp_path, monkeypatch):
    """file < flags < overrides: `--data-dir` sets train's and eval's data_dir; an override still wins."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump({"out": str(tmp_path / "r"), "train": {"data": ["a.json"]},
                                   "eval": {"tasks": ["csqa"], "data_dir": "/file"}}))  # fmt: skip
    cfg = _experiment(["run", str(exp), "--data-dir", "/flag"], monkeypatch)
    assert cfg.train["data_dir"] == cfg.eval["data_dir"] == "/flag"
    cfg = _experiment(["run", str(exp), "--data-dir", "/flag", "eval.data_dir=/override"], monkeypatch)
    assert (cfg.train["data_dir"], cfg.eval["data_dir"]) == ("/flag", "/override")
    cfg = _experiment(["run", str(exp), "eval.data_dir=/override", "--data-dir", "no"], monkeypatch)
    assert (cfg.train["data_dir"], cfg.eval["data_dir"]) == ("no", "/override")  # a path, not YAML's false
    given = ["train=null", "adapter=a", "--data-dir", "/flag"]  # no train section: eval's alone
    cfg = _experiment(["run", str(exp), *given], monkeypatch)
    assert cfg.train is None and cfg.eval["data_dir"] == "/flag"
    cfg = _experiment(["quickstart", "--data-dir", "/flag", "train.data_dir=/t"], monkeypatch)
    assert (cfg.train["data_dir"], cfg.eval["data_dir"]) == ("/t", "/flag")
