"""The classifier's soft prompt as a standard PEFT prompt-tuning adapter: save and load; the type of
any saved adapter (prompt, prefix or LoRA: ``dawgen.classifier.peft_types`` attaches the last two)."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftConfig, PeftType, PromptTuningConfig, TaskType
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dawgen.classifier.config import PeftKind
from dawgen.tasks.schema import Family
from dawgen.utils.io import atomic_dir

PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_WEIGHT_KEY = "prompt_embeddings"
PEFT_TASK_TYPE = {
    Family.DECODER: TaskType.CAUSAL_LM,
    Family.SEQ2SEQ: TaskType.SEQ_2_SEQ_LM,
    Family.MASKED: TaskType.FEATURE_EXTRACTION,
}
PEFT_KINDS = {
    PeftType.PROMPT_TUNING: PeftKind.PROMPT,
    PeftType.PREFIX_TUNING: PeftKind.PREFIX,
    PeftType.LORA: PeftKind.LORA,
}


def save_prompt(prompt: torch.Tensor, family: Family, base_model: str, folder: str | Path) -> None:
    """Save ``prompt`` as a standard PEFT prompt-tuning adapter (``PeftModel.from_pretrained``
    loads it onto the base model); written to a temporary folder first, then moved into place."""
    config = PromptTuningConfig(
        task_type=PEFT_TASK_TYPE[family],
        num_virtual_tokens=prompt.shape[0],
        token_dim=prompt.shape[1],
        num_transformer_submodules=1,
        base_model_name_or_path=base_model,
    )
    with atomic_dir(folder) as tmp:
        config.save_pretrained(str(tmp))
        save_file({PEFT_WEIGHT_KEY: prompt.detach().float().cpu().contiguous()}, str(Path(tmp) / PEFT_WEIGHTS_FILE))


class AdapterError(ValueError):
    """A folder that does not hold a usable prompt-tuning adapter."""


ADAPTER_CONFIG_FILE = "adapter_config.json"


def check_adapter(folder: str | Path) -> Path:
    """``folder`` if it looks like a saved PEFT adapter (a folder with its config and weights)."""
    folder = Path(folder)
    if not folder.exists():
        raise AdapterError(f"{folder}: adapter folder not found")
    if not folder.is_dir():
        raise AdapterError(f"{folder}: not a folder (an adapter is a folder holding {ADAPTER_CONFIG_FILE})")
    for name in (ADAPTER_CONFIG_FILE, PEFT_WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise AdapterError(f"{folder}: not a PEFT adapter ({name} is missing)")
    return folder


def load_prompt(folder: str | Path) -> torch.Tensor:
    """Read the [n, d] prompt of a saved PEFT prompt-tuning adapter (float32)."""
    folder = check_adapter(folder)
    try:
        config = PeftConfig.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AdapterError(f"{folder / ADAPTER_CONFIG_FILE}: not a readable adapter config ({first})") from None
    if config.peft_type != PeftType.PROMPT_TUNING:
        raise AdapterError(f"{folder}: adapter type {config.peft_type} is not prompt tuning")
    try:
        weights = load_file(str(folder / PEFT_WEIGHTS_FILE))
    except (OSError, ValueError, SafetensorError) as exc:
        raise AdapterError(f"{folder / PEFT_WEIGHTS_FILE}: not a readable safetensors file ({exc})") from None
    if PEFT_WEIGHT_KEY not in weights:
        raise AdapterError(f"{folder / PEFT_WEIGHTS_FILE}: holds no tensor {PEFT_WEIGHT_KEY!r}")
    prompt = weights[PEFT_WEIGHT_KEY].float()
    return prompt[: config.num_virtual_tokens]  # older seq2seq adapters carry an unused second half


def peft_kind(folder: str | Path) -> PeftKind:
    """The type of the saved PEFT adapter in ``folder`` (from its ``adapter_config.json``)."""
    peft_type = PeftConfig.from_pretrained(str(folder)).peft_type
    if peft_type not in PEFT_KINDS:
        known = ", ".join(f"{kind.value} ({name.value})" for name, kind in PEFT_KINDS.items())
        raise AdapterError(f"{folder}: adapter type {peft_type} is not one dawgen trains: {known}")
    return PEFT_KINDS[peft_type]


def load_tuned(folder: str | Path) -> torch.Tensor | None:
    """The tensor a run of a saved adapter starts others from: a prompt's [n, d] vectors, a prefix's
    [n, layers * 2 * kv width] key/values (as PEFT saves them); None for LoRA."""
    kind = peft_kind(folder)
    if kind is PeftKind.PROMPT:
        return load_prompt(folder)
    if kind is PeftKind.PREFIX:
        return load_file(str(Path(folder) / PEFT_WEIGHTS_FILE))[PEFT_WEIGHT_KEY].float()
    return None
