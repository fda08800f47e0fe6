"""A preallocated key/value cache for decoding: every layer's keys and values live in one buffer of
``capacity`` positions, written in place, so a decode step copies one position instead of
concatenating the whole cache (``DynamicCache``'s ``torch.cat`` per layer and step).

Attention still reads only the filled positions (each layer reports its length as a ``DynamicLayer``
does), unlike transformers' ``StaticCache``, which attends over the whole buffer. Rows leave the batch
with ``batch_select_indices`` (one copy when rows finish, as with ``DynamicCache``).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class BufferLayer(DynamicLayer):
    """One layer's keys/values in a ``[batch, heads, capacity, head_dim]`` buffer, filled up to ``length``."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self.key_buffer: torch.Tensor | None = None
        self.value_buffer: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        batch, heads, _, _ = key_states.shape
        self.key_buffer = key_states.new_empty(batch, heads, self.capacity, key_states.shape[-1])
        self.value_buffer = value_states.new_empty(batch, heads, self.capacity, value_states.shape[-1])
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self.key_buffer is not None and self.value_buffer is not None
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise ValueError(f"the key/value buffer holds {self.capacity} positions; {end} were written")
        self.key_buffer[:, :, self.length : end] = key_states
        self.value_buffer[:, :, self.length : end] = value_states
        self.length = end
        self._expose()
        return self.keys, self.values

    def _expose(self) -> None:
        """``keys``/``values``: the filled part of the buffers (views, no copy)."""
        assert self.key_buffer is not None and self.value_buffer is not None
        self.keys = self.key_buffer[:, :, : self.length]
        self.values = self.value_buffer[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.capacity

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self.key_buffer, self.value_buffer = self.key_buffer[indices], self.value_buffer[indices]
            self._expose()

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.key_buffer = self.key_buffer.repeat_interleave(repeats, dim=0)
            self.value_buffer = self.value_buffer.repeat_interleave(repeats, dim=0)
            self._expose()

    def reset(self) -> None:
        self.key_buffer = self.value_buffer = None
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a BufferLayer is not cropped (decoding never rolls back)")


def supports_buffers(cache: DynamicCache) -> bool:
    """Whether every layer of ``cache`` is a plain full-attention ``DynamicLayer`` (sliding-window and
    linear-attention layers, e.g. Gemma 3's local layers, keep transformers' own cache)."""
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def buffered_cache(model: Any, batch: int, capacity: int, prefix: DynamicCache | None = None) -> DynamicCache:
    """A cache for ``batch`` rows and up to ``capacity`` positions, starting from ``prefix`` (a one-row
    cache, e.g. a label prompt's, copied into every row) or empty. A model whose layers need another kind
    of cache gets a ``DynamicCache`` (a copy of ``prefix`` repeated to the batch)."""
    cache = DynamicCache(config=model.config)
    if not supports_buffers(cache if prefix is None else prefix):
        if prefix is None:
            return cache
        filled = DynamicCache(config=model.config)
        for index, layer in enumerate(prefix.layers):
            filled.update(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1), index)
        return filled
    cache.layers = [BufferLayer(capacity) for _ in cache.layers]
    if prefix is not None:
        for index, layer in enumerate(prefix.layers):
            cache.update(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1), index)
    return cache
