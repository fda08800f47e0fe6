"""Which samples a round generates, and how they are batched and shared between processes.

Sample ``index = slot * L + label``: slot ``s`` of every label is conditioned on the pool's ``s``-th
first sentence, so sorting by index interleaves the labels of one first sentence (FewGen's
contrastive layout). Round 0 takes slots ``[0, per_label)`` of every label; each further round adds,
for every label still short of ``per_label`` kept samples, enough new slots for its kept rate so far.
Everything here depends only on the records of earlier rounds, so a resumed run, or one with another
number of processes, plans exactly the same samples and batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dawgen.synthesis.writer import LabelTally

MAX_TOP_UP_FACTOR = 4  # a top-up round asks for at most this many times a label's missing samples


@dataclass(frozen=True)
class WorkItem:
    """One sample to generate."""

    index: int
    label: int
    slot: int
    round: int


def sample_index(slot: int, label: int, num_labels: int) -> int:
    return slot * num_labels + label


def slots_to_add(tally: LabelTally, per_label: int) -> int:
    """New slots for a label short of ``per_label`` kept samples: its deficit over its kept rate so far."""
    deficit = per_label - len(tally.kept)
    if deficit <= 0:
        return 0
    if not tally.kept:  # no rate to go by (e.g. an untuned generator never ends with eos): one more try only
        return deficit
    return min(math.ceil(deficit * tally.attempted / len(tally.kept)), MAX_TOP_UP_FACTOR * deficit)


def plan_round(
    round_index: int,
    tallies: Mapping[str, LabelTally],
    labels: Sequence[str],
    per_label: int,
    available_slots: int | None,
) -> list[WorkItem]:
    """The samples of round ``round_index`` given the tallies of the rounds before it.

    ``available_slots``: how many first sentences a label may use (None: no limit).
    """
    items = []
    for label_index, label in enumerate(labels):
        used = tallies[label].attempted
        count = per_label if round_index == 0 else slots_to_add(tallies[label], per_label)
        end = used + count if available_slots is None else min(used + count, available_slots)
        items += [
            WorkItem(sample_index(slot, label_index, len(labels)), label_index, slot, round_index)
            for slot in range(used, end)
        ]
    return items


def make_batches(
    items: Sequence[WorkItem], context_length: Callable[[int], int], batch_size: int
) -> list[list[WorkItem]]:
    """Batches of one label each, of first sentences of similar length (sorted by token count, then slot)."""
    batches = []
    for label in sorted({item.label for item in items}):
        rows = sorted((i for i in items if i.label == label), key=lambda i: (context_length(i.slot), i.slot))
        batches += [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
    return batches


def share(batches: Sequence[list[WorkItem]], rank: int, num_processes: int) -> list[list[WorkItem]]:
    """The batches process ``rank`` runs: every ``num_processes``-th, so neighbours in length are spread out."""
    return [batch for number, batch in enumerate(batches) if number % num_processes == rank]
