"""How a synthetic set compares with the real few-shot data: balance, copies, diversity, length, embeddings.

Works on any synthetic file ``load_synthetic`` reads (dawgen's JSONL, FewGen's ``gen-train.json``).
The generated side is ``text_b`` for sentence-pair tasks and ``text_a`` otherwise.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dawgen.constants import QUALITY_PLOT, QUALITY_REPORT
from dawgen.data.example import Example
from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.data.synthetic import is_verbatim_copy, load_synthetic
from dawgen.models.precision import precision_record
from dawgen.synthesis.diversity import distinct_n, self_bleu, words
from dawgen.synthesis.embeddings import SentenceEncoder
from dawgen.synthesis.filters import word_overlap
from dawgen.tasks.registry import BUILTIN_TASKS, get_task
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_write_json

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
MATCHED_DRAWS = 10  # random subsets of the real set's size, for diversity numbers comparable with it


def generated(example: Example) -> str:
    return example.text_b if example.text_b is not None else example.text_a


def by_label(examples: Sequence[Example], labels: Sequence[str]) -> dict[str, list[Example]]:
    return {label: [e for e in examples if e.label == label] for label in labels}


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def _rate(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def diversity(texts: Sequence[str], sample: int, seed: int) -> dict[str, float | None]:
    """Distinct-1/2 and self-BLEU of (a random sample of at most ``sample`` of) ``texts``.

    Both fall as a set grows, so only sets of the same size compare: see ``matched_diversity``.
    """
    texts = list(texts)
    if len(texts) > sample:
        texts = random.Random(seed).sample(texts, sample)
    bleu = self_bleu(texts, sample, seed)
    return {
        "distinct_1": round(distinct_n(texts, 1), 4), "distinct_2": round(distinct_n(texts, 2), 4),
        "self_bleu": None if bleu is None else round(bleu, 4),
    }  # fmt: skip


def matched_diversity(texts: Sequence[str], size: int, draws: int, seed: int) -> dict[str, float | None]:
    """``diversity`` averaged over ``draws`` random subsets of ``size`` texts (the size of the real set)."""
    if not texts or size < 1:
        return {"distinct_1": None, "distinct_2": None, "self_bleu": None}
    runs = [diversity(texts, size, seed + draw) for draw in range(draws)]
    return {key: _mean([r[key] for r in runs if r[key] is not None]) for key in runs[0]}


def mmd_rbf(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between two samples with an RBF kernel, bandwidth by the median heuristic."""
    pooled = torch.cat([x, y]).double()
    distances = torch.cdist(pooled, pooled).pow(2)
    off_diagonal = distances[~torch.eye(len(pooled), dtype=torch.bool)]
    bandwidth = off_diagonal.median().clamp(min=1e-12)
    kernel = torch.exp(-distances / bandwidth)
    n = len(x)
    kxx, kyy, kxy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]

    def within(k: torch.Tensor) -> torch.Tensor:
        m = len(k)
        return (k.sum() - k.diagonal().sum()) / max(m * (m - 1), 1)

    return float(within(kxx) + within(kyy) - 2 * kxy.mean())


def embedding_similarity(
    encoder: SentenceEncoder, synthetic: dict[str, list[str]], real: dict[str, list[str]], sample: int, seed: int
) -> dict[str, Any]:
    """Per label: cosine of the synthetic and real centroids, MMD^2; and every synthetic-real centroid pair."""
    rng = random.Random(seed)
    picked = {label: rng.sample(texts, min(sample, len(texts))) for label, texts in synthetic.items()}
    syn = {label: encoder.encode(texts) for label, texts in picked.items() if texts}
    ref = {label: encoder.encode(texts) for label, texts in real.items() if texts}
    centroids = {key: {label: torch.nn.functional.normalize(e.mean(0), dim=0) for label, e in d.items()}
                 for key, d in (("syn", syn), ("real", ref))}  # fmt: skip
    per_label = {
        label: {
            "centroid_cosine": round(float(centroids["syn"][label] @ centroids["real"][label]), 4),
            "mmd2_rbf": round(mmd_rbf(syn[label], ref[label]), 4),
            "synthetic_sampled": len(syn[label]),
            "real": len(ref[label]),
        }
        for label in syn
        if label in ref
    }
    matrix = {
        s: {r: round(float(cs @ cr), 4) for r, cr in centroids["real"].items()} for s, cs in centroids["syn"].items()
    }
    return {"model": EMBEDDING_MODEL, "per_label": per_label, "centroid_cosine_matrix": matrix}


def quality_report(
    synthetic: Sequence[Example], real: Sequence[Example], labels: Sequence[str], *,
    encoder: SentenceEncoder | None = None, sample: int = 200, seed: int = 0, copy_threshold: float = 0.9,
) -> dict[str, Any]:  # fmt: skip
    """The report as plain JSON values; embedding metrics only with an ``encoder``."""
    pair = any(e.text_b is not None for e in synthetic)
    syn, ref = by_label(synthetic, labels), by_label(real, labels)
    syn_counts, real_counts = Counter(e.label for e in synthetic), Counter(e.label for e in real)
    present = [syn_counts[label] for label in labels if syn_counts[label]]
    report: dict[str, Any] = {
        "size": {"synthetic": len(synthetic), "real": len(real)},
        "label_balance": {
            "synthetic": {label: syn_counts[label] for label in labels},
            "real": {label: real_counts[label] for label in labels},
            "synthetic_share": {label: round(syn_counts[label] / max(len(synthetic), 1), 4) for label in labels},
            "max_over_min": round(max(present) / min(present), 3) if len(present) == len(labels) else None,
        },
        "diversity": {
            "sample": sample,
            "synthetic": diversity([generated(e) for e in synthetic], sample, seed),
            "real": diversity([generated(e) for e in real], sample, seed),
            "synthetic_size_matched": matched_diversity(
                [generated(e) for e in synthetic], min(len(real), sample), MATCHED_DRAWS, seed
            ),
            "per_label": {label: diversity([generated(e) for e in syn[label]], sample, seed) for label in labels},
        },
        "length_words": {
            label: {
                "synthetic": _mean([len(words(generated(e))) for e in syn[label]]),
                "real": _mean([len(words(generated(e))) for e in ref[label]]),
            }
            for label in labels
        },
    }
    if pair:
        report["copies"] = {
            "threshold": copy_threshold,
            "verbatim_rate": _rate([is_verbatim_copy(e) for e in synthetic]),
            "near_copy_rate": _rate([word_overlap(e.text_a, e.text_b) >= copy_threshold for e in synthetic]),
            "per_label": {label: _copy_stats(syn[label], ref[label], copy_threshold) for label in labels},
        }
    if encoder is not None:
        syn_texts = {label: [generated(e) for e in syn[label]] for label in labels}
        real_texts = {label: [generated(e) for e in ref[label]] for label in labels}
        report["embeddings"] = embedding_similarity(encoder, syn_texts, real_texts, sample, seed)
    return report


def _copy_stats(synthetic: Sequence[Example], real: Sequence[Example], threshold: float) -> dict[str, float | None]:
    overlaps = [word_overlap(e.text_a, e.text_b or "") for e in synthetic]
    return {
        "verbatim_rate": _rate([is_verbatim_copy(e) for e in synthetic]),
        "near_copy_rate": _rate([o >= threshold for o in overlaps]),
        "mean_overlap": _mean(overlaps),
        "real_mean_overlap": _mean([word_overlap(e.text_a, e.text_b or "") for e in real]),
    }


def infer_task(*paths: str | Path) -> TaskSpec:
    """The task a synthetic file or real-data folder belongs to, from the built-in task names in the paths."""
    for path in paths:
        resolved = Path(path).resolve()
        if resolved == demo_dir().resolve() or resolved.is_relative_to(demo_dir().resolve()):
            return demo_task()
        names = [part.upper() for part in resolved.parts]
        found = [name for name in names if name in BUILTIN_TASKS]
        if found:
            return BUILTIN_TASKS[found[-1]]
    raise ValueError(f"cannot tell the task from {[str(p) for p in paths]}; give it with --task")


def inspect_synthetic(
    synthetic: str | Path, real: str | Path, *, task: str | TaskSpec | None = None, seed: int = 13, k: int = 16,
    out: str | Path | None = None, sample: int = 200, embeddings: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Compare a synthetic file with the k-shot training split in ``real`` (a k-shot folder or a data root
    with ``seed`` and ``k``); with ``out``, write ``quality.json`` and ``quality.png`` there."""
    spec = get_task(task) if task is not None else infer_task(real, synthetic)
    syn = load_synthetic(spec, synthetic, drop_copies=False).examples
    train = load_fewshot(spec, real, seed=seed, k=k).train
    encoder = SentenceEncoder() if embeddings else None
    report = {"task": spec.name, "synthetic_file": str(synthetic), "real": str(real), "seed": seed}
    report |= quality_report(syn, train, spec.labels, encoder=encoder, sample=sample, seed=seed)
    if getattr(encoder, "device", None) is not None:
        report["compute"] = precision_record(encoder.device, None)  # the MiniLM embeddings, in fp32
    if out is not None:
        from dawgen.synthesis.quality_plot import plot_quality

        out = Path(out)
        atomic_write_json(out / QUALITY_REPORT, report)
        plot_quality(report, out / QUALITY_PLOT)
    return report
