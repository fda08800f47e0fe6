"""Verbalizer scoring: the logits of the label words, for any of the three model families."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from rich.progress import Progress

from dawgen.classifier.batching import Batch, collate, sorted_batches
from dawgen.classifier.encoding import Encoded, TaskEncoder
from dawgen.models.attention import use_fp32_cpu_attention
from dawgen.models.loading import LoadedModel
from dawgen.models.precision import autocast, resolve_precision
from dawgen.models.processes import process_device
from dawgen.models.soft_prompt import insert_soft_prompt
from dawgen.tasks.schema import Family, TaskSpec


class Scorer:
    """What ``PromptTrainer`` trains and evaluates: padded batches in, ``[B, num_labels]`` logits out.

    Subclasses set ``model``, ``family``, ``model_name``, ``pad_id``, ``device``, ``autocast_dtype``,
    ``embedding_dim`` and ``encoder`` (with ``task``, ``tokenizer`` and ``encode_all``), and define
    ``label_logits``. ``adapter_model``, set while a PEFT prefix or LoRA adapter is attached
    (``dawgen.classifier.peft_types``), is the PEFT model around ``model`` that the forward goes through.
    """

    model: Any
    family: Family
    model_name: str
    pad_id: int
    device: torch.device
    autocast_dtype: torch.dtype | None
    embedding_dim: int
    encoder: Any
    adapter_model: Any = None

    @property
    def task(self) -> TaskSpec:
        return self.encoder.task

    def collate(self, items: Sequence[Encoded], num_virtual_tokens: int = 0) -> Batch:
        return collate(items, self.family, self.pad_id, num_virtual_tokens).to(self.device)

    def label_logits(self, batch: Batch, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """[B, num_labels] float32 logits of ``batch``."""
        raise NotImplementedError

    @torch.no_grad()
    def predict_logits(
        self,
        items: Sequence[Encoded],
        prompt: torch.Tensor | None = None,
        batch_size: int = 32,
        on_batch: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """[N, num_labels] logits for ``items``, in their order (batched by length)."""
        n_virtual = 0 if prompt is None else prompt.shape[-2]
        out = torch.empty(len(items), self.task.num_labels)
        for index in sorted_batches([len(item.input_ids) for item in items], batch_size):
            batch = self.collate([items[i] for i in index], n_virtual)
            out[index] = self.label_logits(batch, prompt).cpu()
            if on_batch is not None:
                on_batch(len(index))
        return out


NO_POSITIONS = torch.zeros(0, dtype=torch.long)  # ``logits_to_keep`` that keeps none: the LM head runs on nothing


class VerbalizerScorer(Scorer):
    """Scores label words with a model and an optional soft prompt.

    The scorer never updates the model; gradients flow to the prompt passed to ``label_logits`` (and
    to the model's weights only where a trainer has made them trainable, as prompt-based fine-tuning does).

    Two shortcuts leave the logits as the model's own. A decoder's label logits come from the label
    words' rows of its LM head applied to the last hidden state (``label_head``), not from the full
    vocabulary (a [B, d] x [d, 49152] product and its backward for two numbers per row), where a check
    at construction finds them equal to the model's own logits (a plain linear head, no softcapping or
    scaling after it); and under bf16 autocast on a CPU the attention computes in fp32
    (``dawgen.models.attention``: PyTorch's bf16 CPU kernel is slower, and gives the same outputs).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        task: TaskSpec,
        *,
        max_length: int = 256,
        precision: str = "auto",
        device: str = "auto",
    ) -> None:
        self.device = process_device(device)
        self.model = loaded.model.to(self.device).eval()
        self.family = loaded.family
        self.model_name = loaded.name
        self.pad_id = loaded.tokenizer.pad_token_id
        self.encoder = TaskEncoder(task, loaded.tokenizer, loaded.family, max_length)
        self.label_ids = torch.tensor(self.encoder.label_token_ids, device=self.device)
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.embedding_dim = self.model.get_input_embeddings().weight.shape[1]
        if self.autocast_dtype is not None and self.device.type == "cpu":
            use_fp32_cpu_attention(self.model)
        self.label_head = self.family is Family.DECODER and self._label_head_matches()

    def _label_head_weights(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """The label words' rows of the LM head (weight, bias) of the model the forward goes through,
        or None where that head is not a plain linear layer (e.g. LoRA on it)."""
        model = self.model if self.adapter_model is None else self.adapter_model
        head = model.get_output_embeddings()
        if type(head) is not torch.nn.Linear:
            return None
        return head.weight[self.label_ids], None if head.bias is None else head.bias[self.label_ids]

    @torch.no_grad()
    def _label_head_matches(self) -> bool:
        """Whether the label rows of the LM head give the model's own logits (on the label words as input)."""
        if self._label_head_weights() is None:
            return False
        ids = self.label_ids.unsqueeze(0)
        out = self.model(input_ids=ids, logits_to_keep=torch.tensor([-1]), output_hidden_states=True, use_cache=False)
        weight, bias = self._label_head_weights()
        ours = torch.nn.functional.linear(out.hidden_states[-1][:, -1], weight, bias)
        return torch.allclose(ours, out.logits[:, -1, self.label_ids], rtol=1e-4, atol=1e-4)

    def label_logits(self, batch: Batch, prompt: torch.Tensor | None = None) -> torch.Tensor:
        """[B, num_labels] float32 logits of the label words (the verbalizer's restriction)."""
        with autocast(self.device, self.autocast_dtype):
            logits, _ = self._answer_logits(self._embeds(batch, prompt), batch)
        return logits.float()

    def answer_outputs(
        self, batch: Batch, prompt: torch.Tensor | None = None, perturbation: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``label_logits`` and the [B, hidden] float32 last hidden state at the answer position (the
        decoder's first position for seq2seq), with ``perturbation`` ([B, T, d]) added to the token
        embeddings; the prompt slots take the prompt whatever it holds there."""
        with autocast(self.device, self.autocast_dtype):
            logits, hidden = self._answer_logits(self._embeds(batch, prompt, perturbation), batch, hidden=True)
        assert hidden is not None
        return logits.float(), hidden.float()

    def _embeds(
        self, batch: Batch, prompt: torch.Tensor | None, perturbation: torch.Tensor | None = None
    ) -> torch.Tensor:
        embeds = self.model.get_input_embeddings()(batch.input_ids)
        if perturbation is not None:
            embeds = embeds + perturbation.to(embeds.dtype)
        return embeds if prompt is None else insert_soft_prompt(embeds, batch.prompt_slots, prompt)

    def _answer_logits(
        self, embeds: torch.Tensor, batch: Batch, hidden: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, num_labels] label-word logits at the answer position and, with ``hidden``, the last layer's
        hidden state there (through the attached PEFT adapter, if any: PEFT puts a prefix's mask in front
        and offsets a decoder's positions by its length)."""
        mask = batch.attention_mask
        model = self.model if self.adapter_model is None else self.adapter_model
        if self.family is Family.DECODER:  # left-padded: the answer is the last position
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            head = self._label_head_weights() if self.label_head else None
            # the last position as an index tensor: ``logits_to_keep=1`` slices it non-contiguous, and the
            # LM head then goes through a bmm that expands its weight to every row
            keep = (NO_POSITIONS if head is not None else torch.tensor([-1])).to(self.device)
            out = model(
                inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=keep, use_cache=False,
                output_hidden_states=hidden or head is not None,
            )  # fmt: skip
            last = out.hidden_states[-1][:, -1] if hidden or head is not None else None
            if head is not None:
                return torch.nn.functional.linear(last, *head), last
            return out.logits[:, -1, self.label_ids], last
        if self.family is Family.SEQ2SEQ:
            start = torch.full((len(embeds), 1), self.model.config.decoder_start_token_id, device=self.device)
            out = model(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=start, use_cache=False,
                        output_hidden_states=hidden)  # fmt: skip
            return out.logits[:, 0, self.label_ids], out.decoder_hidden_states[-1][:, 0] if hidden else None
        out = model(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=hidden)
        rows = torch.arange(len(embeds), device=self.device)
        logits = out.logits[rows, batch.answer_index][:, self.label_ids]
        return logits, out.hidden_states[-1][rows, batch.answer_index] if hidden else None


def predict_with_progress(
    scorer: Scorer,
    items: Sequence[Encoded],
    prompt: torch.Tensor | None,
    bar: Progress,
    batch_size: int = 32,
    description: str = "evaluate",
) -> torch.Tensor:
    """Label-word logits for ``items``, advancing a progress bar as batches finish."""
    bar_task = bar.add_task(description, total=len(items), status="")
    return scorer.predict_logits(items, prompt, batch_size, on_batch=lambda n: bar.advance(bar_task, n))
