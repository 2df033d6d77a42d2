"""What taia refuses (docs/refusals.md), one test per row, on tiny models: each asserts exit code 2, one
`taia: error:` line naming the input, and that nothing was written. Issue #13's defects 1-10 in order;
the full-checkpoint checks run on a single-file and on a sharded fine-tune."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from conftest import lora_adapter, tiny_config
from taia.cli import main, parse
from test_errors import copy, fails, leftovers, read_tensors

Q = "model.layers.0.self_attn.q_proj.weight"
K = "model.layers.0.self_attn.k_proj.weight"
UP = "model.layers.0.mlp.up_proj.weight"
DOWN = "model.layers.1.mlp.down_proj.weight"
INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def sharded(llama, tmp_path_factory) -> Path:
    """The llama fine-tune re-saved in several small shards (read-only: copy to corrupt)."""
    path = tmp_path_factory.mktemp("sharded-ft") / "ft"
    AutoModelForCausalLM.from_pretrained(llama.finetuned).save_pretrained(path, max_shard_size="20KB")
    assert len(set(json.loads((path / INDEX).read_text())["weight_map"].values())) >= 3
    return path


@pytest.fixture(params=["single", "sharded"])
def ft_kind(request) -> str:
    return request.param


def ft_copy(llama, sharded, kind: str, dst: Path) -> Path:
    return copy(llama.finetuned if kind == "single" else sharded, dst)


def _file_of(ckpt: Path, name: str) -> Path:
    if (ckpt / INDEX).is_file():
        weight_map = json.loads((ckpt / INDEX).read_text())["weight_map"]
        return ckpt / weight_map.get(name, weight_map[Q])  # a new tensor goes beside Q
    return ckpt / "model.safetensors"


def edit(ckpt: Path, name: str, new: torch.Tensor | None) -> None:
    """Replace, add or (with None) delete one tensor of a single-file or sharded checkpoint in place."""
    file = _file_of(ckpt, name)
    tensors = load_file(str(file))
    if new is None:
        del tensors[name]
    else:
        tensors[name] = new
    save_file(tensors, str(file), metadata={"format": "pt"})
    if (ckpt / INDEX).is_file():
        index = json.loads((ckpt / INDEX).read_text())
        index["weight_map"].pop(name, None)
        if new is not None:
            index["weight_map"][name] = file.name
        (ckpt / INDEX).write_text(json.dumps(index))


def poke(ckpt: Path, name: str, value: float) -> None:
    t = load_file(str(_file_of(ckpt, name)))[name].clone()
    t.view(-1)[3] = value
    edit(ckpt, name, t)


def apply_args(base, ft, out, *extra) -> list:
    return ["apply", "--base", base, "--finetuned", ft, "--out", out, *extra]


# ---------------------------------------------------------- 1. a tensor missing from / extra in the fine-tune


@pytest.mark.parametrize("name", [K, Q])
def test_missing_kept_tensor_is_refused(llama, sharded, ft_kind, tmp_path, capsys, name):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, name, None)
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out, "--spec", "taia-ref"), out, name, str(ft), "no tensor")


def test_missing_reverted_tensor_comes_from_the_base(llama, sharded, ft_kind, tmp_path, capsys):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, UP, None)
    out = tmp_path / "out"
    assert main([str(a) for a in apply_args(llama.base, ft, out, "--spec", "taia-ref")]) == 0
    written, base = read_tensors(out), read_tensors(llama.base)
    assert written.keys() == base.keys()  # every tensor of the model, none random on load
    assert torch.equal(written[UP], base[UP])
    assert json.loads((out / "taia_report.json").read_text())["base_only_tensors"] == [UP]
    if ft_kind == "sharded":
        assert UP in json.loads((out / INDEX).read_text())["weight_map"]
    AutoModelForCausalLM.from_pretrained(out)  # loads, no missing keys
    fails(capsys, apply_args(llama.base, ft, tmp_path / "o2", "--spec", "vanilla"), tmp_path / "o2", UP)


def test_extra_tensor_needs_an_override(llama, sharded, ft_kind, tmp_path, capsys):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, "model.layers.0.self_attn.extra_bias", torch.zeros(4))
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out), out, "extra_bias", "lacks", "override")
    spec = tmp_path / "keep.yaml"
    spec.write_text(
        yaml.safe_dump({"groups": {"attn": 1.0}, "overrides": [{"pattern": "extra", "lambda": 1}]})
    )
    assert main([str(a) for a in apply_args(llama.base, ft, out, "--spec", spec)]) == 0
    assert "model.layers.0.self_attn.extra_bias" in read_tensors(out)


# ----------------------------------------------------------------------------- 2. NaN/Inf in a copied tensor


@pytest.mark.parametrize(
    ("name", "value", "spec"), [(Q, float("nan"), "taia"), (DOWN, float("inf"), "vanilla")]
)
def test_non_finite_copied_tensor_is_refused(llama, sharded, ft_kind, tmp_path, capsys, name, value, spec):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    poke(ft, name, value)
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out, "--spec", spec), out, "NaN/Inf", name, str(ft))
    assert main([str(a) for a in apply_args(llama.base, ft, out, "--spec", spec, "--skip-finite-check")]) == 0
    assert not torch.isfinite(read_tensors(out)[name]).all()  # the opt-out writes what it was given


def test_non_finite_base_tensor_is_refused(llama, tmp_path, capsys):
    base = copy(llama.base, tmp_path / "base")
    poke(base, UP, float("-inf"))
    out = tmp_path / "out"
    fails(capsys, apply_args(base, llama.finetuned, out), out, "NaN/Inf", UP, str(base))


def test_non_finite_pickle_tensor_is_refused(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    tensors = load_file(str(ft / "model.safetensors"))
    tensors[Q][0, 0] = float("nan")
    torch.save(tensors, ft / "pytorch_model.bin")
    (ft / "model.safetensors").unlink()
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out, "--allow-pickle"), out, "NaN/Inf", Q, str(ft))


# ---------------------------------------------------------------------- 3. wrong shape or dtype kind


@pytest.mark.parametrize("spec", ["taia", "taif"])
def test_wrong_shape_is_refused(llama, sharded, ft_kind, tmp_path, capsys, spec):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, Q, torch.zeros(16, 32))
    out = tmp_path / "out"
    fails(
        capsys,
        apply_args(llama.base, ft, out, "--spec", spec),
        out,
        "shape mismatch",
        Q,
        "[16, 32]",
        "[32, 32]",
    )


def test_wrong_dtype_kind_is_refused(llama, sharded, ft_kind, tmp_path, capsys):
    ft = ft_copy(llama, sharded, ft_kind, tmp_path / "ft")
    edit(ft, Q, torch.zeros(32, 32, dtype=torch.int32))
    out = tmp_path / "out"
    fails(capsys, apply_args(llama.base, ft, out), out, "dtype mismatch", Q, "I32")


def test_other_float_width_is_accepted(llama, tmp_path):
    """An fp32 fine-tune of a bf16 base is common: float widths may differ, only the kind may not."""
    ft = copy(llama.finetuned, tmp_path / "ft")
    edit(ft, Q, load_file(str(ft / "model.safetensors"))[Q].to(torch.bfloat16))
    assert main([str(a) for a in apply_args(llama.base, ft, tmp_path / "out")]) == 0
    assert read_tensors(tmp_path / "out")[Q].dtype == torch.bfloat16


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
def test_disk_full_during_write(llama, sharded, tmp_path, capsys, monkeypatch, source):
    import taia.io.checkpoint as ckpt

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.os, "copy_file_range", full)  # no silent fallback to a buffered copy either
    monkeypatch.setattr("taia.apply.adapter.save_file", full)
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, f"--{source}", sharded if source == "finetuned" else llama.adapter]
    fails(capsys, [*args, "--out", out], out, f"cannot write {out}", "No space left on device")


def test_os_error_in_any_verb_is_one_line(tmp_path, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "run" / "report.md"))

    monkeypatch.setattr("taia.run.report.write_report", full)
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
