"""Classification metrics: accuracy, F1, and the diagnostics of a classifier that has not learned."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dawgen.evaluation.metrics import classification_metrics
from dawgen.tasks import get_task

SICK = get_task("SICK")  # 3 labels
MRPC = get_task("MRPC")  # 2 labels, F1 of the positive one


def one_hot(predicted: list[int], num_labels: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), num_labels).float()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=40))
def test_diagnostics_stay_in_their_ranges(pairs):
    predicted, gold = zip(*pairs, strict=True)
    metrics = classification_metrics(one_hot(list(predicted), 3), list(gold), SICK)
    assert 0 <= metrics["balanced_accuracy"] <= 100
    assert 100 / 3 - 1e-4 <= metrics["top_prediction_share"] <= 100


def test_a_collapsed_classifier_scores_chance_whatever_the_label_mix():
    gold = [0] * 10 + [1] * 60 + [2] * 30  # imbalanced, like SICK's trial set
    for label in range(3):
        metrics = classification_metrics(one_hot([label] * 100, 3), gold, SICK)
        assert metrics["top_prediction_share"] == 100
        assert metrics["balanced_accuracy"] == pytest.approx(100 / 3)
        assert metrics["accuracy"] == pytest.approx(gold.count(label))


def test_a_perfect_classifier():
    gold = [0, 1, 1, 0, 1]
    metrics = classification_metrics(one_hot(gold, 2), gold, MRPC)
    assert metrics["accuracy"] == metrics["balanced_accuracy"] == metrics["f1"] == 100
    assert metrics["top_prediction_share"] == 60
