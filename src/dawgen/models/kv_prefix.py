"""Key/value prefixes: vectors a causal LM's every attention layer reads before the real tokens.

A prefix of ``m`` positions is stored flat, one row per position: ``[m, layers * 2 * kv_heads *
head_dim]`` (layer-major, keys before values), as PEFT's prefix tuning stores it. It is handed to the
model as the ``past_key_values`` of a fresh ``DynamicCache``, so the real tokens sit at positions
``m, m + 1, ...`` after it and every step of the model stays differentiable in the prefix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import DynamicCache


@dataclass(frozen=True)
class KVShape:
    """What one prefix position holds at every layer of a model."""

    layers: int
    kv_heads: int
    head_dim: int

    @property
    def width(self) -> int:
        """Numbers per prefix position: keys and values of every layer."""
        return self.layers * 2 * self.kv_heads * self.head_dim

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


@torch.no_grad()
def text_key_values(model: Any, ids: list[int]) -> tuple[KVShape, torch.Tensor]:
    """The model's own keys/values on the tokens ``ids`` (positions 0..m-1), as a float32 flat prefix
    ``[m, width]``; FewGen initialises its label prefixes this way."""
    if not ids:
        raise ValueError("a key/value prefix needs at least one token of text")
    device = next(model.parameters()).device
    cache = DynamicCache(config=model.config)
    model(input_ids=torch.tensor([ids], device=device), past_key_values=cache, use_cache=True, logits_to_keep=1)
    layers = _layer_tensors(cache)
    _, kv_heads, length, head_dim = layers[0][0].shape
    shape = KVShape(len(layers), int(kv_heads), int(head_dim))
    stacked = torch.stack([torch.stack(pair) for pair in layers])  # [layers, 2, 1, kv_heads, m, head_dim]
    flat = stacked[:, :, 0].permute(3, 0, 1, 2, 4).reshape(length, shape.width)  # [m, width]
    return shape, flat.float().cpu()


def prefix_cache(model: Any, prefix: torch.Tensor, shape: KVShape, dtype: torch.dtype | None = None) -> DynamicCache:
    """A ``DynamicCache`` holding ``prefix`` ([B, m, width]) at every layer, in ``dtype`` (default: the
    model's), differentiable in ``prefix``. The model appends its new keys/values to it."""
    batch, length, width = prefix.shape
    if width != shape.width:
        raise ValueError(f"a key/value prefix of width {width} does not fit a model that needs {shape.width}")
    dtype = dtype or next(model.parameters()).dtype
    grid = prefix.to(dtype).view(batch, length, shape.layers, 2, shape.kv_heads, shape.head_dim)
    grid = grid.permute(2, 3, 0, 4, 1, 5)  # [layers, 2, B, kv_heads, m, head_dim]
    return DynamicCache(ddp_cache_data=[(layer[0], layer[1]) for layer in grid], config=model.config)
