"""FT: full-model fine-tuning without prompts (the paper's Table 1 "FT" row).

A linear head reads one state per example: the last token's for decoder LMs (rows are left-padded, so
it is the last position; an eos is appended for it to read), the first token's ([CLS]) for masked
LMs, and the mean of the encoder states for seq2seq models. The input is the plain text pair, no
template: the tokenizer's own pair encoding (``[CLS] a [SEP] b [SEP]``, ``a </s> b </s>``), or
``a`` newline ``b`` eos for decoders. Every weight of the body and the head trains (AdamW, lr 1e-5:
LM-BFF's fine-tuning settings); the training loop, the dev-based selection (best weights kept in
memory) and the run folder are prompt tuning's (``dawgen.classifier.run.train_classifier``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from dawgen.classifier.batching import Batch
from dawgen.classifier.combine import Combine
from dawgen.classifier.config import OptimizerName, PromptTuneConfig
from dawgen.classifier.encoding import Encoded
from dawgen.classifier.run import train_classifier
from dawgen.classifier.scorer import Scorer
from dawgen.classifier.train import Trainable
from dawgen.config import to_dict
from dawgen.data.example import Example
from dawgen.models.loading import LoadedModel
from dawgen.models.precision import autocast, resolve_precision
from dawgen.models.processes import process_device
from dawgen.tasks.schema import Family, TaskSpec

LOOP_OPTIONS = (
    "learning_rate", "weight_decay", "max_grad_norm", "batch_size", "eval_batch_size", "max_steps", "eval_every",
    "max_length", "precision", "device", "seed",
)  # fmt: skip


@dataclass
class FTConfig:
    """Fine-tuning of every weight. Defaults: LM-BFF (AdamW, lr 1e-5, batch 8, 1000 steps, dev every 100)."""

    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    batch_size: int = 8
    eval_batch_size: int = 32
    max_steps: int = 1000
    eval_every: int = 100
    max_length: int = 256
    precision: str = "auto"
    device: str = "auto"
    seed: int = 13

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        self.tune_config()  # the shared options are checked by the prompt-tuning config

    def tune_config(self) -> PromptTuneConfig:
        """The loop's settings (its prompt learning rate is unused where no prompt trains)."""
        options = {name: getattr(self, name) for name in LOOP_OPTIONS}
        return PromptTuneConfig(**options, optimizer=OptimizerName.ADAMW, combine=Combine.REAL, surgery=False)


def training_copy(loaded: LoadedModel) -> LoadedModel:
    """A copy of ``loaded`` to train, so the caller's model keeps its weights."""
    return dataclasses.replace(loaded, model=copy.deepcopy(loaded.model))


class PairEncoder:
    """Template-free input ids of an example; ``answer_index`` marks the state the head reads."""

    def __init__(self, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, family: Family, max_length: int = 256):
        self.task, self.tokenizer, self.family, self.max_length = task, tokenizer, family, max_length

    def encode(self, example: Example) -> Encoded:
        label = self.task.label_index(example.label)
        if self.family is not Family.DECODER:  # [CLS] state (masked) or mean over the encoder (seq2seq)
            ids = self.tokenizer(example.text_a, example.text_b, truncation=True, max_length=self.max_length)
            return Encoded(ids["input_ids"], 0, label)
        eos = [] if self.tokenizer.eos_token_id is None else [self.tokenizer.eos_token_id]
        text_b = None if example.text_b is None else "\n" + example.text_b
        ids = self.tokenizer(example.text_a, text_b, truncation=True, max_length=self.max_length - len(eos))
        ids = ids["input_ids"] if ids["input_ids"][-1:] == eos else ids["input_ids"] + eos
        return Encoded(ids, len(ids) - 1, label)

    def encode_all(self, examples: Sequence[Example]) -> list[Encoded]:
        return [self.encode(example) for example in examples]


class HeadClassifier(torch.nn.Module):
    """The backbone's body (no LM head) with a linear head on one pooled state per example."""

    def __init__(self, model: Any, family: Family, num_labels: int, generator: torch.Generator) -> None:
        super().__init__()
        self.family = family
        self.body = model.get_encoder() if family is Family.SEQ2SEQ else model.base_model
        if self.body is model:
            raise ValueError(f"cannot find the body of {type(model).__name__} to put a classification head on")
        self.head = torch.nn.Linear(model.config.hidden_size, num_labels)
        torch.nn.init.normal_(self.head.weight, std=0.02, generator=generator)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if self.family is Family.DECODER:  # left padding: positions count real tokens only
            positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            out = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False)
        else:
            out = self.body(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        if self.family is Family.SEQ2SEQ:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        else:
            pooled = hidden[torch.arange(len(hidden), device=hidden.device), index]
        return self.head(pooled)


class HeadScorer(Scorer):
    """A ``Scorer`` whose logits come from the classification head (it takes no soft prompt)."""

    def __init__(
        self, loaded: LoadedModel, task: TaskSpec, *, max_length: int, precision: str, device: str, seed: int
    ) -> None:
        self.device = process_device(device)
        generator = torch.Generator().manual_seed(seed)
        self.model = HeadClassifier(loaded.model, loaded.family, task.num_labels, generator).to(self.device)
        self.family = loaded.family
        self.model_name = loaded.name
        self.pad_id = loaded.tokenizer.pad_token_id
        self.encoder = PairEncoder(task, loaded.tokenizer, loaded.family, max_length)
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.embedding_dim = loaded.embedding_dim

    def label_logits(self, batch: Batch, prompt: torch.Tensor | None = None) -> torch.Tensor:
        if prompt is not None:
            raise ValueError("a classification head takes no soft prompt")
        with autocast(self.device, self.autocast_dtype):
            logits = self.model(batch.input_ids, batch.attention_mask, batch.answer_index)
        return logits.float()


def run_ft(
    loaded: LoadedModel,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example] = (),
    config: FTConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune a copy of ``loaded`` with a classification head; the result of the best-on-dev weights.

    With ``out_dir``: ``metrics.jsonl`` and ``result.json`` (a finished run is returned as saved; a
    killed one starts again). The caller's model is left untouched.
    """
    config = config or FTConfig()
    torch.manual_seed(config.seed)  # dropout
    scorer = HeadScorer(
        training_copy(loaded), task, max_length=config.max_length, precision=config.precision,
        device=config.device, seed=config.seed,
    )  # fmt: skip
    trainable = Trainable(prompt=False, backbone_learning_rate=config.learning_rate)
    return train_classifier(
        scorer, train, dev, test=test, config=config.tune_config(), out_dir=out_dir, show_progress=show_progress,
        trainable=trainable, method="ft", settings=to_dict(config),
    ).result  # fmt: skip
