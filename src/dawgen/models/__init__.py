"""Backbone loading (built-in aliases, GGUF, local folders, hub ids), the GGUF cache, and precision."""

from dawgen.models.builtin import BUILTIN_MODELS, GEMMA_MODEL
from dawgen.models.cache import cache_root, gguf_cache_key, gguf_cache_path
from dawgen.models.loading import (
    DEFAULT_MODEL,
    LoadedModel,
    ModelLoadError,
    SourceKind,
    detect_family,
    ensure_pad_token,
    find_builtin_gguf,
    load_model,
)
from dawgen.models.precision import (
    autocast,
    describe_precision,
    describe_record,
    pick_device,
    precision_record,
    resolve_precision,
    resolved_precision,
)

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "GEMMA_MODEL",
    "LoadedModel",
    "ModelLoadError",
    "SourceKind",
    "autocast",
    "cache_root",
    "describe_precision",
    "describe_record",
    "detect_family",
    "ensure_pad_token",
    "find_builtin_gguf",
    "gguf_cache_key",
    "gguf_cache_path",
    "load_model",
    "pick_device",
    "precision_record",
    "resolve_precision",
    "resolved_precision",
]
