"""How real and synthetic data are combined during prompt tuning (the paper's Table 2).

A strategy is a plan: an endless, deterministic sequence of steps, each holding the batch (or,
for ``paired``, the real and the synthetic batch) of one optimizer step. The trainer only
follows the plan, so the visiting order of every strategy can be tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from dawgen.classifier.batching import balanced_batches, epoch_batches, one_epoch
from dawgen.classifier.encoding import Encoded


class Combine(StrEnum):
    REAL = "real"  # few-shot data only (the Prompt Tuning baseline)
    SYN = "syn"  # synthetic data only
    MERGED = "merged"  # real and synthetic shuffled together
    MERGED_LS = "merged_ls"  # merged, with label smoothing (0.1 unless label_smoothing is set)
    REAL_THEN_SYN = "real_then_syn"  # every epoch: all real batches, then all synthetic ones
    SYN_THEN_REAL = "syn_then_real"  # every epoch: all synthetic batches, then all real ones
    PAIRED = "paired"  # every step: one real and one synthetic batch, gradients combined


class Source(StrEnum):
    REAL = "real"
    SYN = "syn"
    MIXED = "mixed"


NEEDS_SYNTHETIC = frozenset(Combine) - {Combine.REAL}


@dataclass(frozen=True)
class Step:
    """The batches of one optimizer step, each tagged with where it came from."""

    batches: tuple[tuple[Source, list[Encoded]], ...]


def _single(source: Source, batches: Iterator[list[Encoded]]) -> Iterator[Step]:
    for batch in batches:
        yield Step(((source, batch),))


def _sequential(
    first: tuple[Source, Sequence[Encoded], int], second: tuple[Source, Sequence[Encoded], int], seed: int
) -> Iterator[Step]:
    epoch = 0
    while True:
        for source, items, batch_size in (first, second):
            for batch in one_epoch(items, batch_size, seed, epoch):
                yield Step(((source, batch),))
        epoch += 1


def plan_steps(
    strategy: Combine,
    real: Sequence[Encoded],
    synthetic: Sequence[Encoded] = (),
    *,
    batch_size: int,
    syn_batch_size: int,
    seed: int,
    num_labels: int,
    balance_synthetic: bool = True,
) -> Iterator[Step]:
    """The endless step sequence of ``strategy``; the same arguments give the same sequence.

    ``real`` batches are ``batch_size`` long and ``synthetic`` ones ``syn_batch_size``; in
    ``paired`` the small real set cycles against the large synthetic one, and synthetic batches
    are label-balanced unless ``balance_synthetic`` is off.
    """
    strategy = Combine(strategy)
    if strategy in NEEDS_SYNTHETIC and not synthetic:
        raise ValueError(f"combination strategy {strategy.value!r} needs a synthetic dataset")
    if strategy is Combine.REAL:
        return _single(Source.REAL, epoch_batches(real, batch_size, seed))
    if strategy is Combine.SYN:
        return _single(Source.SYN, epoch_batches(synthetic, syn_batch_size, seed))
    if strategy in (Combine.MERGED, Combine.MERGED_LS):
        return _single(Source.MIXED, epoch_batches([*real, *synthetic], batch_size, seed))
    real_part, syn_part = (Source.REAL, real, batch_size), (Source.SYN, synthetic, syn_batch_size)
    if strategy is Combine.REAL_THEN_SYN:
        return _sequential(real_part, syn_part, seed)
    if strategy is Combine.SYN_THEN_REAL:
        return _sequential(syn_part, real_part, seed)
    if balance_synthetic:
        syn_stream = balanced_batches(synthetic, syn_batch_size, seed, num_labels)
    else:
        syn_stream = epoch_batches(synthetic, syn_batch_size, seed + 1)
    real_stream = epoch_batches(real, batch_size, seed)
    return (Step(((Source.REAL, r), (Source.SYN, s))) for r, s in zip(real_stream, syn_stream, strict=False))
