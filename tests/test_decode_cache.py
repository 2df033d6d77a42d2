"""Greedy decoding on the HF backend's growing KV cache (no copy of the cache per step): outputs equal plain
`model.generate` per prompt on every tiny architecture, and the buffers are written in place. Run:
`pytest tests/test_decode_cache.py`."""

from __future__ import annotations

import pytest
import torch
from transformers.cache_utils import DynamicLayer

from conftest import chat_tokenizer, tiny_model
from taia.eval.backends.hf import HFBackend
from taia.eval.backends.kvcache import GrowingLayer, growing_cache

PROMPTS = ["<|im_start|>user\nHi<|im_end|>\n", "Q: 2+2?\nA:", "A longer prompt, to pad the others: x y", "ab"]


def plain(model, tokenizer, prompt: str, new: int) -> str:
    """transformers' own greedy decoding of one prompt (its default cache, no padding)."""
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, max_new_tokens=new, do_sample=False, pad_token_id=0)
    return tokenizer.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True)


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "phi3", "qwen2", "mixtral", "gemma2", "gpt_neox"])
def test_batched_greedy_on_the_growing_cache_equals_plain_generate(model_type):
    model, tokenizer = tiny_model(model_type), chat_tokenizer()
    want = [plain(model, tokenizer, p, 20) for p in PROMPTS]
    for segment in (1, 7, 10**6):  # rows selected every step, mid-way, never
        assert HFBackend(model, tokenizer, batch_size=4, segment=segment).generate(PROMPTS, 20) == want


def test_growing_layer_writes_in_place_and_keeps_room_through_row_selection():
    layer = GrowingLayer(reserve=8)
    k = torch.randn(3, 2, 5, 4)
    keys, values = layer.update(k, -k)
    buffer = keys.data_ptr()
    for _ in range(7):  # within the reserve: no reallocation, the same values as concatenation
        new = torch.randn(3, 2, 1, 4)
        keys, values = layer.update(new, -new)
        k = torch.cat([k, new], dim=-2)
        assert keys.data_ptr() == buffer and torch.equal(keys, k) and torch.equal(values, -k)
    layer.batch_select_indices(torch.tensor([0, 2]))
    assert torch.equal(layer.keys, k[[0, 2]]) and layer.get_seq_length() == 12
    kept = layer.keys.data_ptr()
    new = torch.randn(2, 2, 1, 4)
    keys, _ = layer.update(new, -new)  # the selected rows kept their spare room
    assert keys.data_ptr() == kept and torch.equal(keys, torch.cat([k[[0, 2]], new], dim=-2))
    keys, _ = layer.update(torch.randn(2, 2, 9, 4), torch.randn(2, 2, 9, 4))  # past the room: a new buffer
    assert keys.data_ptr() != kept and keys.shape == (2, 2, 22, 4)
    assert torch.equal(keys[:, :, :13], torch.cat([k[[0, 2]], new], dim=-2))


def test_growing_cache_leaves_sliding_window_layers_to_transformers():
    kinds = {type(x) for x in growing_cache(tiny_model("gemma2"), 4).layers}
    assert GrowingLayer in kinds and DynamicLayer not in kinds and len(kinds) == 2
    assert {type(x) for x in growing_cache(tiny_model("llama"), 4).layers} == {GrowingLayer}
    assert growing_cache(object(), 4) is None  # no config: generate makes its own cache
