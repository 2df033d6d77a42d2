"""The vLLM backend's glue, without vLLM: a stand-in engine answers vLLM's API (`LLM.generate` with
`SamplingParams`, `LoRARequest`, `prompt_logprobs`) from a transformers model, so `taia eval --backend vllm`
must give the same answers and scores as `--backend hf`. This checks how taia builds the LoRA requests
(one `taia apply`'d adapter per variant, none for base) and reads vLLM's outputs; vLLM itself is not run here
(no GPU). Run: `pytest tests/test_vllm_glue.py`."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from conftest import lora_adapter, tiny_model
from taia.eval import EvalConfig, evaluate


class FakeLLM:
    """vLLM's `LLM` surface that taia uses, computed with transformers + PEFT (greedy, fp32)."""

    def __init__(self, model: str, enable_lora: bool = False, seed: int = 0, **kwargs) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path, self.kwargs, self.tok = model, kwargs, AutoTokenizer.from_pretrained(model)
        self.load = lambda: AutoModelForCausalLM.from_pretrained(model).eval()
        self.requests_seen: list = []

    def _model(self, lora):
        from peft import PeftModel

        self.requests_seen.append(None if lora is None else lora.lora_name)
        return self.load() if lora is None else PeftModel.from_pretrained(self.load(), lora.lora_path).eval()

    @torch.no_grad()
    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        model = self._model(lora_request)
        return [self._one(model, p, params) for p in prompts]

    def _one(self, model, prompt, params):
        ids = prompt["prompt_token_ids"] if isinstance(prompt, dict) else self.tok(prompt)["input_ids"]
        x = torch.tensor([ids])
        if params.prompt_logprobs is not None:
            logprobs = torch.log_softmax(model(input_ids=x).logits[0].float(), dim=-1)
            rows = [None] + [{ids[i]: types.SimpleNamespace(logprob=float(logprobs[i - 1, ids[i]]))}
                             for i in range(1, len(ids))]  # fmt: skip
            return types.SimpleNamespace(prompt_logprobs=rows, outputs=[types.SimpleNamespace(text="")])
        out = model.generate(input_ids=x, max_new_tokens=params.max_tokens, do_sample=False)
        text = self.tok.decode(out[0, len(ids) :], skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in params.stop or []) if i >= 0]
        return types.SimpleNamespace(
            outputs=[types.SimpleNamespace(text=text[: min(cuts)] if cuts else text)]
        )


@pytest.fixture
def fake_vllm(monkeypatch):
    engines: list[FakeLLM] = []
    vllm = types.ModuleType("vllm")
    vllm.LLM = lambda **kw: engines.append(FakeLLM(**kw)) or engines[-1]
    vllm.SamplingParams = lambda **kw: types.SimpleNamespace(**{"prompt_logprobs": None, "stop": None, **kw})
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, i, path: types.SimpleNamespace(
        lora_name=name, lora_int_id=i, lora_path=path
    )
    for name, module in {
        "vllm": vllm,
        "vllm.lora": types.ModuleType("vllm.lora"),
        "vllm.lora.request": request,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    return engines


def samples(out: Path, variant: str, task: str) -> list[dict]:
    rows = [json.loads(x) for x in (out / "samples" / variant / f"{task}.jsonl").open()]
    return sorted(rows, key=lambda r: r["id"])  # written in batch order, which differs between backends


def test_vllm_backend_answers_and_scores_as_hf(tmp_path, chat_model, fake_vllm):
    from taia.io.rows import data_root

    if data_root() is None:
        pytest.skip("needs ../shared/data or TAIA_DATA_DIR")
    lora_adapter(tiny_model("llama")).save_pretrained(tmp_path / "lora")
    common = dict(model=str(chat_model("llama")), adapter=str(tmp_path / "lora"), tasks=["csqa", "gsm8k"],
                  variants=["base", "vanilla", "taia"], limit=3, max_new_tokens=6)  # fmt: skip
    evaluate(EvalConfig(**common, out=str(tmp_path / "hf")))
    evaluate(EvalConfig(**common, backend="vllm", out=str(tmp_path / "vllm")))
    (engine,) = fake_vllm
    assert set(engine.requests_seen) == {None, "vanilla", "taia"}  # base is served without a LoRA
    assert engine.kwargs["max_lora_rank"] == 8  # the adapter's r=4, rounded up to a rank vLLM accepts
    for v in common["variants"]:
        for hf, vl in zip(
            samples(tmp_path / "hf", v, "csqa"), samples(tmp_path / "vllm", v, "csqa"), strict=True
        ):
            assert vl["output"] == hf["output"] and vl["scores"] == pytest.approx(hf["scores"], abs=1e-4)
        outputs = [(r["output"], r["correct"]) for r in samples(tmp_path / "hf", v, "gsm8k")]
        assert [(r["output"], r["correct"]) for r in samples(tmp_path / "vllm", v, "gsm8k")] == outputs, v
    csqa = [samples(tmp_path / "vllm", v, "csqa")[0]["scores"] for v in common["variants"]]
    assert csqa[0] != csqa[1] != csqa[2]  # the variants really differ
