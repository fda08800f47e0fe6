"""The pool of first sentences for sentence-pair tasks: read, deduplicated and shuffled by seed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dawgen.data.example import DataError
from dawgen.data.readers import _first_text_column, read_texts
from dawgen.data.sources import HUB_PREFIX, demo_dir, demo_task
from dawgen.tasks.schema import TaskSpec

POOL_SUFFIXES = (".json", ".jsonl", ".tsv", ".csv", ".txt")
DEMO_POOL = "pool.txt"


@dataclass(frozen=True)
class Pool:
    """Distinct first sentences in the order they are used (shuffled by ``seed``), and where they came from."""

    source: str
    sentences: list[str]
    seed: int


def find_pool_file(task: TaskSpec, spec: str | Path | None) -> str:
    """The pool to read: ``spec`` if it is a file or ``hf:`` dataset; in a folder, ``<TASK>/pool/train.*``,
    ``pool/train.*`` or ``pool.txt``; without ``spec``, the demo task's shipped pool."""
    if spec is None:
        if task.name == demo_task().name:
            return str(demo_dir() / DEMO_POOL)
        raise DataError(f"task {task.name!r} needs a pool of first sentences: give a file, a data root or hf:NAME")
    text = str(spec)
    path = Path(spec)
    if text.startswith(HUB_PREFIX) or path.is_file():
        return text
    if not path.is_dir():
        raise DataError("no such pool file or folder", path=path)
    folders = [path / task.name / "pool", path / "pool", path]
    names = [f"train{suffix}" for suffix in POOL_SUFFIXES] + [DEMO_POOL]
    for candidate in (folder / name for folder in folders for name in names):
        if candidate.is_file():
            return str(candidate)
    raise DataError(f"no pool file found (looked for <{task.name}>/pool/train.*, pool/train.*, pool.txt)", path=path)


def _hub_texts(spec: str, column: str | None) -> list[str]:
    """Texts of one column of ``hf:NAME[:CONFIG[:SPLIT]]`` (split ``train`` by default)."""
    parts = spec[len(HUB_PREFIX) :].split(":")
    name, config = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)
    split = parts[2] if len(parts) > 2 else "train"
    try:
        import datasets

        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as exc:
        message = f"could not load the pool from the Hugging Face hub ({type(exc).__name__}: {exc})"
        raise DataError(message, path=spec) from exc
    column = column or _first_text_column(dataset.column_names, spec)
    if column not in dataset.column_names:
        raise DataError(f"no column {column!r}; available columns: {dataset.column_names}", path=spec, field=column)
    return [text for text in dataset[column] if isinstance(text, str) and text.strip()]


def read_pool(spec: str, column: str | None = None) -> list[str]:
    """The raw texts of a pool file (any format ``read_texts`` reads) or ``hf:`` dataset column."""
    return _hub_texts(spec, column) if spec.startswith(HUB_PREFIX) else read_texts(spec, column)


def distinct(texts: list[str]) -> list[str]:
    """``texts`` stripped, without repeats (same words and spacing), in first-seen order."""
    seen: dict[str, str] = {}
    for text in texts:
        seen.setdefault(" ".join(text.split()), text.strip())
    return list(seen.values())


def load_pool(task: TaskSpec, spec: str | Path | None, seed: int, column: str | None = None) -> Pool:
    """The first sentences of a generation run: distinct, in an order fixed by ``seed``."""
    source = find_pool_file(task, spec)
    texts = distinct(read_pool(source, column))
    if not texts:
        raise DataError("the pool holds no text", path=source)
    order = np.random.default_rng(seed).permutation(len(texts))
    return Pool(source, [texts[i] for i in order], seed)
