"""Load a frozen backbone and its tokenizer from a built-in alias, a GGUF file, a local folder or a hub id."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

from dawgen.errors import ModelLoadError
from dawgen.models.builtin import BUILTIN_MODELS, DEFAULT_MODEL, builtin_gguf, builtin_model, find_builtin_gguf
from dawgen.models.cache import gguf_cache_path, is_complete, save_converted
from dawgen.tasks.schema import Family

log = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_MODELS",
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelLoadError",
    "SourceKind",
    "convert_gguf",
    "detect_family",
    "ensure_pad_token",
    "find_builtin_gguf",
    "freeze",
    "load_model",
]

MASKED_MODEL_TYPES = frozenset(
    {
        "albert",
        "bert",
        "camembert",
        "deberta",
        "deberta-v2",
        "distilbert",
        "electra",
        "ernie",
        "flaubert",
        "modernbert",
        "mpnet",
        "roberta",
        "roberta-prelayernorm",
        "xlm",
        "xlm-roberta",
        "xlm-roberta-xl",
    }
)
MODEL_CLASSES: dict[Family, Any] = {
    Family.DECODER: AutoModelForCausalLM,
    Family.MASKED: AutoModelForMaskedLM,
    Family.SEQ2SEQ: AutoModelForSeq2SeqLM,
}
HINT = (
    "Use a local folder with config.json, a path to a .gguf file, or a built-in offline model: "
    f"{DEFAULT_MODEL!r} (the default) or, as optional extras, "
    f"{', '.join(repr(name) for name in BUILTIN_MODELS if name != DEFAULT_MODEL)}."
)


class SourceKind(StrEnum):
    """Where a model came from."""

    BUILTIN = "builtin"  # an offline alias such as DEFAULT_MODEL (a packaged GGUF file, see models.builtin)
    GGUF = "gguf"  # a .gguf file given by path
    LOCAL = "local"  # a folder with config.json
    HUB = "hub"  # a Hugging Face hub id


@dataclass
class LoadedModel:
    """A frozen backbone (eval mode, no parameter requires grad) with its tokenizer."""

    model: Any
    tokenizer: Any
    family: Family
    name: str  # the spec string given to load_model
    source: SourceKind
    location: str  # the folder actually loaded (the cached copy for GGUF), or the hub id

    @property
    def embedding_dim(self) -> int:
        return int(self.model.get_input_embeddings().embedding_dim)


def detect_family(config: Any) -> Family:
    """The backbone family of a transformers config."""
    if getattr(config, "is_encoder_decoder", False):
        return Family.SEQ2SEQ
    architectures = getattr(config, "architectures", None) or []
    if any(arch.endswith("ForMaskedLM") for arch in architectures):
        return Family.MASKED
    if getattr(config, "model_type", None) in MASKED_MODEL_TYPES:
        return Family.MASKED
    return Family.DECODER


def ensure_pad_token(tokenizer: Any, model: Any | None = None) -> None:
    """Give the tokenizer a pad token if it lacks one.

    Decoder models often have none; we reuse eos (else unk) rather than adding a token, which
    would change the vocabulary. Padded positions are masked by the attention mask, so the
    choice does not change results. The model config's ``pad_token_id`` is filled in to match.
    """
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelLoadError("the tokenizer has no pad, eos or unk token to pad with")
        tokenizer.pad_token = fallback
    if model is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def freeze(model: Any) -> Any:
    """Put ``model`` in eval mode with every parameter frozen."""
    model.eval()
    model.requires_grad_(False)
    return model


def _classify_spec(spec: str, cache_dir: str | os.PathLike[str] | None = None) -> tuple[SourceKind, Path | str]:
    """Decide what kind of spec ``spec`` is, and what to load: a path, or a hub id."""
    builtin = builtin_model(spec)
    if builtin is not None:
        if builtin.terms:
            log.info("%s is provided under and subject to the %s", builtin.name, builtin.terms)
        return SourceKind.BUILTIN, builtin_gguf(builtin, cache_dir)
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {spec}")
        return SourceKind.GGUF, path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"folder {spec} has no config.json, so it is not a saved model. {HINT}")
        return SourceKind.LOCAL, path
    if path.exists():
        raise ModelLoadError(f"{spec} is a file but not a .gguf file. {HINT}")
    if not _looks_like_hub_id(spec):
        raise ModelLoadError(f"no such model file or folder: {spec}. {HINT}")
    return SourceKind.HUB, spec


def _looks_like_hub_id(spec: str) -> bool:
    """Whether ``spec`` is a syntactically valid hub repo id (checked offline)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "tokenizer.model",
)


def _check_tokenizer_files(folder: Path) -> None:
    """Refuse a folder without tokenizer files (transformers would make an empty tokenizer)."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"could not load the tokenizer of {folder}: none of {', '.join(TOKENIZER_FILES)} is there; "
            "save the tokenizer next to the model (tokenizer.save_pretrained(folder))"
        )


def _load_config(location: str | Path, source: SourceKind, trust_remote_code: bool) -> Any:
    try:
        return AutoConfig.from_pretrained(str(location), trust_remote_code=trust_remote_code)
    except OSError as exc:
        if source is SourceKind.HUB:
            raise ModelLoadError(
                f"could not load {location!r} from the Hugging Face hub: the hub could not be reached "
                f"or there is no such model ({exc.__class__.__name__}). {HINT}"
            ) from exc
        raise ModelLoadError(f"could not read the model config in {location}: {exc}") from exc


def _load_pretrained(
    location: str | Path, family: Family | None, source: SourceKind, trust_remote_code: bool, dtype: torch.dtype | None
) -> tuple[Any, Any, Family]:
    """Load config, model and tokenizer from a folder or hub id."""
    if isinstance(location, Path):
        _check_tokenizer_files(location)
    config = _load_config(location, source, trust_remote_code)
    family = family or detect_family(config)
    kwargs: dict[str, Any] = {"config": config, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    try:
        model = MODEL_CLASSES[family].from_pretrained(str(location), **kwargs)
    except ValueError as exc:
        raise ModelLoadError(
            f"cannot load {location} (model_type {config.model_type!r}) as a {family.value} model: {exc}"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(location), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load the tokenizer of {location}: {exc}") from exc
    return model, tokenizer, family


@contextmanager
def _gguf_progress(description: str) -> Iterator[None]:
    """Route transformers' tqdm bar over the GGUF tensors through dawgen's progress display."""
    from dawgen.progress import track

    try:
        import transformers.modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # loading fails later with the reason
        yield
        return
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:
        yield
        return

    def routed(iterable: Any = None, *args: Any, total: Any = None, **kwargs: Any) -> Any:
        if iterable is None:  # not the loop over tensors we know: a silent bar
            return original(*args, total=total, **{**kwargs, "disable": True})
        return track(iterable, description, total)

    gguf_utils.tqdm = routed
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def convert_gguf(gguf: Path, target: Path, family: Family | None = None) -> Path:
    """Dequantize ``gguf`` with transformers and save a safetensors copy into ``target`` atomically."""
    folder, name = str(gguf.parent), gguf.name
    if target.exists() and not is_complete(target):  # not written by us (ours appear complete or not at all)
        shutil.rmtree(target)
    log.info("converting %s to safetensors in %s (once; later loads use the copy)", gguf, target)
    start = time.perf_counter()
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name)  # parsing GGUF metadata is slow: do it once
        family = family or detect_family(config)
        with _gguf_progress(f"convert {name} (once)"):
            model = MODEL_CLASSES[family].from_pretrained(folder, gguf_file=name, config=config, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except ImportError as exc:
        raise ModelLoadError(f"loading GGUF files needs the 'gguf' package (pip install gguf): {exc}") from exc
    save_converted(model, tokenizer, target, gguf)
    log.info("converted %s in %.1f s", gguf.name, time.perf_counter() - start)
    return target


def load_model(
    spec: str,
    *,
    family: Family | None = None,
    trust_remote_code: bool = False,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype | None = torch.float32,
) -> LoadedModel:
    """Load a frozen backbone and its tokenizer.

    ``spec`` is a built-in offline alias (``DEFAULT_MODEL``, or one of ``BUILTIN_MODELS``, see
    ``dawgen.models.builtin``), a ``.gguf`` file (converted once to a
    safetensors copy under the dawgen cache, see ``dawgen.models.cache``), a local folder with
    ``config.json``, or a Hugging Face hub id. ``family`` overrides detection from the config.
    ``dtype`` is the weight dtype (fp32 by default; mixed precision comes from autocast, see
    ``dawgen.models.precision``); None keeps the checkpoint's own. The tokenizer always has a
    pad token (see ``ensure_pad_token``).
    """
    from dawgen.progress import quiet_library_bars

    quiet_library_bars()  # transformers' and the hub's own bars: dawgen shows its own
    kind, target = _classify_spec(spec, cache_dir)
    location: Path | str = target
    if kind in (SourceKind.BUILTIN, SourceKind.GGUF):
        assert isinstance(target, Path)
        location = gguf_cache_path(target, cache_dir)
        if not is_complete(location):
            convert_gguf(target, location, family)
    model, tokenizer, family = _load_pretrained(location, family, kind, trust_remote_code, dtype)
    ensure_pad_token(tokenizer, model)
    return LoadedModel(
        model=freeze(model), tokenizer=tokenizer, family=family, name=spec, source=kind, location=str(location)
    )
