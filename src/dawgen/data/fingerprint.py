"""Short hashes of the inputs a stage reads, for the run folder's stage keys and a run's settings."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

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


def content_key(path: str | Path | None) -> str | None:
    """A short hash of a file's bytes, or of every file in a folder (an external synthetic set, a saved
    classifier); None when there is nothing at ``path``."""
    if path is None or not Path(path).exists():
        return None
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode() + b"\x00")
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]
