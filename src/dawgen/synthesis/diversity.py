"""Diversity of a set of sentences: distinct-n and self-BLEU (a small BLEU-4 of our own, no dependency).

BLEU follows Papineni et al. as NLTK's ``sentence_bleu`` computes it with ``SmoothingFunction().method1``
(the usual self-BLEU setting, Zhu et al. 2018): clipped n-gram precisions for n = 1..4 with a zero
count replaced by 0.1, their geometric mean, and the brevity penalty against the closest reference length.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

from dawgen.synthesis.filters import WORD

MAX_N = 4
EPSILON = 0.1  # NLTK method1: the count given to an n-gram order with no match


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams over all n-grams of ``texts`` (0.0 when there are none)."""
    counts: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        counts.update(ngrams(words(text), n))
    total = sum(counts.values())
    return len(counts) / total if total else 0.0


def _bleu(clipped: Sequence[int], totals: Sequence[int], length: int, reference_length: int) -> float:
    """BLEU-4 from clipped match counts and n-gram totals per order, with the brevity penalty."""
    if length == 0 or clipped[0] == 0:
        return 0.0
    log_precision = sum(
        math.log((match if match > 0 else EPSILON) / max(total, 1))
        for match, total in zip(clipped, totals, strict=True)
    )
    brevity = 1.0 if length > reference_length else math.exp(1 - reference_length / length)
    return brevity * math.exp(log_precision / MAX_N)


def _closest(lengths: Sequence[int], length: int) -> int:
    """The reference length closest to ``length`` (the shorter on a tie)."""
    return min(lengths, key=lambda ref: (abs(ref - length), ref))


def bleu4(hypothesis: str, references: Sequence[str]) -> float:
    """Sentence BLEU-4 of ``hypothesis`` against ``references``."""
    hyp = words(hypothesis)
    refs = [words(r) for r in references]
    clipped, totals = [], []
    for n in range(1, MAX_N + 1):
        counts = ngrams(hyp, n)
        best: Counter[tuple[str, ...]] = Counter()
        for ref in refs:
            best |= ngrams(ref, n)  # the largest count of every n-gram in any one reference
        clipped.append(sum(min(count, best[gram]) for gram, count in counts.items()))
        totals.append(sum(counts.values()))
    return _bleu(clipped, totals, len(hyp), _closest([len(r) for r in refs], len(hyp)) if refs else 0)


def self_bleu(texts: Sequence[str], sample: int = 200, seed: int = 0) -> float | None:
    """Mean BLEU-4 of each of (up to ``sample``) sentences against all the others (None for < 2 sentences).

    Fast: for every n-gram the two largest counts over the sentences are kept, so "the largest count
    in any other sentence" is one lookup.
    """
    texts = list(texts)
    if len(texts) > sample:
        texts = random.Random(seed).sample(texts, sample)
    if len(texts) < 2:
        return None
    tokens = [words(t) for t in texts]
    counts = [[ngrams(t, n) for n in range(1, MAX_N + 1)] for t in tokens]
    top_two: list[dict[tuple[str, ...], tuple[int, int, int]]] = [{} for _ in range(MAX_N)]  # gram -> (1st, owner, 2nd)
    for owner, per_order in enumerate(counts):
        for order, grams in enumerate(per_order):
            table = top_two[order]
            for gram, count in grams.items():
                first, first_owner, second = table.get(gram, (0, -1, 0))
                table[gram] = (count, owner, first) if count > first else (first, first_owner, max(second, count))
    lengths = [len(t) for t in tokens]
    scores = []
    for i, per_order in enumerate(counts):
        clipped = []
        for order, grams in enumerate(per_order):
            table = top_two[order]
            clipped.append(sum(min(c, _best_other(table[g], i)) for g, c in grams.items()))
        totals = [sum(grams.values()) for grams in per_order]
        others = lengths[:i] + lengths[i + 1 :]
        scores.append(_bleu(clipped, totals, lengths[i], _closest(others, lengths[i])))
    return sum(scores) / len(scores)


def _best_other(entry: tuple[int, int, int], owner: int) -> int:
    first, first_owner, second = entry
    return second if first_owner == owner else first
