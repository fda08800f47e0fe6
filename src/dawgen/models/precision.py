"""Device choice and mixed precision: fp32 weights, optional bf16 autocast.

``"auto"`` picks bf16 autocast only where it is fast: CUDA GPUs with bf16 support, and CPUs
with native bf16 instructions (AVX512-BF16 or AMX). Without them PyTorch emulates bf16, and on
a 2-core AVX-512 Xeon without AVX512-BF16 a SmolLM2-135M forward+backward of 8x128 tokens took
~14 s under bf16 autocast against ~4 s in fp32, so "auto" stays fp32 there.

Results say what they ran under: ``precision_record`` is the structured form written into every
``result.json`` (and the rows of a run's ``results.json``), ``describe_record`` its one-line reading
for tables, and ``resolved_precision`` the name of what a setting resolves to on a device (part of a
run folder's stage keys, so a folder moved to another kind of machine does not mix precisions).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import platform
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

PRECISIONS = ("auto", "fp32", "bf16")
FP32 = "fp32"
BF16_AUTOCAST = "bf16-autocast"


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


def store_frozen_linears(model: torch.nn.Module, dtype: torch.dtype | None) -> int:
    """Store every frozen ``nn.Linear``'s weight (and bias) in ``dtype``, the autocast dtype its forwards run
    in; returns how many layers were stored. Autocast casts a frozen fp32 weight again on every forward and
    each graph keeps its own copy (one bi-level step holds two); stored cast, the products are the same bit
    for bit and one copy serves every graph. The model must then run under autocast only. A weight that
    another module shares (an LM head tied to the embeddings) and a trainable one stay as they are.

    The other frozen parameters are copied into memory of their own: a model loaded from safetensors
    reads its weights through a map of the file, which stays mapped (and its fp32 pages resident) while
    any of them points into it."""
    if dtype is None or dtype == torch.float32:
        return 0
    shared = collections.Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    stored = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear) or module.weight.requires_grad or shared[id(module.weight)] > 1:
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            setattr(module, name, torch.nn.Parameter(param.detach().to(dtype), requires_grad=False))
        stored += 1
    for param in model.parameters():
        if not param.requires_grad and param.dtype != dtype:
            param.data = param.data.clone()
    return stored


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


def precision_name(dtype: torch.dtype | None) -> str:
    """The short name of an autocast dtype from ``resolve_precision``: ``"fp32"`` or ``"bf16-autocast"``."""
    if dtype is None or dtype == torch.float32:
        return FP32
    return {torch.bfloat16: BF16_AUTOCAST, torch.float16: "fp16-autocast"}.get(dtype, f"{dtype}-autocast")


def resolved_precision(precision: str, device: torch.device | str = "auto") -> str:
    """What ``precision`` (e.g. "auto") resolves to on ``device`` (e.g. "auto"), by name: ``"fp32"`` or
    ``"bf16-autocast"``. Cache keys use it, so that a changed machine does not reuse another precision's work."""
    return precision_name(resolve_precision(precision, pick_device(device)))


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_record() -> dict[str, Any]:
    """The CPU this process runs on and whether it has native bf16 (what "auto" consults on a CPU)."""
    return {"cpu": cpu_model(), "cpu_native_bf16": cpu_has_native_bf16()}


def precision_record(device: torch.device | str, dtype: torch.dtype | None, name: str | None = None) -> dict[str, Any]:
    """The precision a result was computed in and the machine kind that decided it, as written into results::

        {"precision": "bf16-autocast" | "fp32", "device": "cpu" | "cuda", "cpu_native_bf16": bool,
         "cpu": "<model name>"}                      (+ "gpu": "<name>" on CUDA)

    ``cpu_native_bf16`` is what "auto" consults on a CPU (AVX512-BF16 or AMX), recorded also under fp32.
    ``name`` replaces the autocast dtype's name (stage 2: ``"bf16"`` weights, ``"int8-dynamic"``).
    """
    device = torch.device(device)
    record: dict[str, Any] = {"precision": name or precision_name(dtype), "device": device.type, **machine_record()}
    if device.type == "cuda" and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(device)
    return record


def describe_record(record: Mapping[str, Any] | None) -> str:
    """``precision_record``'s one-line reading for tables, e.g. "bf16 autocast (CPU with native bf16)";
    ``"unknown (not recorded)"`` for a result written before results recorded their precision."""
    if not isinstance(record, Mapping) or not record.get("precision"):
        return "unknown (not recorded)"
    name = str(record["precision"])
    text = f"{name.removesuffix('-autocast')} autocast" if name.endswith("-autocast") else name
    device = record.get("device")
    if device == "cpu":
        native = record.get("cpu_native_bf16")
        kind = "CPU" if native is None else f"CPU {'with' if native else 'without'} native bf16"
    elif device == "cuda":
        kind = f"GPU {record['gpu']}" if record.get("gpu") else "GPU"
    else:
        kind = str(device or "unknown device")
    return f"{text} ({kind})"
