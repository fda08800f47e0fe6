"""Baselines without training, on the same scorer: zero-shot and in-context prompting.

In-context prompting puts ``demonstrations_per_label`` labelled training examples of every label in
front of each test example: by default k, i.e. the whole k-shot training split (the project's
method description: "in-context (k demonstrations in the prompt)"). Demonstrations that do not fit in
the scorer's ``max_length`` are dropped, the farthest from the test example first (see
``TaskEncoder.encode``); the result records how many fitted on average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dawgen.classifier.encoding import Encoded, TaskEncoder
from dawgen.data.example import Example


@dataclass
class InContextConfig:
    """The settings of in-context prompting (``baselines: {in-context: {...}}`` in a run config).

    ``demonstrations_per_label`` None is k: every training example of each label.
    """

    demonstrations_per_label: int | None = None

    def __post_init__(self) -> None:
        check_demonstrations_per_label(self.demonstrations_per_label)


def check_demonstrations_per_label(value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"demonstrations_per_label must be at least 1, got {value!r}")


def sample_demonstrations(
    train: Sequence[Example], labels: Sequence[str], per_label: int | None, rng: np.random.Generator
) -> list[Example]:
    """``per_label`` training examples of every label (None: all of them; LM-BFF's demonstrations).

    They come in rounds of one example per label, each round in random order, so that dropping
    demonstrations from the front (when they do not all fit) keeps the labels balanced.
    """
    check_demonstrations_per_label(per_label)
    chosen: dict[str, list[Example]] = {}
    for label in labels:
        pool = [example for example in train if example.label == label]
        want = len(pool) if per_label is None else per_label
        if not pool or len(pool) < want:
            have = f"it has {len(pool)}"
            raise ValueError(
                f"in-context prompting needs {want or 1} training example(s) of label {label!r}; {have} "
                "(lower demonstrations_per_label)"
            )
        chosen[label] = [pool[i] for i in rng.choice(len(pool), want, replace=False)]
    rounds = max(len(examples) for examples in chosen.values())
    ordered: list[Example] = []
    for r in range(rounds):
        one_round = [chosen[label][r] for label in labels if r < len(chosen[label])]
        ordered += [one_round[i] for i in rng.permutation(len(one_round))]
    return ordered


def encode_in_context(
    encoder: TaskEncoder,
    train: Sequence[Example],
    test: Sequence[Example],
    per_label: int | None = None,
    seed: int = 13,
) -> list[Encoded]:
    """Encode every test example behind its own sample of demonstrations (seeded)."""
    rng = np.random.default_rng(seed)
    labels = encoder.task.labels
    return [encoder.encode(example, sample_demonstrations(train, labels, per_label, rng)) for example in test]
