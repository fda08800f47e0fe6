"""A frozen model made ready for decoding (stage 2): its weights in the precision decoding runs in.

Decoding only runs forwards, so where ``precision`` resolves to bf16 the weights themselves are cast
to bf16 instead of running under bf16 autocast, which casts every weight matrix again at every call.
``quantize: int8`` replaces the linear layers by dynamically quantised int8 ones (CPU only; the
activations stay fp32). ``python benchmarks/generation_throughput.py --step-probe`` times one decode
step each way (fp32, bf16 autocast, bf16 weights, int8); results/benchmarks.md has the numbers.
"""

from __future__ import annotations

import warnings
from enum import StrEnum
from typing import Any

import torch

from dawgen.models.precision import FP32, precision_name, resolve_precision

BF16_WEIGHTS = "bf16"  # weights cast to bf16 (no autocast)
INT8_DYNAMIC = "int8-dynamic"  # int8 linear layers, activations quantised per call (fp32 elsewhere)


class Quantize(StrEnum):
    NONE = "none"
    INT8 = "int8"


def check_quantize(quantize: Quantize, precision: str, device: torch.device) -> None:
    """int8 runs on the CPU, in fp32 around its linear layers: a bf16 request conflicts with it."""
    if quantize is Quantize.INT8 and device.type != "cpu":
        raise ValueError(f"quantize 'int8' (dynamic int8 linear layers) runs on the CPU only, not on {device.type}")
    if quantize is Quantize.INT8 and precision == "bf16":
        raise ValueError("quantize 'int8' computes in fp32 around its int8 layers; use precision 'auto' or 'fp32'")


def for_decoding(
    model: Any, device: torch.device, precision: str, quantize: Quantize = Quantize.NONE
) -> tuple[Any, str]:
    """``model`` (changed in place, on ``device``) ready for no-grad decoding, and the name of what it
    computes in: ``"bf16"`` (bf16 weights), ``"fp32"`` or ``"int8-dynamic"``."""
    check_quantize(quantize, precision, device)
    model.to(device).eval()
    if quantize is Quantize.INT8:
        with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    elif (dtype := resolve_precision(precision, device)) is not None:
        model.to(dtype)
    return model, decoding_precision(precision, device, quantize)


def decoding_precision(precision: str, device: torch.device, quantize: Quantize = Quantize.NONE) -> str:
    """The name of what ``for_decoding`` makes a model compute in: ``"bf16"`` (bf16 weights), ``"fp32"`` or
    ``"int8-dynamic"``."""
    if quantize is Quantize.INT8:
        return INT8_DYNAMIC
    dtype = resolve_precision(precision, device)
    if dtype is None:
        return FP32
    return BF16_WEIGHTS if dtype == torch.bfloat16 else precision_name(dtype)
