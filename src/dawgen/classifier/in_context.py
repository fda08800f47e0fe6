"""Baselines without training, on the same scorer: zero-shot and in-context prompting."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dawgen.classifier.encoding import Encoded, TaskEncoder
from dawgen.data.example import Example


def sample_demonstrations(
    train: Sequence[Example], labels: Sequence[str], per_label: int, rng: np.random.Generator
) -> list[Example]:
    """``per_label`` training examples of every label, in random order (LM-BFF's demonstrations)."""
    chosen: list[Example] = []
    for label in labels:
        pool = [example for example in train if example.label == label]
        if len(pool) < per_label:
            raise ValueError(f"in-context prompting needs {per_label} training example(s) of label {label!r}")
        chosen += [pool[i] for i in rng.choice(len(pool), per_label, replace=False)]
    return [chosen[i] for i in rng.permutation(len(chosen))]


def encode_in_context(
    encoder: TaskEncoder, train: Sequence[Example], test: Sequence[Example], per_label: int = 1, seed: int = 13
) -> list[Encoded]:
    """Encode every test example behind its own sample of demonstrations (seeded)."""
    rng = np.random.default_rng(seed)
    labels = encoder.task.labels
    return [encoder.encode(example, sample_demonstrations(train, labels, per_label, rng)) for example in test]
