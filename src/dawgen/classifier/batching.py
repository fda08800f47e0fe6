"""Dynamic padding with soft-prompt slots, and length-bucketed batch order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from dawgen.classifier.encoding import Encoded
from dawgen.tasks.schema import Family


@dataclass
class Batch:
    """Padded model inputs. ``prompt_slots`` marks where soft-prompt vectors go; ``answer_index``
    points into the padded sequence (the decoder position for seq2seq)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    prompt_slots: torch.Tensor
    answer_index: torch.Tensor
    labels: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in vars(self).values()))


def collate(items: Sequence[Encoded], family: Family, pad_id: int, num_virtual_tokens: int = 0) -> Batch:
    """Pad to the longest item. Each row is ``[prompt slots][tokens]``: padded on the left for
    decoder-only models (so the answer is the last position of every row), on the right otherwise."""
    width = num_virtual_tokens + max(len(item.input_ids) for item in items)
    shape = (len(items), width)
    input_ids = torch.full(shape, pad_id, dtype=torch.long)
    attention = torch.zeros(shape, dtype=torch.long)
    slots = torch.zeros(shape, dtype=torch.bool)
    answer = torch.zeros(len(items), dtype=torch.long)
    for row, item in enumerate(items):
        length = num_virtual_tokens + len(item.input_ids)
        start = width - length if family is Family.DECODER else 0
        input_ids[row, start + num_virtual_tokens : start + length] = torch.tensor(item.input_ids)
        attention[row, start : start + length] = 1
        slots[row, start : start + num_virtual_tokens] = True
        answer[row] = item.answer_index if family is Family.SEQ2SEQ else start + num_virtual_tokens + item.answer_index
    labels = torch.tensor([item.label for item in items], dtype=torch.long)
    return Batch(input_ids, attention, slots, answer, labels)


def bucketed_order(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, window: int = 50
) -> list[list[int]]:
    """Shuffle, sort by length inside windows of ``window`` batches, cut into batches and
    shuffle the batches: similar lengths share a batch, and the order stays random."""
    order = rng.permutation(len(lengths))
    span = batch_size * window
    batches = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches of similar length for inference (callers restore the original order)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def split_by_length(lengths: Sequence[int], overhead: float) -> list[list[int]]:
    """The rows of one batch (their ``lengths``, padding included in none) cut into sub-batches of
    similar length, so that padding to each sub-batch's longest row wastes less than a pass costs.

    Minimises the padded size, the sum over sub-batches of rows x longest row, plus ``overhead`` (a
    pass's fixed cost, in tokens) for each sub-batch (dynamic programming over the rows sorted by
    length). A batch not worth cutting comes back whole, in its own order; sub-batches come shortest
    first, each in length order."""
    n = len(lengths)
    order = sorted(range(n), key=lambda i: lengths[i])
    best = [0.0] + [float("inf")] * n  # best[j]: the cheapest cut of the j shortest rows
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        longest = lengths[order[end - 1]]
        for start in range(end):
            cost = best[start] + (end - start) * longest + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return [list(range(n))] if len(groups) == 1 else groups[::-1]


def one_epoch(items: Sequence[Encoded], batch_size: int, seed: int, epoch: int) -> list[list[Encoded]]:
    """The length-bucketed batches of epoch ``epoch``, shuffled with ``(seed, epoch)``."""
    lengths = [len(item.input_ids) for item in items]
    rng = np.random.default_rng([seed, epoch])
    return [[items[i] for i in batch] for batch in bucketed_order(lengths, batch_size, rng)]


def epoch_batches(items: Sequence[Encoded], batch_size: int, seed: int) -> Iterator[list[Encoded]]:
    """An endless stream of length-bucketed batches, epoch after epoch."""
    epoch = 0
    while True:
        yield from one_epoch(items, batch_size, seed, epoch)
        epoch += 1


def balanced_batches(items: Sequence[Encoded], batch_size: int, seed: int, num_labels: int) -> Iterator[list[Encoded]]:
    """An endless stream of label-balanced batches: ``batch_size // num_labels`` items of every
    label (at least one), each label cycling through its own reshuffled examples."""
    per_label = max(1, batch_size // num_labels)
    rng = np.random.default_rng([seed, 1])
    pools = [[item for item in items if item.label == label] for label in range(num_labels)]
    missing = [label for label, pool in enumerate(pools) if not pool]
    if missing:
        raise ValueError(f"label-balanced batches need examples of every label; none of label index {missing}")
    queues: list[list[Encoded]] = [[] for _ in pools]
    while True:
        batch = []
        for pool, queue in zip(pools, queues, strict=True):
            while len(queue) < per_label:
                queue += [pool[i] for i in rng.permutation(len(pool))]
            batch += queue[:per_label]
            del queue[:per_label]
        yield batch
