"""Device choice and mixed precision: fp32 weights, optional bf16 autocast.

``"auto"`` picks bf16 autocast only where it is fast: CUDA GPUs with bf16 support, and CPUs
with native bf16 instructions (AVX512-BF16 or AMX). Without them PyTorch emulates bf16, and on
a 2-core AVX-512 Xeon without AVX512-BF16 a SmolLM2-135M forward+backward of 8x128 tokens took
~14 s under bf16 autocast against ~4 s in fp32, so "auto" stays fp32 there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def pick_device(name: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA if available, else CPU; any other name is passed to ``torch.device``."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX-BF16) rather than emulating it."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        check = getattr(torch.cpu, name, None)  # private helpers; absent on some builds/platforms
        if check is not None and check():
            return True
    return False


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is expected to be faster than fp32 on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; None means plain fp32."""
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("bf16 was requested but this GPU does not support it; use 'fp32' or 'auto'")
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"bf16 autocast is only supported here on cpu and cuda, not {device.type}")
        return torch.bfloat16
    return torch.bfloat16 if bf16_is_fast(device) else None


@contextlib.contextmanager
def autocast(device: torch.device | str, dtype: torch.dtype | None) -> Iterator[None]:
    """``torch.autocast`` for a reduced ``dtype``; a no-op for None or fp32."""
    if dtype is None or dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield


def describe_precision(device: torch.device | str, dtype: torch.dtype | None, requested: str | None = None) -> str:
    """A one-line account of the precision in use (``dtype`` from ``resolve_precision``), for logs and reports.

    Pass ``requested`` (the setting given, e.g. "auto") to also say why "auto" chose what it did.
    """
    device = torch.device(device)
    reduced = dtype is not None and dtype != torch.float32
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype)) if reduced else "fp32"
    text = f"{name} autocast (fp32 weights) on {device}" if reduced else f"fp32 on {device}"
    if requested is None:
        return text
    if requested != "auto":
        return f"{text} (requested {requested})"
    if device.type == "cpu":
        why = "CPU has native bf16" if reduced else "CPU lacks native bf16 (AVX512-BF16/AMX); emulated is slower"
    elif device.type == "cuda":
        why = "GPU supports bf16" if reduced else "GPU lacks bf16 support"
    else:
        why = f"no bf16 autocast on {device.type}"
    return f"{text} (auto: {why})"
