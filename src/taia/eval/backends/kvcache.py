"""A KV cache for greedy decoding that does not copy itself at every step.

transformers' `DynamicLayer` grows by `torch.cat`: each decode step copies the whole cache of every layer
to append one position (≈ 19 % of a batch-64 decode step of SmolLM2-135M on CPU). `GrowingLayer` keeps a
buffer with room for the tokens still to come and writes each step's keys and values into it; attention
reads a view of the filled part, the same values as the concatenated tensor. Unlike a `StaticCache`,
attention spans only the filled positions (no masked tail to compute over), and dropping finished rows
(`batch_select_indices`) copies the kept rows' buffers once. Anything else that replaces the keys
(reordering) leaves plain tensors, which the next `update` copies into a new buffer. Sliding-window
and other special layers are left as transformers builds them.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose keys and values are a prefix view of a buffer with `reserve` spare positions."""

    def __init__(self, reserve: int) -> None:
        super().__init__()
        self.reserve = reserve
        self._buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n, m = self.get_seq_length(), self.get_seq_length() + key_states.shape[-2]
        if not self._owns(m):
            self._reallocate(key_states, value_states, n, m)
        assert self._buffers is not None
        kbuf, vbuf = self._buffers
        kbuf[:, :, n:m] = key_states
        vbuf[:, :, n:m] = value_states
        self.keys, self.values = kbuf[:, :, :m], vbuf[:, :, :m]
        return self.keys, self.values

    def _owns(self, needed: int) -> bool:
        """Whether the current keys/values are a prefix view of this layer's buffers with room for `needed`
        positions (row selection, reordering or a reset replace them with other tensors)."""
        if self._buffers is None or self.keys is None or self.values is None or self.keys.numel() == 0:
            return False
        kbuf, vbuf = self._buffers
        return (
            needed <= kbuf.shape[-2]
            and self.keys.data_ptr() == kbuf.data_ptr()
            and self.values.data_ptr() == vbuf.data_ptr()
            and self.keys.shape[0] == kbuf.shape[0]
            and self.keys.stride() == kbuf.stride()
        )

    def _reallocate(self, key_states: torch.Tensor, value_states: torch.Tensor, n: int, m: int) -> None:
        batch, heads, _, _ = key_states.shape
        room = m + self.reserve
        kbuf = key_states.new_empty(batch, heads, room, key_states.shape[-1])
        vbuf = value_states.new_empty(batch, heads, room, value_states.shape[-1])
        if n and self.keys is not None and self.values is not None:
            kbuf[:, :, :n] = self.keys
            vbuf[:, :, :n] = self.values
        self._buffers = (kbuf, vbuf)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices`: one copy, into buffers that keep their spare room."""
        n = self.get_seq_length()
        if n == 0 or self._buffers is None or not self._owns(n):
            super().batch_select_indices(indices)
            return
        kbuf, vbuf = (b[indices] for b in self._buffers)
        self._buffers = (kbuf, vbuf)
        self.keys, self.values = kbuf[:, :, :n], vbuf[:, :, :n]

    def reset(self) -> None:
        self._buffers = None
        super().reset()


def growing_cache(model: Any, reserve: int) -> DynamicCache | None:
    """transformers' default cache for `model`, its full-attention layers made `GrowingLayer`s with room
    for `reserve` more tokens each time they (re)allocate; None (generate makes its own) for a model
    without a config or whose cache is not a DynamicCache."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "get_text_config"):
        return None
    supports = getattr(model, "_supports_default_dynamic_cache", None)  # False: mamba-like caches
    if callable(supports) and not supports():
        return None
    cache = DynamicCache(config=config.get_text_config(decoder=True))
    if cache.layers:
        cache.layers = [GrowingLayer(reserve) if type(x) is DynamicLayer else x for x in cache.layers]
    else:  # no layer types in the config: layers are made lazily, one per attention layer
        cache.layer_class_to_replicate = lambda: GrowingLayer(reserve)  # type: ignore[assignment]
    return cache
