"""The classifier's soft prompt as a standard PEFT prompt-tuning adapter: save and load; the type of
any saved adapter (prompt, prefix or LoRA: ``dawgen.classifier.peft_types`` attaches the last two)."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftConfig, PeftType, PromptTuningConfig, TaskType
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


def load_prompt(folder: str | Path) -> torch.Tensor:
    """Read the [n, d] prompt of a saved PEFT prompt-tuning adapter (float32)."""
    folder = Path(folder)
    config = PeftConfig.from_pretrained(str(folder))
    if config.peft_type != PeftType.PROMPT_TUNING:
        raise ValueError(f"{folder}: adapter type {config.peft_type} is not prompt tuning")
    weights = load_file(str(folder / PEFT_WEIGHTS_FILE))
    prompt = weights[PEFT_WEIGHT_KEY].float()
    return prompt[: config.num_virtual_tokens]  # older seq2seq adapters carry an unused second half


def peft_kind(folder: str | Path) -> PeftKind:
    """The type of the saved PEFT adapter in ``folder`` (from its ``adapter_config.json``)."""
    peft_type = PeftConfig.from_pretrained(str(folder)).peft_type
    if peft_type not in PEFT_KINDS:
        known = ", ".join(f"{kind.value} ({name.value})" for name, kind in PEFT_KINDS.items())
        raise ValueError(f"{folder}: adapter type {peft_type} is not one dawgen trains: {known}")
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
