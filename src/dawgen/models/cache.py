"""The on-disk cache of dequantized GGUF models.

Loading a GGUF file through transformers dequantizes every tensor (~18 s for SmolLM2-135M);
a safetensors copy of the result reloads in well under a second. The copy lives under
``cache_root() / "gguf" / "<stem>-<key>"``, where the key hashes the GGUF file's resolved
path, size and modification time, so a changed file gets a fresh copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dawgen.utils.io import atomic_dir

CACHE_ENV = "DAWGEN_CACHE"
# Bump when the cached layout changes, so old copies are not reused.
CACHE_FORMAT = "1"
# Written last into a cached folder; its presence means the copy is complete.
COMPLETE_MARKER = "dawgen-cache.json"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The dawgen cache: ``cache_dir``, else ``$DAWGEN_CACHE``, ``$XDG_CACHE_HOME/dawgen``, ``~/.cache/dawgen``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "dawgen"
    return Path.home() / ".cache" / "dawgen"


def gguf_cache_key(gguf_path: str | os.PathLike[str]) -> str:
    """A short hash of the GGUF file's resolved path, size and modification time."""
    resolved = Path(gguf_path).resolve()
    stat = resolved.stat()
    ident = f"{CACHE_FORMAT}|{resolved}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(ident.encode("utf-8")).hexdigest()[:16]


def gguf_cache_path(gguf_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the dequantized copy of ``gguf_path`` lives (whether or not it exists yet)."""
    stem = Path(gguf_path).name.removesuffix(".gguf")
    return cache_root(cache_dir) / "gguf" / f"{stem}-{gguf_cache_key(gguf_path)}"


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` holds a finished cached copy."""
    return (folder / COMPLETE_MARKER).is_file() and (folder / "config.json").is_file()


def strip_quantization(model: Any) -> None:
    """Make a dequantized GGUF model look like a plain one, so it saves as ordinary safetensors."""
    model.hf_quantizer = None
    if "is_quantized" in vars(model):  # set as an instance attribute by some quantizers
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model.config, "_is_quantized"):
        model.config._is_quantized = False


def save_converted(model: Any, tokenizer: Any, target: Path, source: Path) -> Path:
    """Save ``model`` and ``tokenizer`` into ``target`` atomically; return ``target``.

    Everything is written into a temporary sibling folder that is renamed into place only when
    complete. If another process finished first, its copy is kept.
    """
    strip_quantization(model)
    with atomic_dir(target, replace=False) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        info = {"format": CACHE_FORMAT, "source": str(source.resolve()), "size": source.stat().st_size}
        (tmp / COMPLETE_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return target
