"""The predictions file: one JSON record per scored example."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from dawgen.data.example import Example
from dawgen.utils.io import atomic_write_text


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
