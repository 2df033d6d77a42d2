"""The HF backend's scoring: shared-context KV-cache scoring equals scoring each (context, continuation)
pair alone, unpadded, on every tiny architecture. Run: `pytest tests/test_backend.py`."""

from __future__ import annotations

import pytest
import torch

from conftest import chat_tokenizer, tiny_model
from taia.eval.backends.hf import HFBackend

PAIRS = [  # shared contexts, continuations of 1..6 tokens, contexts of different lengths
    ("Q: 2+2?\nA:", " 4"),
    ("Q: 2+2?\nA:", " four"),
    ("Q: 2+2?\nA:", " 5"),
    ("A much longer question, with padding to spare?\nA:", " yes"),
    ("A much longer question, with padding to spare?\nA:", " no, never"),
    ("Short", "!"),
    ("Q: name a colour\nA:", " blue sky"),
]


def alone(model, tokenizer, context: str, continuation: str) -> float:
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    ids = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    return sum(float(logprobs[j - 1, ids[j]]) for j in range(len(ctx), len(ids)))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "phi3", "qwen2", "mixtral", "gemma2", "gpt_neox"])
@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_shared_context_scores_equal_each_pair_alone(model_type, batch_size):
    model, tokenizer = tiny_model(model_type), chat_tokenizer()
    got = HFBackend(model, tokenizer, batch_size=batch_size).loglikelihood(PAIRS)
    for (context, continuation), (score, n) in zip(PAIRS, got, strict=True):
        assert n == len(continuation)  # character-level tokenizer: one token per character
        assert score == pytest.approx(alone(model, tokenizer, context, continuation), abs=1e-4)


PROMPTS = ["<|im_start|>user\nHi<|im_end|>\n", "Q: 2+2?\nA:", "A longer prompt, to pad the others: x y", "ab"]


# EOS ids picked so that the seeded random models end their rows at varied steps
EOS = {"llama": [37, 121, 40], "gpt2": [30], "mixtral": [62, 36, 40]}


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "mixtral"])
def test_dropping_finished_rows_changes_no_output(model_type):
    """Rows leave the batch every `segment` tokens once they hit EOS or a stop string: the outputs equal
    one `generate` call per prompt. Many ids count as EOS here so the random model's rows end early, at
    different steps."""
    model, tokenizer = tiny_model(model_type), chat_tokenizer()
    model.generation_config.eos_token_id = EOS[model_type]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    alone = [HFBackend(model, tokenizer, batch_size=1, segment=10**6).generate([p], 24) for p in PROMPTS]
    for segment in (1, 3, 10**6):
        backend = HFBackend(model, tokenizer, batch_size=4, segment=segment)
        rows = backend._generate_ids([tokenizer(p)["input_ids"] for p in PROMPTS], 24, ())
        lengths = [len(r) for r in rows]  # rows end at different steps, and one runs to the end
        assert len(set(lengths)) > 1 and max(lengths) == 24
        assert all(r[-1] in EOS[model_type] for r in rows if len(r) < 24)
        assert backend.generate(PROMPTS, 24) == [a[0] for a in alone]
        assert backend.generate(PROMPTS, 24, stop=["e"]) == [a[0].split("e")[0] for a in alone]
