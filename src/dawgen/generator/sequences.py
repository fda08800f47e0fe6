"""Training sequences of the generator and label-balanced batches.

Sentence-pair task: ``[Q_y] s1 <connector> s2 <eos>``, the LM loss on s2 and eos only; single
sentence: ``[Q_y] s <eos>``, the loss on all of it. The first sentence is cut to
``first_sentence_tokens``, the whole (soft prompt not counted) to ``max_length``: what does not fit
is cut from the end of the target, and the eos goes with it (the text did not end there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from dawgen.data.example import Example
from dawgen.tasks.schema import TaskSpec


@dataclass(frozen=True)
class GenSequence:
    """One example as token ids (soft prompt not included): ``context`` then ``target``."""

    context: list[int]
    target: list[int]
    label: int


@dataclass
class GenBatch:
    """Right-padded rows ``[prompt slots][context][target][pad]`` and where the target tokens are.

    The ``N`` target tokens of the batch are listed row by row, in position order (``score_targets``
    relies on it): ``target_rows`` / ``target_positions`` say where each sits in ``input_ids``; it is
    predicted by the position before it.
    """

    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    prompt_slots: torch.Tensor  # [B, T] bool
    labels: torch.Tensor  # [B]
    target_rows: torch.Tensor  # [N]
    target_positions: torch.Tensor  # [N]
    target_ids: torch.Tensor  # [N]

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def target_labels(self) -> torch.Tensor:
        """[N] the gold label of every target token's row."""
        return self.labels[self.target_rows]

    def to(self, device: torch.device | str) -> GenBatch:
        return GenBatch(*(t.to(device) for t in vars(self).values()))


def _leading_special_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The special tokens the tokenizer puts before a text (e.g. bos), found by encoding one."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start]
    return []


class SequenceBuilder:
    """Turns examples into generator sequences for one task and tokenizer (stage 2 reuses ``context_ids``).

    ``start_token``: a single-sentence context that would be empty (a tokenizer that adds no bos) starts
    with bos (else eos) instead, so that deep prompts, which occupy no position, have a token to run on.
    """

    def __init__(
        self,
        task: TaskSpec,
        tokenizer: PreTrainedTokenizerBase,
        first_sentence_tokens: int = 100,
        max_length: int = 160,
        start_token: bool = False,
    ) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the generator's tokenizer has no eos token; training sequences end with one")
        self.task = task
        self.tokenizer = tokenizer
        self.first_sentence_tokens = first_sentence_tokens
        self.max_length = max_length
        self.prefix = _leading_special_ids(tokenizer)
        if start_token and not self.prefix and not task.pair:  # a deep prompt is no token: something must come first
            start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
            self.prefix = [start]
        connector = task.generator.connector
        self.connector = self._ids(connector) if task.pair else []
        self.target_space = task.pair and not connector[-1:].isspace()  # " s2" after "...Sentence 2:"
        longest_context = len(self.prefix) + len(self.connector) + (first_sentence_tokens if task.pair else 0)
        if longest_context >= max_length:
            raise ValueError(
                f"max_length={max_length} leaves no room for the target after a context of up to "
                f"{longest_context} tokens; raise max_length or lower first_sentence_tokens"
            )

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def context_ids(self, text_a: str | None = None) -> list[int]:
        """What comes before the target: ``s1 <connector>`` for pairs (s1 cut), else special tokens only."""
        if not self.task.pair:
            return list(self.prefix)
        if text_a is None:
            raise ValueError(f"task {self.task.name!r} is a sentence-pair task: the context needs a first sentence")
        return self.prefix + self._ids(text_a.strip())[: self.first_sentence_tokens] + self.connector

    def target_ids(self, text: str) -> list[int]:
        """The tokens the generator learns to produce: the (second) sentence and eos."""
        text = text.strip()
        return [*self._ids(" " + text if self.target_space else text), self.tokenizer.eos_token_id]

    def encode(self, example: Example) -> GenSequence:
        if self.task.pair and example.text_b is None:
            raise ValueError(f"task {self.task.name!r} is a sentence-pair task but an example has no text_b")
        target_text = example.text_b if self.task.pair else example.text_a
        context = self.context_ids(example.text_a)
        target = self.target_ids(target_text)[: self.max_length - len(context)]
        return GenSequence(context, target, self.task.label_index(example.label))

    def encode_all(self, examples: Sequence[Example]) -> list[GenSequence]:
        return [self.encode(example) for example in examples]


def collate(sequences: Sequence[GenSequence], num_prompt_tokens: int, pad_id: int) -> GenBatch:
    """Pad ``sequences`` on the right behind ``num_prompt_tokens`` prompt slots."""
    width = num_prompt_tokens + max(len(s.context) + len(s.target) for s in sequences)
    shape = (len(sequences), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    attention = torch.zeros(shape, dtype=torch.long)
    slots = torch.zeros(shape, dtype=torch.bool)
    slots[:, :num_prompt_tokens] = True
    rows, positions, targets = [], [], []
    for row, seq in enumerate(sequences):
        tokens = seq.context + seq.target
        end = num_prompt_tokens + len(tokens)
        input_ids[row, num_prompt_tokens:end] = torch.tensor(tokens, dtype=torch.long)
        attention[row, :end] = 1
        first = num_prompt_tokens + len(seq.context)
        rows += [row] * len(seq.target)
        positions += range(first, end)
        targets += seq.target
    labels = torch.tensor([s.label for s in sequences], dtype=torch.long)
    as_long = [torch.tensor(values, dtype=torch.long) for values in (rows, positions, targets)]
    return GenBatch(input_ids, attention, slots, labels, *as_long)


def steps_per_epoch(sequences: Sequence[GenSequence], per_label: int, num_labels: int) -> int:
    """One epoch sees every example at least once: enough batches for the largest label."""
    counts = np.bincount([s.label for s in sequences], minlength=num_labels)
    missing = [label for label, count in enumerate(counts) if count == 0]
    if missing:
        raise ValueError(f"label-balanced batches need examples of every label; none of label index {missing}")
    return int(-(-counts.max() // per_label))


def balanced_epoch(
    sequences: Sequence[GenSequence], per_label: int, num_labels: int, seed: int, epoch: int
) -> list[list[int]]:
    """The batches of epoch ``epoch`` as indices into ``sequences``: ``per_label`` of every label each,
    every label in its own shuffled order (smaller labels start over), fixed by ``(seed, epoch)``."""
    steps = steps_per_epoch(sequences, per_label, num_labels)
    rng = np.random.default_rng([seed, epoch])
    orders = []
    for label in range(num_labels):
        pool = np.array([i for i, s in enumerate(sequences) if s.label == label])
        repeats = -(-steps * per_label // len(pool))
        orders.append(np.concatenate([rng.permutation(pool) for _ in range(repeats)]))
    return [
        [int(order[i]) for order in orders for i in range(step * per_label, (step + 1) * per_label)]
        for step in range(steps)
    ]
