"""Attention in fp32 under CPU bf16 autocast: PyTorch's CPU flash-attention kernel is slower in bf16.

With ``torch.autocast`` on a CPU the projections hand the attention bf16 queries, keys and values, and
``scaled_dot_product_attention`` then runs PyTorch's CPU flash kernel in bf16: on an AMD EPYC with
native bf16 (1 thread, torch 2.13) a forward+backward of [8, 9, 92, 64] queries with a padding mask
took 38 ms in bf16 against 15 ms in fp32, so the attention alone was a third of a SmolLM2-135M
prompt-tuning step. ``FP32_CPU_SDPA`` is transformers' "sdpa" attention that computes in fp32 where it
would get reduced-precision tensors on a CPU and hands its output back in their dtype: the same
function elsewhere (fp32 inputs, CUDA), and on a CPU at least as precise as the bf16 kernel.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

FP32_CPU_SDPA = "dawgen_fp32_cpu_sdpa"
REDUCED = (torch.bfloat16, torch.float16)


def fp32_cpu_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, in fp32 for reduced-precision tensors on a CPU."""
    if query.device.type != "cpu" or query.dtype not in REDUCED:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.dtype in REDUCED:
        attention_mask = attention_mask.float()
    out, weights = sdpa_attention_forward(
        module, query.float(), key.float(), value.float(), attention_mask, **kwargs
    )  # fmt: skip
    return out.to(query.dtype), weights


AttentionInterface.register(FP32_CPU_SDPA, fp32_cpu_sdpa_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(FP32_CPU_SDPA, sdpa_mask)


def use_fp32_cpu_attention(model: Any) -> bool:
    """Switch ``model`` (and its sub-models) from "sdpa" to ``FP32_CPU_SDPA``; True if it was switched.

    Models on another attention implementation (eager, flash, ...) are left as they are."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return getattr(config, "_attn_implementation", None) == FP32_CPU_SDPA
    model.set_attn_implementation(FP32_CPU_SDPA)
    return True
