"""Soft prompts shared by the generator (stage 1) and the classifier (stage 3): where the vectors
go in the input embeddings, and where they start from."""

from __future__ import annotations

from enum import StrEnum

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


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


def text_token_ids(tokenizer: PreTrainedTokenizerBase, text: str, num_tokens: int) -> list[int]:
    """The token ids of ``text``, repeated or cut to exactly ``num_tokens``."""
    if not text:
        raise ValueError("prompt init 'text' needs init_text")
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"the prompt init text {text!r} has no tokens")
    return (ids * (num_tokens // len(ids) + 1))[:num_tokens]


def initial_prompt(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    num_virtual_tokens: int,
    init: PromptInit,
    generator: torch.Generator,
    init_text: str | None = None,
) -> torch.Tensor:
    """A [num_virtual_tokens, d] float32 starting point for the prompt.

    Token-based starts are the input embedding module applied to token ids, not raw rows of its
    ``weight``: the two differ where the module rescales its output (Gemma 3 multiplies by
    sqrt(hidden size)), and the prompt replaces that module's output (``insert_soft_prompt``).
    """
    embedding = model.get_input_embeddings()
    vocab_size, dim = embedding.weight.shape
    if init is PromptInit.RANDOM:
        return torch.rand(num_virtual_tokens, dim, generator=generator) - 0.5
    if init is PromptInit.TEXT:
        rows = torch.tensor(text_token_ids(tokenizer, init_text or "", num_virtual_tokens))
    else:
        common = min(5000, vocab_size)  # BPE vocabularies put frequent tokens first
        rows = torch.randint(0, common, (num_virtual_tokens,), generator=generator)
    return embed_tokens(model, rows)


def embed_tokens(model: PreTrainedModel, ids: torch.Tensor) -> torch.Tensor:
    """[..., d] float32: what the model's input embedding module makes of ``ids`` (no gradient)."""
    embedding = model.get_input_embeddings()
    with torch.no_grad():
        return embedding(ids.to(embedding.weight.device)).float()
