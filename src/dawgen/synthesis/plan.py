"""Which samples a round generates, and how they are batched and shared between processes.

Sample ``index = slot * L + label``: slot ``s`` of every label is conditioned on the pool's ``s``-th
first sentence, so sorting by index interleaves the labels of one first sentence (FewGen's
contrastive layout). Round 0 takes slots ``[0, per_label)`` of every label; each further round adds,
for every label still short of ``per_label`` kept samples, enough new slots for its kept rate so far,
up to the label's bound on attempts and the slots the pool has. A label short of its samples that can
get no more slots has given up (``give_up_reason``). Everything here depends only on the records of
earlier rounds, so a resumed run, or one with another number of processes, plans exactly the same
samples and batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from dawgen.synthesis.writer import LabelTally

MAX_TOP_UP_FACTOR = 4  # a top-up round asks for at most this many times a label's missing samples

# why a label ended short of its samples
GAVE_UP_ATTEMPTS = "max_attempts"  # it was tried max_attempts_per_label times
GAVE_UP_POOL = "pool_used_up"  # every first sentence of the pool was used for it (reuse_pool lets them repeat)
GAVE_UP_ROUNDS = "top_up_rounds"  # the rounds allowed ran out


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
    max_attempts: int | None = None,
    min_top_up: int = 0,
) -> list[WorkItem]:
    """The samples of round ``round_index`` given the tallies of the rounds before it.

    ``available_slots``: how many first sentences a label may use (None: no limit);
    ``max_attempts``: how many samples a label may have in all (None: no limit); ``min_top_up``:
    the fewest new slots a label short of samples gets in a top-up round (one batch costs about
    the same however full it is, so the last few samples do not take a round of a few rows each).
    """
    items = []
    for label_index, label in enumerate(labels):
        used = tallies[label].attempted
        if round_index == 0:
            count = per_label
        else:
            count = slots_to_add(tallies[label], per_label)
            count = max(count, min_top_up) if count else 0
        end = min([used + count, *(bound for bound in (available_slots, max_attempts) if bound is not None)])
        items += [
            WorkItem(sample_index(slot, label_index, len(labels)), label_index, slot, round_index)
            for slot in range(used, end)
        ]
    return items


def give_up_reason(
    tally: LabelTally, per_label: int, available_slots: int | None, max_attempts: int | None
) -> str | None:
    """Why a label whose rounds are over has fewer than ``per_label`` kept samples (None: it has them all)."""
    if len(tally.kept) >= per_label:
        return None
    if max_attempts is not None and tally.attempted >= max_attempts:
        return GAVE_UP_ATTEMPTS
    if available_slots is not None and tally.attempted >= available_slots:
        return GAVE_UP_POOL
    return GAVE_UP_ROUNDS


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
