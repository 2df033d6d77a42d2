"""The "bad inputs" contract: every user error is one `taia: error: …` line on stderr, exit code 2, and no
output (nor temp dir) left behind. Inputs are always corrupted in copies, never in the session fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import taia.apply.checkpoint as checkpoint_mod
from conftest import lora_adapter, tiny_config, tiny_model
from taia.cli import main
from taia.errors import TaiaError

ADAPTER_SAFE = "adapter_model.safetensors"
ATTN_Q = "model.layers.0.self_attn.q_proj.weight"
LORA_B_Q = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"


# ---------------------------------------------------------------------------------------------- helpers


def leftovers(out: Path) -> list[str]:
    """Temp dirs (`.NAME.tmp-*`, `.NAME.old-*`) that an atomic write left beside `out`."""
    if not out.parent.exists():
        return []
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def fails(capsys, argv: list[str], out: Path | None, *needles: str) -> str:
    """Run the CLI, expect a one-line user error naming every needle, no output, no temp dirs."""
    capsys.readouterr()  # drop what fixtures built lazily in the test body printed
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 2, (rc, err)
    assert "pwned" not in captured.out
    lines = err.splitlines()
    assert err.endswith("\n") and lines, f"no error line: {err!r}"
    assert len(lines) == 1, f"stderr is not one line: {err!r}"
    starts = [i for i, x in enumerate(lines) if x.startswith("taia: error: ")]
    assert len(starts) == 1, err
    line = " ".join(lines[starts[0] :])
    assert line.startswith("taia: error: ") and len(line) > len("taia: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    if out is not None:
        assert not out.exists(), f"{out} was created"
        assert leftovers(out) == []
    return line


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def truncate(path: Path, size: int) -> None:
    data = path.read_bytes()
    assert size < len(data)
    path.write_bytes(data[:size])


def spec_file(tmp_path: Path, data: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file in a dir (through safetensors' own reader)."""
    out: dict[str, torch.Tensor] = {}
    for f in sorted(path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():  # noqa: SIM118 — safe_open is not a mapping
                out[k] = st.get_tensor(k)
    return out


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = read_tensors(a), read_tensors(b)
    assert ta.keys() == tb.keys() and ta
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k


def save_llama(path: Path, seed: int = 0, max_shard_size: str | None = None, **changes) -> Path:
    cfg = tiny_config("llama")
    for k, v in changes.items():
        setattr(cfg, k, v)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    if max_shard_size:
        model.save_pretrained(path, max_shard_size=max_shard_size)
    else:
        model.save_pretrained(path)
    return path


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def other_shapes(tmp_path_factory) -> dict[str, Path]:
    """Llama bases whose FFN width / hidden size differ from the fixtures' (read-only: copy to corrupt)."""
    root = tmp_path_factory.mktemp("other-shapes")
    return {
        "intermediate_size": save_llama(root / "inter", intermediate_size=48),
        "hidden_size": save_llama(root / "hidden", hidden_size=48),
    }


@pytest.fixture(scope="module")
def sharded_ft(llama, tmp_path_factory) -> Path:
    """The llama fine-tune re-saved in several small shards (read-only: copy to corrupt)."""
    path = tmp_path_factory.mktemp("sharded") / "ft"
    AutoModelForCausalLM.from_pretrained(llama.finetuned).save_pretrained(path, max_shard_size="20KB")
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 3
    return path


@pytest.fixture(scope="module")
def ffn_adapter(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ffn-adapter") / "a"
    target = ["gate_proj", "up_proj", "down_proj"]
    lora_adapter(tiny_model("llama"), target_modules=target).save_pretrained(path)
    return path


# ------------------------------------------------------------------- 1. adapter made for a different base


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
def test_adapter_for_other_architecture(llama, saved, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    args = ["apply", "--base", saved("gpt2").base, "--adapter", llama.adapter, "--out", out, "--format", fmt]
    line = fails(capsys, args, out, "does not fit", "gpt2")
    assert "q_proj" in line or "layers" in line


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
@pytest.mark.parametrize("changed", ["intermediate_size", "hidden_size"])
def test_adapter_for_other_shape(llama, other_shapes, tmp_path, capsys, fmt, changed):
    out = tmp_path / "out"
    args = ["apply", "--base", other_shapes[changed], "--adapter", llama.adapter, "--out", out]
    line = fails(capsys, [*args, "--format", fmt], out, "does not fit", "shape")
    assert "lora_" in line  # names the adapter tensor that does not fit
    if changed == "intermediate_size":
        assert "mlp" in line


# ------------------------------------------------------------- 2. full fine-tune vs a base that is not its


def test_finetune_vs_other_architecture(llama, saved, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["apply", "--base", saved("gpt2").base, "--finetuned", llama.finetuned, "--out", out]
    fails(capsys, args, out, "gpt2", "llama")


@pytest.mark.parametrize("changed", ["intermediate_size", "hidden_size"])
def test_finetune_vs_other_shape(llama, other_shapes, tmp_path, capsys, changed):
    out = tmp_path / "out"
    args = ["apply", "--base", other_shapes[changed], "--finetuned", llama.finetuned, "--out", out]
    line = fails(capsys, args, out, "shape mismatch", "48]" if changed == "hidden_size" else "48", "base [")
    if changed == "intermediate_size":
        assert ".mlp." in line


# ------------------------------------------------------------------------------ 3. missing safetensors


def test_finetune_without_weights(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    (ft / "model.safetensors").unlink()
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", ft, "--out", out]
    fails(capsys, args, out, str(ft), "model.safetensors")


def test_base_without_weights(llama, tmp_path, capsys):
    base = copy(llama.base, tmp_path / "base")
    (base / "model.safetensors").unlink()
    out = tmp_path / "out"
    args = ["apply", "--base", base, "--finetuned", llama.finetuned, "--out", out]
    fails(capsys, args, out, str(base), "model.safetensors")


def test_merged_base_without_weights(llama, tmp_path, capsys):
    base = copy(llama.base, tmp_path / "base")
    (base / "model.safetensors").unlink()
    out = tmp_path / "out"
    args = ["apply", "--base", base, "--adapter", llama.adapter, "--out", out, "--format", "merged"]
    fails(capsys, args, out, str(base), "model.safetensors")


def test_sharded_finetune_missing_shard(llama, sharded_ft, tmp_path, capsys):
    ft = copy(sharded_ft, tmp_path / "ft")
    index = json.loads((ft / "model.safetensors.index.json").read_text())
    gone = sorted(set(index["weight_map"].values()))[1]
    (ft / gone).unlink()
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", ft, "--out", out]
    fails(capsys, args, out, gone, "missing")


def test_sharded_finetune_corrupt_index(llama, sharded_ft, tmp_path, capsys):
    ft = copy(sharded_ft, tmp_path / "ft")
    (ft / "model.safetensors.index.json").write_text('{"metadata": {}}')
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", ft, "--out", out]
    fails(capsys, args, out, "model.safetensors.index.json")


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
def test_adapter_without_weights(llama, tmp_path, capsys, fmt):
    adapter = copy(llama.adapter, tmp_path / "adapter")
    (adapter / ADAPTER_SAFE).unlink()
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--format", fmt]
    fails(capsys, args, out, str(adapter), ADAPTER_SAFE)


def test_adapter_without_config(llama, tmp_path, capsys):
    adapter = copy(llama.adapter, tmp_path / "adapter")
    (adapter / "adapter_config.json").unlink()
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out]
    fails(capsys, args, out, "adapter_config.json")


def test_missing_input_dir(llama, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "nope"
    fails(capsys, ["apply", "--base", llama.base, "--finetuned", missing, "--out", out], out, str(missing))


# ---------------------------------------------------------------------------- 4. truncated safetensors


def _half(path: Path) -> int:
    return path.stat().st_size // 2


@pytest.mark.parametrize("size", ["half", "4"])
@pytest.mark.parametrize("position", ["base", "finetuned"])
def test_truncated_checkpoint(llama, tmp_path, capsys, position, size):
    src = {"base": llama.base, "finetuned": llama.finetuned}
    broken = copy(src[position], tmp_path / position)
    weights = broken / "model.safetensors"
    truncate(weights, _half(weights) if size == "half" else 4)
    out = tmp_path / "out"
    inputs = {**src, position: broken}
    args = ["apply", "--base", inputs["base"], "--finetuned", inputs["finetuned"], "--out", out]
    fails(capsys, args, out, "truncated", str(weights))


def test_truncated_shard(llama, sharded_ft, tmp_path, capsys):
    ft = copy(sharded_ft, tmp_path / "ft")
    shard = sorted(ft.glob("model-*.safetensors"))[-1]
    truncate(shard, _half(shard))
    out = tmp_path / "out"
    fails(
        capsys, ["apply", "--base", llama.base, "--finetuned", ft, "--out", out], out, "truncated", shard.name
    )


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
@pytest.mark.parametrize("size", ["half", "4"])
def test_truncated_adapter(llama, tmp_path, capsys, size, fmt):
    adapter = copy(llama.adapter, tmp_path / "adapter")
    weights = adapter / ADAPTER_SAFE
    truncate(weights, _half(weights) if size == "half" else 4)
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--format", fmt]
    fails(capsys, args, out, "truncated", ADAPTER_SAFE)


def test_merged_truncated_base(llama, tmp_path, capsys):
    base = copy(llama.base, tmp_path / "base")
    truncate(base / "model.safetensors", _half(base / "model.safetensors"))
    out = tmp_path / "out"
    args = ["apply", "--base", base, "--adapter", llama.adapter, "--out", out, "--format", "merged"]
    fails(capsys, args, out, "truncated", "model.safetensors")


def test_truncated_inputs_for_inspect(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    truncate(ft / "model.safetensors", _half(ft / "model.safetensors"))
    fails(capsys, ["inspect", "--base", llama.base, "--finetuned", ft], None, "truncated")
    adapter = copy(llama.adapter, tmp_path / "adapter")
    truncate(adapter / ADAPTER_SAFE, 4)
    fails(capsys, ["inspect", "--base", llama.base, "--adapter", adapter], None, "truncated")


# ------------------------------------------------------------------------------- 5. pickle .bin weights


def _to_pickle(src: Path, dst: Path, safe: str, pickle: str) -> Path:
    copy(src, dst)
    torch.save(load_file(str(dst / safe)), dst / pickle)
    (dst / safe).unlink()
    return dst


@pytest.mark.parametrize("which", ["finetuned", "base"])
def test_pickle_input_refused_then_allowed(which, llama, tmp_path, capsys):
    pickled = _to_pickle(getattr(llama, which), tmp_path / which, "model.safetensors", "pytorch_model.bin")
    paths = {"base": llama.base, "finetuned": llama.finetuned, which: pickled}
    out = tmp_path / "out"
    args = ["apply", "--base", paths["base"], "--finetuned", paths["finetuned"], "--out", out]
    fails(capsys, args, out, "--allow-pickle", str(pickled))
    assert main([*map(str, args), "--allow-pickle"]) == 0
    ref = tmp_path / "ref"
    reference = ["apply", "--base", llama.base, "--finetuned", llama.finetuned, "--out", ref]
    assert main([*map(str, reference)]) == 0
    assert_same_tensors(out, ref)
    assert leftovers(out) == []


def test_pickle_base_refused_for_merged(llama, tmp_path, capsys):
    base = _to_pickle(llama.base, tmp_path / "base", "model.safetensors", "pytorch_model.bin")
    out = tmp_path / "out"
    args = ["apply", "--base", base, "--adapter", llama.adapter, "--out", out, "--format", "merged"]
    fails(capsys, args, out, "--allow-pickle")


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
def test_pickle_adapter_refused_then_allowed(llama, tmp_path, capsys, fmt):
    adapter = _to_pickle(llama.adapter, tmp_path / "adapter", ADAPTER_SAFE, "adapter_model.bin")
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--format", fmt]
    fails(capsys, args, out, "--allow-pickle", "adapter_model.bin")
    assert main([*map(str, args), "--allow-pickle"]) == 0
    ref = tmp_path / "ref"
    ref_args = ["apply", "--base", llama.base, "--adapter", llama.adapter, "--out", ref, "--format", fmt]
    assert main([str(a) for a in ref_args]) == 0
    assert_same_tensors(out, ref)


def test_peft_saved_pickle_adapter_allowed(llama, tmp_path, capsys):
    """An adapter written by PEFT itself with safe_serialization=False."""
    adapter = tmp_path / "adapter"
    lora_adapter(tiny_model("llama")).save_pretrained(adapter, safe_serialization=False)
    assert (adapter / "adapter_model.bin").is_file() and not (adapter / ADAPTER_SAFE).exists()
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out]
    fails(capsys, args, out, "--allow-pickle")
    assert main([*map(str, args), "--allow-pickle"]) == 0
    ref = tmp_path / "ref"
    assert main(["apply", "--base", str(llama.base), "--adapter", str(llama.adapter), "--out", str(ref)]) == 0
    assert_same_tensors(out, ref)


def _evil_pickle_ft(llama, tmp_path: Path) -> Path:
    ft = copy(llama.finetuned, tmp_path / "ft")
    (ft / "model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, ft / "pytorch_model.bin")
    return ft


def test_malicious_pickle_refused_even_with_allow_pickle(llama, tmp_path, capsys):
    """weights_only=True: a pickle that would run code is an error, not an execution."""
    ft = _evil_pickle_ft(llama, tmp_path)
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", ft, "--out", out, "--allow-pickle"]
    # The code did not run ("pwned" not printed), nothing was written, the file is named.
    fails(capsys, args, out, "cannot load", str(ft / "pytorch_model.bin"), "weights_only")


def test_malicious_pickle_error_is_one_line(llama, tmp_path, capsys):
    ft = _evil_pickle_ft(llama, tmp_path)
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", ft, "--out", out, "--allow-pickle"]
    fails(capsys, args, out, "weights_only", "pytorch_model.bin")


# --------------------------------------------------------------------------------- 6. NaN/Inf produced


def test_fractional_spec_on_inf_finetune(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    tensors = load_file(str(ft / "model.safetensors"))
    tensors[ATTN_Q][0, 0] = float("inf")
    save_file(tensors, str(ft / "model.safetensors"), metadata={"format": "pt"})
    spec = spec_file(tmp_path, {"groups": {"attn": 0.5}})
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", ft, "--out", out, "--spec", spec]
    fails(capsys, args, out, "NaN/Inf", ATTN_Q)


def _inf_adapter(llama, tmp_path: Path) -> Path:
    adapter = copy(llama.adapter, tmp_path / "adapter")
    tensors = load_file(str(adapter / ADAPTER_SAFE))
    tensors[LORA_B_Q][0, 0] = float("inf")
    save_file(tensors, str(adapter / ADAPTER_SAFE), metadata={"format": "pt"})
    return adapter


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
def test_fractional_lambda_on_inf_adapter(llama, tmp_path, capsys, fmt):
    adapter = _inf_adapter(llama, tmp_path)
    spec = spec_file(tmp_path, {"groups": {"attn": 0.5}})
    out = tmp_path / "out"
    args = [
        "apply",
        "--base",
        llama.base,
        "--adapter",
        adapter,
        "--out",
        out,
        "--spec",
        spec,
        "--format",
        fmt,
    ]
    fails(capsys, args, out, "NaN/Inf", LORA_B_Q)


def test_merge_of_inf_adapter(llama, tmp_path, capsys):
    adapter = _inf_adapter(llama, tmp_path)
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--format", "merged"]
    fails(capsys, args, out, "NaN/Inf", "q_proj")


def test_merge_of_inf_adapter_error_is_one_line(llama, tmp_path, capsys):
    adapter = _inf_adapter(llama, tmp_path)
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", adapter, "--out", out, "--format", "merged"]
    fails(capsys, args, out, "NaN/Inf", "q_proj")


# ----------------------------------------------------------------------------- 7. output already exists


@pytest.mark.parametrize("source", ["finetuned", "adapter"])
def test_existing_output(llama, tmp_path, capsys, source):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    (out / "sub").mkdir()
    (out / "sub" / "x.bin").write_bytes(b"\x00\x01")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    args = ["apply", "--base", str(llama.base), f"--{source}", str(getattr(llama, source)), "--out", str(out)]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("taia: error: ")
    assert "already exists" in err and str(out) in err and "--overwrite" in err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert (out / "keep.txt").read_text() == "precious"
    assert leftovers(out) == []

    assert main([*args, "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and not (out / "sub").exists()
    report = json.loads((out / "taia_report.json").read_text())
    assert report["spec"]["name"] == "taia"
    assert (out / "taia_config.yaml").is_file()
    assert leftovers(out) == []


def test_existing_output_file(llama, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("not a dir")
    args = ["apply", "--base", llama.base, "--finetuned", llama.finetuned, "--out", out]
    assert main([str(a) for a in args]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == "not a dir"


# ---------------------------------------------------------------------------- 8. a spec that selects nothing


def test_spec_selecting_nothing_on_dense_finetune(llama, tmp_path, capsys):
    spec = spec_file(tmp_path, {"groups": {"experts": 1.0}})
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", llama.finetuned, "--out", out, "--spec", spec]
    fails(capsys, args, out, "selects nothing", "experts")


@pytest.mark.parametrize("fmt", ["adapter", "merged"])
def test_taia_on_ffn_only_adapter(llama, ffn_adapter, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", ffn_adapter, "--out", out, "--spec", "taia"]
    fails(capsys, [*args, "--format", fmt], out, "selects nothing", "attn")


# ------------------------------------------------------------------------ 9. unknown names in configs


def test_unknown_spec_preset(llama, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", llama.finetuned, "--out", out, "--spec", "taai"]
    fails(capsys, args, out, "'taai'", "did you mean", "'taia'")


def test_unknown_group_in_spec_file(llama, tmp_path, capsys):
    spec = spec_file(tmp_path, {"groups": {"atn": 1.0}})
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", llama.finetuned, "--out", out, "--spec", spec]
    fails(capsys, args, out, "atn", "did you mean", "attn")


def test_missing_spec_file(llama, tmp_path, capsys):
    out = tmp_path / "out"
    spec = tmp_path / "nope.yaml"
    args = ["apply", "--base", llama.base, "--finetuned", llama.finetuned, "--out", out, "--spec", spec]
    fails(capsys, args, out, "nope.yaml", "not found")


def test_unknown_override_key(llama, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", llama.finetuned, "--out", out, "bogus=1"]
    fails(capsys, args, out, "bogus", "unknown key")


def test_unknown_key_in_config_file(llama, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = {"base": str(llama.base), "finetuned": str(llama.finetuned), "out": str(out), "overwrit": True}
    path = spec_file(tmp_path, cfg, "exp.yaml")
    fails(capsys, ["apply", path], out, "overwrit", "did you mean", "'overwrite'")


def test_missing_config_file(tmp_path, capsys):
    path = tmp_path / "missing.yaml"
    fails(capsys, ["apply", path, f"out={tmp_path / 'out'}"], tmp_path / "out", "missing.yaml", "not found")
    fails(capsys, ["inspect", path], None, "missing.yaml", "not found")


def test_invalid_yaml_config(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("base: [unclosed\nout: x\n")
    fails(capsys, ["apply", path], None, "bad.yaml", "not valid YAML")


def test_both_sources_and_no_source(llama, tmp_path, capsys):
    out = tmp_path / "out"
    cfg = {"base": str(llama.base), "adapter": str(llama.adapter), "finetuned": str(llama.finetuned)}
    path = spec_file(tmp_path, {**cfg, "out": str(out)}, "exp.yaml")
    fails(capsys, ["apply", path], out, "exactly one")
    fails(capsys, ["apply", "--base", llama.base, "--out", out], out, "exactly one")


# ---------------------------------------------------------------- 10. failures in the middle of writing


def _fail_on_second_shard(monkeypatch, exc: BaseException) -> list[Path]:
    real = checkpoint_mod.write_shard
    written: list[Path] = []

    def flaky(path, items, **kwargs):
        if written:
            raise exc
        written.append(path)
        return real(path, items, **kwargs)

    monkeypatch.setattr(checkpoint_mod, "write_shard", flaky)
    return written


def test_failure_mid_write_leaves_nothing(llama, sharded_ft, tmp_path, capsys, monkeypatch):
    written = _fail_on_second_shard(monkeypatch, TaiaError("disk on fire"))
    out = tmp_path / "deep" / "out"
    args = ["apply", "--base", llama.base, "--finetuned", sharded_ft, "--out", out]
    fails(capsys, args, out, "disk on fire")
    assert len(written) == 1 and written[0].parent.name.startswith(".out.tmp-")
    assert not written[0].exists()


def test_failure_mid_write_keeps_existing_output(llama, sharded_ft, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["apply", "--base", str(llama.base), "--finetuned", str(sharded_ft), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _fail_on_second_shard(monkeypatch, TaiaError("disk on fire"))
    rc = main([*args, "--spec", "taif", "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and err == "taia: error: disk on fire\n"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(out) == []


def test_interrupt_mid_write_leaves_nothing(llama, sharded_ft, tmp_path, capsys, monkeypatch):
    _fail_on_second_shard(monkeypatch, KeyboardInterrupt())
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", sharded_ft, "--out", out]
    assert main([str(a) for a in args]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() and leftovers(out) == []


def test_failure_writing_adapter_output(llama, tmp_path, capsys, monkeypatch):
    import taia.apply.adapter as adapter_mod

    def boom(*a, **k):
        raise TaiaError("cannot write report")

    monkeypatch.setattr(adapter_mod, "write_report", boom)
    out = tmp_path / "out"
    fails(capsys, ["apply", "--base", llama.base, "--adapter", llama.adapter, "--out", out], out, "report")


# ------------------------------------------------------------------- other corrupt inputs (known bugs)


def test_corrupt_adapter_config(llama, tmp_path, capsys):
    adapter = copy(llama.adapter, tmp_path / "adapter")
    (adapter / "adapter_config.json").write_text("{not json")
    out = tmp_path / "out"
    fails(
        capsys,
        ["apply", "--base", llama.base, "--adapter", adapter, "--out", out],
        out,
        "adapter_config.json",
    )


def test_safetensors_header_entry_without_offsets(llama, tmp_path, capsys):
    ft = copy(llama.finetuned, tmp_path / "ft")
    weights = ft / "model.safetensors"
    data = weights.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    del header[ATTN_Q]["data_offsets"]
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    weights.write_bytes(len(blob).to_bytes(8, "little") + blob + data[8 + n :])
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--finetuned", ft, "--out", out]
    fails(capsys, args, out, "model.safetensors")


def test_bad_max_shard_size(llama, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["apply", "--base", llama.base, "--adapter", llama.adapter, "--out", out, "--format", "merged"]
    fails(capsys, [*args, "--max-shard-size", "lots"], out, "lots")


def test_out_may_not_replace_an_input(llama, tmp_path, capsys):
    ft = tmp_path / "ft"
    shutil.copytree(llama.finetuned, ft)
    before = sorted(p.name for p in ft.iterdir())
    argv = ["apply", "--base", llama.base, "--finetuned", ft, "--out", ft, "--overwrite"]
    fails(capsys, argv, None, "would replace the finetuned input")
    argv = ["apply", "--base", llama.base, "--finetuned", ft, "--out", tmp_path, "--overwrite"]
    fails(capsys, argv, None, "would replace the finetuned input")
    assert sorted(p.name for p in ft.iterdir()) == before


def test_modules_to_save_copy_of_another_shape(llama, tmp_path, capsys):
    """A `modules_to_save` lm_head from a model with a resized vocabulary does not fit the base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    cfg = tiny_config("llama")
    cfg.vocab_size = 136
    lora = LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=["lm_head"])
    resized = get_peft_model(AutoModelForCausalLM.from_config(cfg), lora)
    resized.save_pretrained(tmp_path / "adapter")
    out = tmp_path / "out"
    argv = [
        "apply",
        "--base",
        llama.base,
        "--adapter",
        tmp_path / "adapter",
        "--out",
        out,
        "--spec",
        "vanilla",
    ]
    fails(capsys, argv, out, "lm_head", "[136, 32]", "[128, 32]")


def test_non_finite_finds_nan_and_both_infinities_in_merged_modules_only():
    from conftest import tiny_model
    from taia.apply.merged import non_finite

    model = tiny_model("llama")
    q, k, up = (f"model.layers.0.{m}" for m in ("self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj"))
    assert non_finite(model, [q, k]) == []
    with torch.no_grad():
        model.get_parameter(f"{q}.weight")[0, 0] = float("nan")
        model.get_parameter(f"{k}.weight")[1, 2] = float("-inf")
        model.get_parameter(f"{up}.weight")[0, 1] = float("inf")
    assert non_finite(model, [q, k, up]) == [f"{q}.weight", f"{k}.weight", f"{up}.weight"]
    assert non_finite(model, [k]) == [f"{k}.weight"]  # modules the merge did not touch are not scanned
