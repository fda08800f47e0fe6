"""Metrics of the paper's protocol: accuracy, positive-class F1, mean (std) over seeds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch

from dawgen.tasks.schema import TaskSpec


def classification_metrics(logits: torch.Tensor, labels: Sequence[int], task: TaskSpec) -> dict[str, float]:
    """Accuracy (and F1 of ``task.f1_positive_label`` when the task defines one), in percent, the
    mean cross-entropy over the label words, and two diagnostics of a classifier that has not
    learned the task: ``balanced_accuracy`` (the mean recall of the labels present: chance is
    100 / labels whatever the label mix) and ``top_prediction_share`` (the share of the most
    predicted label: 100 when every example gets the same label)."""
    gold = torch.as_tensor(list(labels), dtype=torch.long)
    predicted = logits.argmax(-1)
    recalls = [(predicted[gold == label] == label).float().mean().item() for label in gold.unique()]
    metrics = {
        "accuracy": 100.0 * (predicted == gold).float().mean().item(),
        "loss": torch.nn.functional.cross_entropy(logits.float(), gold).item(),
        "balanced_accuracy": 100.0 * sum(recalls) / len(recalls),
        "top_prediction_share": 100.0 * torch.bincount(predicted).max().item() / len(predicted),
    }
    if task.f1_positive_label is not None:
        metrics["f1"] = 100.0 * f1_score(predicted, gold, task.label_index(task.f1_positive_label))
    return metrics


def f1_score(predicted: torch.Tensor, gold: torch.Tensor, positive: int) -> float:
    """F1 of one class (0 when the class is never predicted nor present)."""
    tp = ((predicted == positive) & (gold == positive)).sum().item()
    fp = ((predicted == positive) & (gold != positive)).sum().item()
    fn = ((predicted != positive) & (gold == positive)).sum().item()
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = list(values)
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(runs: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean (std) of every metric the runs share, e.g. over seeds."""
    keys = [key for key in runs[0] if all(key in run for run in runs)]
    return {key: mean_std(run[key] for run in runs) for key in keys}


def format_mean_std(mean: float, std: float) -> str:
    return f"{mean:.1f} ({std:.1f})"
