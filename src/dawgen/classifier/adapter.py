"""The classifier's soft prompt as a standard PEFT prompt-tuning adapter: save and load."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftConfig, PeftType, PromptTuningConfig, TaskType
from safetensors.torch import load_file, save_file

from dawgen.tasks.schema import Family
from dawgen.utils.io import atomic_dir

PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_WEIGHT_KEY = "prompt_embeddings"
PEFT_TASK_TYPE = {
    Family.DECODER: TaskType.CAUSAL_LM,
    Family.SEQ2SEQ: TaskType.SEQ_2_SEQ_LM,
    Family.MASKED: TaskType.FEATURE_EXTRACTION,
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
