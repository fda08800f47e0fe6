"""The soft prompt: one insertion function for every model family, PEFT adapter save/load."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import torch
from peft import PeftConfig, PeftType, PromptTuningConfig, TaskType
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from dawgen.tasks.schema import Family
from dawgen.utils.io import atomic_dir

PEFT_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_WEIGHT_KEY = "prompt_embeddings"
PEFT_TASK_TYPE = {
    Family.DECODER: TaskType.CAUSAL_LM,
    Family.SEQ2SEQ: TaskType.SEQ_2_SEQ_LM,
    Family.MASKED: TaskType.FEATURE_EXTRACTION,
}


class PromptInit(StrEnum):
    VOCAB = "vocab"  # rows of the embedding table, sampled from the most common tokens (Lester et al.)
    TEXT = "text"  # embeddings of a text, repeated or cut to length
    RANDOM = "random"  # uniform(-0.5, 0.5)


def insert_soft_prompt(embeds: torch.Tensor, slots: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
    """Write the prompt vectors into the slot positions of ``embeds`` ([B, T, d]).

    ``prompt`` is [n, d] (one prompt for the batch) or [B, n, d] (one per row); every row has
    exactly ``n`` slots. Differentiable with respect to ``prompt``.
    """
    batch, _, dim = embeds.shape
    source = prompt.expand(batch, -1, -1) if prompt.dim() == 2 else prompt
    return embeds.masked_scatter(slots.unsqueeze(-1), source.to(embeds.dtype).reshape(batch, -1, dim))


def initial_prompt(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    num_virtual_tokens: int,
    init: PromptInit,
    generator: torch.Generator,
    init_text: str | None = None,
) -> torch.Tensor:
    """A [num_virtual_tokens, d] float32 starting point for the prompt."""
    table = model.get_input_embeddings().weight.detach().float()
    if init is PromptInit.RANDOM:
        return torch.rand(num_virtual_tokens, table.shape[1], generator=generator) - 0.5
    if init is PromptInit.TEXT:
        if not init_text:
            raise ValueError("prompt init 'text' needs init_text")
        ids = tokenizer(init_text, add_special_tokens=False)["input_ids"]
        ids = (ids * (num_virtual_tokens // len(ids) + 1))[:num_virtual_tokens]
        return table[torch.tensor(ids)].clone()
    common = min(5000, table.shape[0])  # BPE vocabularies put frequent tokens first
    rows = torch.randint(0, common, (num_virtual_tokens,), generator=generator)
    return table[rows].clone()


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
