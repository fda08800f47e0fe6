"""The filters of generated samples: per sample (no eos, empty, newline, copy, near-copy, label consistency)
and across samples (duplicates). Each returns the reason a sample is dropped, or None to keep it. The
filters that learn from the k-shot data (judge, relatedness floor) are in ``kshot_filters``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from dawgen.synthesis.config import DedupKey, Reject

WORD = re.compile(r"\w+")


def word_set(text: str) -> set[str]:
    """The lower-cased words of ``text``."""
    return set(WORD.findall(text.lower()))


def word_overlap(a: str, b: str) -> float:
    """Jaccard overlap of the lower-cased word sets of two texts (1.0 for two texts without words)."""
    first, second = word_set(a), word_set(b)
    union = first | second
    return len(first & second) / len(union) if union else 1.0


def edit_distance(a: str, b: str, limit: int | None = None) -> int:
    """Levenshtein distance of two strings (insertions, deletions, substitutions of one character each).

    With ``limit``, only whether it is within the limit is worked out (a band of the table around its
    diagonal): the distance when it is at most ``limit``, else ``limit + 1``.
    """
    if len(a) < len(b):
        a, b = b, a
    bound = len(a) if limit is None else min(limit, len(a))
    if len(a) - len(b) > bound:
        return bound + 1
    over = bound + 1  # stands for any distance beyond the bound
    previous = [j if j <= bound else over for j in range(len(b) + 1)]
    for i in range(1, len(a) + 1):
        low, high = max(1, i - bound), min(len(b), i + bound)
        current = [over] * (len(b) + 1)
        if i <= bound:
            current[0] = i
        for j in range(low, high + 1):
            cost = previous[j - 1] + (a[i - 1] != b[j - 1])
            current[j] = min(cost, previous[j] + 1, current[j - 1] + 1, over)
        if min(current[max(0, low - 1) : high + 1]) >= over:
            return over
        previous = current
    return min(previous[len(b)], over)


def char_similarity(a: str, b: str) -> float:
    """1 - Levenshtein distance / length of the longer text, on lower-cased, whitespace-normalised text
    (1.0 for two empty texts): spelling variants score near 1, paraphrases low."""
    first, second = _normalise(a), _normalise(b)
    longest = max(len(first), len(second))
    return 1.0 - edit_distance(first, second) / longest if longest else 1.0


def is_near_copy(a: str, b: str, threshold: float) -> bool:
    """Whether ``char_similarity(a, b) >= threshold``, without working out distances beyond it."""
    first, second = _normalise(a), _normalise(b)
    longest = max(len(first), len(second))
    if not longest:
        return True
    limit = _edit_budget(longest, threshold)
    return limit >= 0 and edit_distance(first, second, limit) <= limit


def _edit_budget(longest: int, threshold: float) -> int:
    """The most edits a near-copy of ``longest`` characters may have: the largest d with
    ``1 - d / longest >= threshold``, as ``char_similarity`` computes it (-1: none)."""
    budget = int((1.0 - threshold) * longest)
    while budget >= 0 and 1.0 - budget / longest < threshold:
        budget -= 1
    while budget < longest and 1.0 - (budget + 1) / longest >= threshold:
        budget += 1
    return budget


def text_rejection(
    text: str, finished: bool, first_sentence: str | None, copy_threshold: float, char_copy_threshold: float
) -> Reject | None:
    """The first per-sample filter ``text`` fails, checked in the order of ``Reject``; None if it passes.

    ``text`` is the decoded generation (eos excluded); ``first_sentence`` is None for single-sentence tasks.
    """
    if not finished:
        return Reject.NO_EOS
    if not text.strip():
        return Reject.EMPTY
    if "\n" in text or "\r" in text:
        return Reject.NEWLINE
    if first_sentence is not None and word_overlap(text, first_sentence) >= copy_threshold:
        return Reject.COPY
    if first_sentence is not None and is_near_copy(text, first_sentence, char_copy_threshold):
        return Reject.NEAR_COPY
    return None


def label_margins(mean_logprobs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[B]: each sample's mean log-prob per token under its own label's prompt minus the best other label's.

    ``mean_logprobs`` is [B, L] (sample under every label prompt), ``labels`` [B] the samples' labels.
    """
    own = mean_logprobs.gather(1, labels[:, None]).squeeze(1)
    others = mean_logprobs.scatter(1, labels[:, None], -torch.inf)
    return own - others.max(dim=1).values


def mean_per_row(values: torch.Tensor, rows: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Mean of ``values`` ([N, P]) over the entries of each row (``rows`` [N]): [num_rows, P]."""
    sums = torch.zeros(num_rows, values.shape[1], dtype=values.dtype).index_add_(0, rows, values)
    counts = torch.zeros(num_rows, dtype=values.dtype).index_add_(0, rows, torch.ones_like(rows, dtype=values.dtype))
    return sums / counts.clamp(min=1)[:, None]


def _normalise(text: str | None) -> str:
    return " ".join((text or "").lower().split())


def duplicate_key(record: Mapping[str, Any], dedup: DedupKey) -> tuple[str, ...] | None:
    """What two samples must share to be duplicates (None: never a duplicate)."""
    if dedup is DedupKey.NONE:
        return None
    generated = record["text_b"] if record.get("text_b") is not None else record["text_a"]
    if dedup is DedupKey.TEXT:
        return (record["label"], _normalise(generated))
    return (record["label"], _normalise(record["text_a"]), _normalise(record.get("text_b")))


def mark_duplicates(records: Iterable[dict[str, Any]], dedup: DedupKey) -> None:
    """Set ``reject`` to ``duplicate`` on every kept record whose key a kept record before it already had.

    Records must come in sample-index order, so the earliest sample of a group is the one kept.
    """
    seen: set[tuple[str, ...]] = set()
    for record in records:
        if record.get("reject") is not None:
            continue
        key = duplicate_key(record, dedup)
        if key is None:
            continue
        if key in seen:
            record["reject"] = Reject.DUPLICATE.value
        else:
            seen.add(key)
