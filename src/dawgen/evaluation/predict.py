"""Scoring a test set with a progress bar, and the predictions file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.progress import Progress

from dawgen.classifier.encoding import Encoded
from dawgen.classifier.scorer import Scorer
from dawgen.data.example import Example
from dawgen.utils.io import atomic_write_text


def predict_with_progress(
    scorer: Scorer,
    items: Sequence[Encoded],
    prompt: torch.Tensor | None,
    bar: Progress,
    batch_size: int = 32,
    description: str = "evaluate",
) -> torch.Tensor:
    """Label-word logits for ``items``, advancing a progress bar as batches finish."""
    bar_task = bar.add_task(description, total=len(items), status="")
    return scorer.predict_logits(items, prompt, batch_size, on_batch=lambda n: bar.advance(bar_task, n))


def write_predictions(
    path: str | Path, examples: Sequence[Example], logits: torch.Tensor, labels: Sequence[str]
) -> None:
    """One JSON record per example: texts, gold label, predicted label, label probabilities."""
    probs = logits.softmax(-1)
    lines = []
    for example, row in zip(examples, probs, strict=True):
        record = {
            "text_a": example.text_a,
            "text_b": example.text_b,
            "label": example.label,
            "predicted": labels[int(row.argmax())],
            "probabilities": {label: round(float(p), 5) for label, p in zip(labels, row, strict=True)},
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))
