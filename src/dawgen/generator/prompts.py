"""Label prompts Q [L, m, d] and scoring a batch's target tokens under any of them.

PEFT gives one batch one prompt; here every row picks its own label's prompt and the frozen LM
reads ``inputs_embeds``, so one forward pass can mix labels, or run a batch under every label.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dawgen.generator.sequences import GenBatch
from dawgen.models.precision import autocast
from dawgen.models.soft_prompt import PromptInit, initial_prompt, insert_soft_prompt
from dawgen.tasks.schema import TaskSpec


def label_texts(task: TaskSpec) -> list[str]:
    """The text each label's prompt starts from: its description in the task table, else the label name."""
    return [task.generator.descriptions.get(label) or label for label in task.labels]


class LabelPrompts(nn.Module):
    """One input-level soft prompt per label: ``weight`` is [L, m, d]."""

    def __init__(self, prompts: torch.Tensor) -> None:
        super().__init__()
        if prompts.dim() != 3:
            raise ValueError(f"label prompts must be [labels, tokens, dim], got shape {tuple(prompts.shape)}")
        self.weight = nn.Parameter(prompts.detach().clone())

    @classmethod
    def from_texts(cls, model: Any, tokenizer: Any, texts: Sequence[str], num_tokens: int) -> LabelPrompts:
        """Each label's prompt = the token embeddings of its text, repeated or cut to ``num_tokens``."""
        unused = torch.Generator()  # text initialisation draws nothing at random
        rows = [initial_prompt(model, tokenizer, num_tokens, PromptInit.TEXT, unused, text) for text in texts]
        return cls(torch.stack(rows))

    @property
    def num_tokens(self) -> int:
        return int(self.weight.shape[1])

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """[B, m, d]: the prompt of every row's label."""
        return self.weight[labels]


@dataclass
class TargetScores:
    """Every target token ``j`` of a batch, scored in ``P`` passes (each row under one label prompt per pass)."""

    logprob: torch.Tensor  # [N, P] log p(x_j | x_<j; prompt of pass p)
    hidden: torch.Tensor  # [N, P, d] the final hidden state (LM-head input) at the position predicting x_j


@contextmanager
def lm_head_inputs(model: Any) -> Iterator[list[torch.Tensor]]:
    """Collect what the LM head is called on (the final, normalised hidden states) while the block runs."""
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        seen.append(args[0] if args else next(iter(kwargs.values())))

    handle = model.get_output_embeddings().register_forward_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def score_targets(
    model: Any,
    batch: GenBatch,
    prompts: torch.Tensor,
    pass_labels: torch.Tensor,
    autocast_dtype: torch.dtype | None = None,
) -> TargetScores:
    """Run ``batch`` through the frozen causal LM once per column of ``pass_labels`` ([B, P]: the label
    whose prompt row ``b`` gets in pass ``p``), all passes in one forward; differentiable in ``prompts``
    ([L, m, d]). Only the positions that predict a target token reach the LM head."""
    num_passes = pass_labels.shape[1]
    num_targets = batch.target_ids.numel()
    embeds = model.get_input_embeddings()(batch.input_ids.repeat(num_passes, 1))
    embeds = insert_soft_prompt(embeds, batch.prompt_slots.repeat(num_passes, 1), prompts[pass_labels.T.reshape(-1)])
    predicting = torch.zeros_like(batch.prompt_slots)
    predicting[batch.target_rows, batch.target_positions - 1] = True  # row-major order = the target order
    with lm_head_inputs(model) as seen, autocast(embeds.device, autocast_dtype):
        out = model(
            inputs_embeds=embeds,
            attention_mask=batch.attention_mask.repeat(num_passes, 1),
            logits_to_keep=predicting.repeat(num_passes, 1),  # the LM head runs on these positions only
            use_cache=False,
        )
    logits = _at_least_float32(out.logits.reshape(num_passes * num_targets, -1))
    gold = batch.target_ids.repeat(num_passes)[:, None]
    logprob = torch.log_softmax(logits, dim=-1).gather(1, gold).squeeze(1)
    hidden = _at_least_float32(seen[-1].reshape(num_passes * num_targets, -1))
    return TargetScores(
        logprob=logprob.view(num_passes, num_targets).T,
        hidden=hidden.view(num_passes, num_targets, -1).transpose(0, 1),
    )


def own_label_passes(batch: GenBatch) -> torch.Tensor:
    """[B, 1]: every row under its own label's prompt."""
    return batch.labels[:, None]


def every_label_passes(batch: GenBatch, num_labels: int) -> torch.Tensor:
    """[B, L]: every row under every label's prompt, pass ``l`` using label ``l``."""
    return torch.arange(num_labels, device=batch.labels.device).expand(batch.num_rows, num_labels)
