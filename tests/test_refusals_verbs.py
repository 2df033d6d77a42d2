"""What taia refuses (docs/refusals.md), continued: issue #13's defects 4-10 — the pickle rule, the input
checker and one-line errors in every verb, file-system errors, intermixed overrides, output modes, hub
misses and weak messages. Each refusal asserts exit code 2, one `taia: error:` line naming the input, and
that nothing was written."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from conftest import lora_adapter, tiny_config
from taia.cli import main, parse
from test_errors import copy, fails, leftovers, read_tensors
from test_refusals import Q, apply_args, edit

# ------------------------------------------------------------------- 4. the pickle rule in every verb


@pytest.fixture(scope="module")
def pickled(chat_model, tmp_path_factory) -> Path:
    """A chat model whose only weights are pickle (.bin)."""
    path = copy(chat_model("llama"), tmp_path_factory.mktemp("pickled") / "m")
    torch.save(load_file(str(path / "model.safetensors")), path / "pytorch_model.bin")
    (path / "model.safetensors").unlink()
    return path


def _exp(tmp_path: Path, **kw) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(
        yaml.safe_dump({"out": str(tmp_path / "run"), "eval": {"tasks": ["csqa"], "limit": 2}, **kw})
    )
    return path


def test_pickle_refused_in_every_verb(pickled, llama, tmp_path, capsys):
    out = tmp_path / "out"
    ev = ["eval", "--model", pickled, "--tasks", "csqa", "--variants", "base", "--out", out]
    fails(capsys, ev, out, "--allow-pickle", str(pickled))
    sr = [
        "search",
        "--base",
        pickled,
        "--adapter",
        llama.adapter,
        "--dev-task",
        "csqa",
        "--test-tasks",
        "mmlu",
    ]
    fails(capsys, [*sr, "--out", out], out, "--allow-pickle", str(pickled))
    fails(
        capsys,
        ["inspect", "--base", pickled, "--adapter", llama.adapter],
        None,
        "--allow-pickle",
        str(pickled),
    )
    hidden = ["inspect", "--base", pickled, "--adapter", llama.adapter, "--hidden-states", "--tasks", "csqa"]
    fails(capsys, [*hidden, "--out", out], out, "--allow-pickle", str(pickled))
    exp = _exp(tmp_path, model=str(pickled), adapter=str(llama.adapter))
    fails(capsys, ["run", exp], tmp_path / "run", "--allow-pickle", str(pickled))
    train = ["train", "--model", pickled, "--data", "x.json", "--out", out]
    fails(capsys, train, out, "--allow-pickle", str(pickled))


def test_pickle_allowed_in_eval_gives_the_same_answers(pickled, chat_model, tmp_path):
    from taia.io.rows import data_root

    if data_root() is None:
        pytest.skip("needs ../shared/data or TAIA_DATA_DIR")
    common = ["--tasks", "csqa", "--variants", "base", "--limit", "2"]
    assert (
        main(["eval", "--model", str(pickled), *common, "--out", str(tmp_path / "p"), "--allow-pickle"]) == 0
    )
    assert main(["eval", "--model", str(chat_model("llama")), *common, "--out", str(tmp_path / "s")]) == 0
    rows = [(tmp_path / d / "samples" / "base" / "csqa.jsonl").read_text() for d in ("p", "s")]
    assert [json.loads(x)["scores"] for x in rows[0].splitlines()] == [
        json.loads(x)["scores"] for x in rows[1].splitlines()
    ]


def test_loaders_spell_out_the_pickle_rule():
    from taia.io.hf import load_kwargs

    assert load_kwargs(False, False) == {
        "use_safetensors": True,
        "weights_only": True,
        "trust_remote_code": False,
    }
    assert load_kwargs(True, True) == {
        "use_safetensors": None,
        "weights_only": True,
        "trust_remote_code": True,
    }


# --------------------------------------------------------------------------------- 5. file-system errors


def test_read_only_output_parent(llama, tmp_path, capsys, monkeypatch):
    import taia.io.atomic as atomic

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(atomic.tempfile, "mkdtemp", read_only)
    out = tmp_path / "out"
    fails(
        capsys,
        apply_args(llama.base, llama.finetuned, out),
        out,
        f"cannot write {out}",
        "Read-only file system",
    )


@pytest.mark.parametrize("source", ["finetuned", "adapter"])
def test_disk_full_during_write(llama, tmp_path, capsys, monkeypatch, source):
    import taia.io.checkpoint as ckpt

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.os, "copy_file_range", full)  # no silent fallback to a buffered copy either
    monkeypatch.setattr("taia.apply.adapter.save_file", full)
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, f"--{source}", getattr(llama, source)]
    fails(capsys, [*args, "--out", out], out, f"cannot write {out}", "No space left on device")


def test_os_error_in_any_verb_is_one_line(tmp_path, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "report.md"))

    import taia.run.render  # the module itself: `taia.run` as a dotted path can resolve to the verb function

    monkeypatch.setattr(taia.run.render, "write_report", full)
    fails(capsys, ["report", tmp_path / "run"], None, "No space left on device", "report.md")


# ------------------------------------------------------------------- 6. the one checker in every verb


@pytest.fixture(scope="module")
def wide_adapter(tmp_path_factory) -> Path:
    """A LoRA adapter trained for a llama of hidden size 48 (the fixtures' is 32)."""
    cfg = tiny_config("llama")
    cfg.hidden_size = 48
    path = tmp_path_factory.mktemp("wide") / "adapter"
    lora_adapter(AutoModelForCausalLM.from_config(cfg)).save_pretrained(path)
    return path


def test_adapter_for_another_base_in_every_verb(chat_model, wide_adapter, tmp_path, capsys):
    model, out = chat_model("llama"), tmp_path / "out"
    ev = ["eval", "--model", model, "--adapter", wide_adapter, "--tasks", "csqa", "--out", out]
    fails(capsys, ev, out, "does not fit", "lora_")
    fails(capsys, ["inspect", "--base", model, "--adapter", wide_adapter], None, "does not fit", "lora_")
    hidden = ["inspect", "--base", model, "--adapter", wide_adapter, "--hidden-states", "--tasks", "csqa"]
    fails(capsys, [*hidden, "--out", out], out, "does not fit")
    sr = ["search", "--base", model, "--adapter", wide_adapter, "--dev-task", "csqa", "--test-tasks", "mmlu"]
    fails(capsys, [*sr, "--out", out], out, "does not fit")
    fails(
        capsys,
        ["run", _exp(tmp_path, model=str(model), adapter=str(wide_adapter))],
        tmp_path / "run",
        "does not fit",
    )


def test_non_lora_adapter_in_apply_and_eval(llama, chat_model, tmp_path, capsys):
    adapter = copy(llama.adapter, tmp_path / "a")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, "peft_type": "IA3"}))
    out = tmp_path / "out"
    fails(
        capsys,
        ["apply", "--base", llama.base, "--adapter", adapter, "--out", out],
        out,
        "peft_type=IA3",
        str(adapter),
    )
    ev = ["eval", "--model", chat_model("llama"), "--adapter", adapter, "--tasks", "csqa", "--out", out]
    fails(capsys, ev, out, "only LoRA adapters", str(adapter))


def test_truncated_model_in_eval(chat_model, tmp_path, capsys):
    model = copy(chat_model("llama"), tmp_path / "m")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "out"
    fails(
        capsys,
        ["eval", "--model", model, "--tasks", "csqa", "--variants", "base", "--out", out],
        out,
        "truncated",
    )


def test_finetune_of_another_shape_in_eval_and_inspect(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    edit(ft, Q, torch.zeros(16, 32))
    out = tmp_path / "out"
    ev = ["eval", "--model", llama.base, "--finetuned", ft, "--tasks", "csqa", "--out", out]
    fails(capsys, ev, out, "shape mismatch", Q)
    fails(capsys, ["inspect", "--base", llama.base, "--finetuned", ft], None, "shape mismatch", Q)


# ----------------------------------------------------------------------- 7. flags and overrides intermixed


def test_overrides_between_flags(llama, tmp_path):
    mixed = tmp_path / "mixed"
    argv = [
        "apply",
        "--base",
        llama.base,
        "spec=taif",
        "--finetuned",
        llama.finetuned,
        "--out",
        mixed,
        "overwrite=true",
    ]
    assert main([str(a) for a in argv]) == 0
    plain = tmp_path / "plain"
    assert main([str(a) for a in apply_args(llama.base, llama.finetuned, plain, "spec=taif")]) == 0
    assert json.loads((mixed / "taia_report.json").read_text())["spec"]["name"] == "taif"
    assert read_tensors(mixed).keys() == read_tensors(plain).keys()


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--model", "m", "limit=3", "--tasks", "csqa", "seed=1", "--out", "o"],
        ["train", "--model", "m", "lr=1e-4", "--out", "o", "max_steps=2"],
        ["inspect", "--base", "b", "json_output=true", "--adapter", "a", "limit=1"],
        ["search", "cfg.yaml", "--base", "b", "dev_limit=5", "--out", "o", "seed=2"],
    ],
)
def test_every_verb_takes_intermixed_overrides(argv):
    ns = parse(argv)
    assert [a for a in ns.args if "=" in a] == [a for a in argv if "=" in a]


def test_unknown_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        parse(["apply", "--base", "b", "spec=taif", "--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("taia: error:") and "--bogus" in err


# ------------------------------------------------------------------------- 8. outputs follow the umask


@pytest.mark.parametrize("source", ["finetuned", "adapter", "merged"])
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_output_modes_follow_the_umask(llama, tmp_path, source, mask):
    out = tmp_path / "out"
    src = ["--finetuned", llama.finetuned] if source == "finetuned" else ["--adapter", llama.adapter]
    fmt = ["--format", "merged"] if source == "merged" else []
    old = os.umask(mask)
    try:
        assert main([str(a) for a in ["apply", "--base", llama.base, *src, *fmt, "--out", out]]) == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~mask}


# ------------------------------------------------------------- 9. a missing path that looks like owner/name


def test_missing_owner_name_path_is_one_line(llama, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    line = fails(
        capsys, apply_args("runs/full", llama.finetuned, out), out, "runs/full", "neither a local path"
    )
    assert "hub" in line


# ------------------------------------------------------------------------------------ 10. weak messages


def test_string_lambda(llama, tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("groups:\n  attn: half\n")
    out = tmp_path / "out"
    fails(
        capsys, apply_args(llama.base, llama.finetuned, out, "--spec", spec), out, "attn", "'half'", "number"
    )


def test_train_method_and_keys_have_suggestions(tmp_path, capsys):
    out = tmp_path / "out"
    line = fails(
        capsys, ["train", "--data", "x.json", "--out", out, "method=tofu"], out, "'tofu'", "did you mean"
    )
    assert "toa" in line and "tof" in line
    fails(capsys, ["train", "--data", "x.json", "--out", out, "learning_rate=1e-4"], out, "did you mean 'lr'")
    fails(
        capsys, ["train", "--data", "x.json", "--out", out, "zzz=1"], out, "unknown key", "known:", "epochs"
    )


@pytest.mark.parametrize("source", ["finetuned", "adapter"])
def test_layer_range_beyond_the_model(llama, tmp_path, capsys, source):
    spec = tmp_path / "deep.yaml"
    spec.write_text(yaml.safe_dump({"groups": {"attn": 1.0, "ffn": {"lambda": 1.0, "layers": [0, 40]}}}))
    out = tmp_path / "out"
    args = [
        "apply",
        "--base",
        llama.base,
        f"--{source}",
        getattr(llama, source),
        "--spec",
        spec,
        "--out",
        out,
    ]
    fails(capsys, args, out, "ffn layers [0, 40]", "2 layers")


def test_layer_range_beyond_the_model_in_eval(chat_model, tmp_path, capsys):
    spec = tmp_path / "deep.yaml"
    spec.write_text(yaml.safe_dump({"groups": {"ffn": {"lambda": 0.0, "layers": [1, 9]}}}))
    out = tmp_path / "out"
    ev = ["eval", "--model", chat_model("llama"), "--tasks", "csqa", "--variants", spec, "--out", out]
    fails(capsys, ev, out, "ffn layers [1, 9]", "2 layers")


def test_extrapolation_is_accepted_and_reported(llama, tmp_path, capsys):
    spec = tmp_path / "x.yaml"
    spec.write_text(yaml.safe_dump({"groups": {"attn": 2.5}}))
    out = tmp_path / "out"
    assert main([str(a) for a in apply_args(llama.base, llama.finetuned, out, "--spec", spec)]) == 0
    assert "note: λ outside [0, 1]" in capsys.readouterr().out
    assert json.loads((out / "taia_report.json").read_text())["extrapolated"] == {"attn": 2.5}
    assert leftovers(out) == []


@pytest.mark.parametrize("step", ["mkstemp", "write", "replace"])
def test_write_file_error_is_one_line_and_leaves_no_temp(tmp_path, monkeypatch, step):
    import taia.io.atomic as atomic
    from taia.errors import TaiaError

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / ".report.md.tmp-x"))

    if step == "mkstemp":
        monkeypatch.setattr(atomic.tempfile, "mkstemp", full)
    elif step == "replace":
        monkeypatch.setattr(atomic.os, "replace", full)
    elif step == "write":
        monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: _FullFile(fd))
    out = tmp_path / "report.md"
    with pytest.raises(TaiaError) as e:
        atomic.write_file(out, "text")
    assert str(e.value) == f"cannot write {out}: No space left on device"
    assert list(tmp_path.iterdir()) == []


class _FullFile:
    """A file whose write fails as on a full disk (and which still closes its descriptor)."""

    def __init__(self, fd):
        self.fd = fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
