"""A short hash of the inputs a stage reads, for the run folder's stage keys."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from dawgen.data.example import Example
from dawgen.tasks.schema import TaskSpec


def inputs_fingerprint(model: str, task: TaskSpec, *datasets: Sequence[Example], extra: str = "") -> str:
    """A short hash of what a run reads: the model, the task, every example (and ``extra``, if any)."""
    digest = hashlib.sha256(f"{model}\n{task!r}".encode())
    for examples in datasets:
        digest.update(b"\x00")
        for example in examples:
            digest.update(f"{example.text_a}\t{example.text_b}\t{example.label}\n".encode())
    if extra:
        digest.update(b"\x01" + extra.encode())
    return digest.hexdigest()[:16]
