"""Registry: named entries with "did you mean" errors."""

from __future__ import annotations

import pytest

from taia.errors import TaiaError
from taia.registry import Registry, did_you_mean


def _registry() -> Registry[int]:
    reg: Registry[int] = Registry("backend")
    reg.add("vllm", 1)
    reg.add("hf", 2)
    reg.add("llama-cpp", 3)
    return reg


def test_add_get_contains_names():
    reg = _registry()
    assert reg.get("vllm") == 1
    assert reg.get("hf") == 2
    assert "llama-cpp" in reg
    assert "sglang" not in reg
    assert 3 not in reg
    assert reg.names() == ["vllm", "hf", "llama-cpp"]  # insertion order
    assert list(reg) == reg.names()
    assert reg.add("sglang", 4) == 4
    assert reg.get("sglang") == 4


def test_register_decorator():
    reg: Registry[object] = Registry("task")

    @reg.register("gsm8k")
    def gsm8k() -> str:
        return "ok"

    assert reg.get("gsm8k") is gsm8k
    assert gsm8k() == "ok"


def test_duplicate_add_raises():
    reg = _registry()
    with pytest.raises(ValueError, match="backend 'hf' registered twice"):
        reg.add("hf", 99)
    assert reg.get("hf") == 2
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("vllm")(5)


def test_unknown_name_suggests_and_lists_known():
    reg = _registry()
    with pytest.raises(TaiaError) as e:
        reg.get("vlm")
    msg = str(e.value)
    assert msg.startswith("unknown backend 'vlm'; did you mean 'vllm'?")
    assert msg.endswith("(known: hf, llama-cpp, vllm)")


def test_unknown_name_without_close_match():
    reg = _registry()
    with pytest.raises(TaiaError) as e:
        reg.get("zzzzzz")
    msg = str(e.value)
    assert "did you mean" not in msg
    assert msg == "unknown backend 'zzzzzz' (known: hf, llama-cpp, vllm)"


def test_empty_registry_error():
    reg: Registry[int] = Registry("model")
    assert reg.names() == []
    with pytest.raises(TaiaError, match=r"unknown model 'x' \(known: \)"):
        reg.get("x")


def test_did_you_mean_several():
    err = did_you_mean("taia-rf", ["taia", "taia-ref", "taif", "base"], "spec preset")
    assert isinstance(err, TaiaError)
    msg = str(err)
    assert "did you mean 'taia-ref' or " in msg
    assert "'base'" not in msg.split("(known:")[0]
    assert msg.endswith("(known: base, taia, taia-ref, taif)")
