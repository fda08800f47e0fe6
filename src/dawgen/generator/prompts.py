"""Label prompts Q and scoring a batch's target tokens under any of them.

PEFT gives one batch one prompt; here every row picks its own label's prompt, so one forward pass can
mix labels, or run a batch under every label. A ``PromptLayout`` says what a label's row of Q is:
``input`` depth, [m, d] vectors written into ``inputs_embeds`` before the context; ``deep`` depth, a
flat row holding m key/value positions for every layer (``models.kv_prefix``) and, for sentence-pair
tasks, c embeddings that replace the connector's tokens (FewGen's prefix + infix). Q is one tensor
either way, so the bi-level step's arithmetic on it (look-ahead, finite differences) is the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

import torch
from torch import nn

from dawgen.generator.config import PromptDepth
from dawgen.generator.sequences import GenBatch
from dawgen.models.kv_prefix import KVShape, prefix_cache, text_key_values
from dawgen.models.precision import autocast
from dawgen.models.soft_prompt import PromptInit, embed_tokens, initial_prompt, insert_soft_prompt, text_token_ids
from dawgen.tasks.schema import TaskSpec


def label_texts(task: TaskSpec) -> list[str]:
    """The text each label's prompt starts from: its description in the task table, else the label name."""
    return [task.generator.descriptions.get(label) or label for label in task.labels]


@dataclass(frozen=True)
class PromptLayout:
    """What one label's row of Q holds. ``input``: [m, d]. ``deep``: a flat row of ``m * kv.width``
    prefix numbers, then ``infix_tokens * d`` connector embeddings (none for single-sentence tasks)."""

    depth: PromptDepth
    num_tokens: int
    embed_dim: int
    kv: KVShape | None = None
    infix_tokens: int = 0

    def __post_init__(self) -> None:
        if (self.depth is PromptDepth.DEEP) != (self.kv is not None):
            raise ValueError("a deep prompt layout needs the model's key/value shape, an input one none")

    @classmethod
    def input(cls, num_tokens: int, embed_dim: int) -> Self:
        return cls(PromptDepth.INPUT, num_tokens, embed_dim)

    @property
    def deep(self) -> bool:
        return self.depth is PromptDepth.DEEP

    @property
    def input_slots(self) -> int:
        """Positions a batch reserves for the prompt before its tokens (``collate``): none for ``deep``."""
        return 0 if self.deep else self.num_tokens

    def row_shape(self) -> tuple[int, ...]:
        """The shape of one label's prompt."""
        if not self.deep:
            return (self.num_tokens, self.embed_dim)
        assert self.kv is not None
        return (self.num_tokens * self.kv.width + self.infix_tokens * self.embed_dim,)

    def split(self, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``prompts`` [P, *row_shape] as (input prompts [P, m, d] or key/value prefixes [P, m, width],
        connector embeddings [P, c, d] or None); views, differentiable."""
        if tuple(prompts.shape[1:]) != self.row_shape():
            raise ValueError(f"label prompts of shape {tuple(prompts.shape)} do not fit the layout {self.to_dict()}")
        if not self.deep:
            return prompts, None
        assert self.kv is not None
        cut = self.num_tokens * self.kv.width
        prefix = prompts[:, :cut].view(len(prompts), self.num_tokens, self.kv.width)
        infix = prompts[:, cut:].view(len(prompts), self.infix_tokens, self.embed_dim) if self.infix_tokens else None
        return prefix, infix

    def to_dict(self) -> dict[str, Any]:
        return {
            "depth": self.depth.value, "num_tokens": self.num_tokens, "embed_dim": self.embed_dim,
            "kv": None if self.kv is None else self.kv.to_dict(), "infix_tokens": self.infix_tokens,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        kv = data.get("kv")
        return cls(
            PromptDepth(data["depth"]), int(data["num_tokens"]), int(data["embed_dim"]),
            None if kv is None else KVShape(**kv), int(data.get("infix_tokens", 0)),
        )  # fmt: skip


class LabelPrompts(nn.Module):
    """One soft prompt per label: ``weight`` is [L, *layout.row_shape()]."""

    def __init__(self, prompts: torch.Tensor, layout: PromptLayout | None = None) -> None:
        super().__init__()
        if layout is None:
            if prompts.dim() != 3:
                raise ValueError(f"label prompts must be [labels, tokens, dim], got shape {tuple(prompts.shape)}")
            layout = PromptLayout.input(int(prompts.shape[1]), int(prompts.shape[2]))
        layout.split(prompts)  # checks the shape
        self.layout = layout
        self.weight = nn.Parameter(prompts.detach().clone())

    @classmethod
    def from_texts(
        cls, model: Any, tokenizer: Any, texts: Sequence[str], num_tokens: int,
        depth: PromptDepth = PromptDepth.INPUT, connector: Sequence[int] = (),
    ) -> LabelPrompts:  # fmt: skip
        """Each label's prompt from its text, repeated or cut to ``num_tokens`` tokens: ``input``, the
        text's token embeddings; ``deep``, the model's own keys/values on it (FewGen's initialisation)
        and the embeddings of the ``connector`` token ids as every label's infix."""
        if PromptDepth(depth) is PromptDepth.INPUT:
            unused = torch.Generator()  # text initialisation draws nothing at random
            rows = [initial_prompt(model, tokenizer, num_tokens, PromptInit.TEXT, unused, text) for text in texts]
            return cls(torch.stack(rows))
        prefixes = [text_key_values(model, text_token_ids(tokenizer, text, num_tokens)) for text in texts]
        infix = embed_tokens(model, torch.tensor(list(connector), dtype=torch.long)).cpu()
        dim = int(model.get_input_embeddings().weight.shape[1])
        layout = PromptLayout(PromptDepth.DEEP, num_tokens, dim, prefixes[0][0], len(connector))
        rows = [torch.cat([prefix.flatten(), infix.flatten()]) for _, prefix in prefixes]
        return cls(torch.stack(rows), layout)

    @property
    def num_tokens(self) -> int:
        return self.layout.num_tokens

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """The prompt of every row's label."""
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


def connector_slots(batch: GenBatch, infix_tokens: int) -> torch.Tensor:
    """[B, T] bool: the ``infix_tokens`` positions right before each row's first target token (where
    ``SequenceBuilder`` puts the connector)."""
    first = torch.full((batch.num_rows,), batch.input_ids.shape[1], dtype=torch.long, device=batch.input_ids.device)
    first = first.scatter_reduce(0, batch.target_rows, batch.target_positions, reduce="amin")
    columns = torch.arange(batch.input_ids.shape[1], device=first.device)
    return (columns >= (first - infix_tokens)[:, None]) & (columns < first[:, None])


def score_targets(
    model: Any,
    batch: GenBatch,
    prompts: torch.Tensor,
    pass_labels: torch.Tensor,
    autocast_dtype: torch.dtype | None = None,
    layout: PromptLayout | None = None,
) -> TargetScores:
    """Run ``batch`` through the frozen causal LM once per column of ``pass_labels`` ([B, P]: the label
    whose prompt row ``b`` gets in pass ``p``), all passes in one forward; differentiable in ``prompts``
    ([L, *layout.row_shape()]; no ``layout``: input prompts [L, m, d]). Only the positions that predict
    a target token reach the LM head."""
    num_passes = pass_labels.shape[1]
    num_targets = batch.target_ids.numel()
    chosen = pass_labels.T.reshape(-1)
    embeds = model.get_input_embeddings()(batch.input_ids.repeat(num_passes, 1))
    attention = batch.attention_mask.repeat(num_passes, 1)
    cache = None
    if layout is None or not layout.deep:
        embeds = insert_soft_prompt(embeds, batch.prompt_slots.repeat(num_passes, 1), prompts[chosen])
    else:
        assert layout.kv is not None
        prefix, infix = layout.split(prompts)
        if infix is not None:
            embeds = insert_soft_prompt(embeds, connector_slots(batch, layout.infix_tokens).repeat(num_passes, 1),
                                        infix[chosen])  # fmt: skip
        cache = prefix_cache(model, prefix[chosen], layout.kv, autocast_dtype)
        attention = torch.cat([attention.new_ones(len(attention), layout.num_tokens), attention], dim=1)
    predicting = torch.zeros_like(batch.prompt_slots)
    predicting[batch.target_rows, batch.target_positions - 1] = True  # row-major order = the target order
    with lm_head_inputs(model) as seen, autocast(embeds.device, autocast_dtype):
        out = model(
            inputs_embeds=embeds,
            attention_mask=attention,
            logits_to_keep=predicting.repeat(num_passes, 1),  # the LM head runs on these positions only
            past_key_values=cache,
            use_cache=cache is not None,
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
