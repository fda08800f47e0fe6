"""Synthetic sets as tables: a file, or a dataset folder (``dawgen export``'s output) read back.

A dataset folder is either a ``datasets`` ``save_to_disk`` folder (a ``Dataset``, or a ``DatasetDict``
with a ``train`` split; ``ClassLabel`` columns are read as their label names) or a folder holding
``train.jsonl``, ``train.csv``, ``train.json`` or ``train.tsv``. ``datasets`` is imported only for the first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dawgen.data.example import ColumnMap, DataError, Example
from dawgen.data.readers import (
    Record,
    Table,
    detect_columns,
    examples_from_table,
    has_columns,
    load_split,
    read_table,
)

if TYPE_CHECKING:
    from dawgen.tasks.schema import TaskSpec

TRAIN_FILES = ("train.jsonl", "train.csv", "train.json", "train.tsv")  # in the order they are looked for
HF_DATASET_FILES = ("state.json", "dataset_info.json")  # what ``Dataset.save_to_disk`` writes
HF_DATASET_DICT_FILE = "dataset_dict.json"  # what ``DatasetDict.save_to_disk`` writes
TRAIN_SPLIT = "train"


def is_hf_folder(path: Path) -> bool:
    """Whether ``path`` is a ``save_to_disk`` folder of a ``Dataset`` or a ``DatasetDict``."""
    return all((path / name).is_file() for name in HF_DATASET_FILES) or (path / HF_DATASET_DICT_FILE).is_file()


def read_hf_folder(path: Path) -> Table:
    """A ``save_to_disk`` folder as a table (a ``DatasetDict``'s ``train`` split); label ids become names."""
    from datasets import ClassLabel, DatasetDict, load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise DataError(f"not a readable dataset folder ({exc})", path=path) from None
    if isinstance(dataset, DatasetDict):
        if TRAIN_SPLIT not in dataset:
            raise DataError(f"the dataset has no {TRAIN_SPLIT!r} split, only {sorted(dataset)}", path=path)
        dataset = dataset[TRAIN_SPLIT]
    if len(dataset) == 0:
        raise DataError("no records (the dataset is empty)", path=path)
    names = {column: feature.names for column, feature in dataset.features.items() if isinstance(feature, ClassLabel)}
    records = []
    for row, values in enumerate(dataset.to_list(), start=1):
        for column, labels in names.items():
            index = values[column]
            values[column] = labels[index] if isinstance(index, int) and 0 <= index < len(labels) else index
        records.append(Record(row, values=values))
    return Table(str(path), list(dataset.column_names), records)


def read_synthetic_table(path: str | Path) -> Table:
    """The rows of a synthetic set: a file in any supported format, or a dataset folder (see the module)."""
    path = Path(path)
    if not path.is_dir():
        return read_table(path)
    if is_hf_folder(path):
        return read_hf_folder(path)
    for name in TRAIN_FILES:
        if (path / name).is_file():
            return read_table(path / name)
    expected = " or ".join(TRAIN_FILES)
    raise DataError(f"folder holds no dataset: expected a save_to_disk folder or {expected}", path=path)


def task_columns(task: TaskSpec, table: Table) -> ColumnMap:
    """The columns ``task`` reads from ``table``: its own when the table has them, else detected ones."""
    if has_columns(table, task.columns):
        return task.columns
    return detect_columns(table.columns, pair=task.pair, source=table.source)


def load_synthetic_examples(task: TaskSpec, path: str | Path) -> list[Example]:
    """The validated examples of a synthetic file or dataset folder (a file reads as ``load_split`` reads it)."""
    path = Path(path)
    if not path.is_dir():
        return load_split(task, path)
    table = read_synthetic_table(path)
    columns = task.columns if has_columns(table, task.columns) else None
    return examples_from_table(table, columns=columns, labels=task.labels, pair=task.pair)
