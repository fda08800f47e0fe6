"""Synthetic training sets: dawgen's JSON Lines and FewGen's ``gen-train.json``, validated and cleaned."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dawgen.data.dataset_folder import load_synthetic_examples
from dawgen.data.example import Example
from dawgen.tasks.schema import TaskSpec


@dataclass(frozen=True)
class SyntheticSet:
    """A synthetic dataset after cleaning, with what was removed."""

    examples: list[Example]
    dropped_copies: int = 0
    per_label: dict[str, int] = field(default_factory=dict)


def is_verbatim_copy(example: Example) -> bool:
    """The second sentence repeats the first (FewGen's paraphrase labels are full of these)."""
    return example.text_b is not None and " ".join(example.text_b.split()) == " ".join(example.text_a.split())


def load_synthetic(task: TaskSpec, path: str | Path, *, drop_copies: bool = True) -> SyntheticSet:
    """Read a synthetic set (``text_a``/``text_b``/``label`` JSONL, FewGen's ``text1``/``text2``/``label``
    JSON list, or a dataset folder written by ``dawgen export``: a ``save_to_disk`` folder or one holding
    ``train.jsonl``/``train.csv``), check its labels against ``task``, and drop verbatim copies."""
    examples = load_synthetic_examples(task, path)
    kept = [e for e in examples if not is_verbatim_copy(e)] if drop_copies else examples
    counts = Counter(e.label for e in kept)
    return SyntheticSet(kept, len(examples) - len(kept), {label: counts[label] for label in task.labels})
