"""``dawgen export``: a synthetic set as a Hugging Face dataset, CSV or JSON Lines, with a dataset card.

The input is any set ``load_synthetic`` reads (dawgen's JSONL, FewGen's ``gen-train.json``, an exported
folder); the card says where the set came from (``dawgen.synthesis.provenance``).

The output folder (written through a temporary sibling renamed into place, so it is whole or absent):

- ``hf``: a ``datasets.Dataset`` saved with ``save_to_disk`` (``text_a``, ``text_b`` strings, ``label`` a
  ``ClassLabel`` with the task's label names in the task table's order, then the scalar metadata columns);
- ``csv`` / ``jsonl``: ``train.csv`` / ``train.jsonl``, the label as its name;

and in every case ``README.md`` (a dataset card: YAML header with ``dataset_info`` and ``configs`` as the
hub expects, then Markdown) and ``provenance.json`` (the card's facts as JSON). ``push`` uploads the folder
to the hub (``Dataset.push_to_hub`` for ``hf``, then the card).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dawgen.config import ConfigError
from dawgen.data.dataset_folder import read_synthetic_table, task_columns
from dawgen.data.example import DataError, Example
from dawgen.data.readers import Table, examples_from_table
from dawgen.data.synthetic import is_verbatim_copy
from dawgen.synthesis.dataset_card import CARD_FILE, DATA_FILES, PROVENANCE_FILE, card_text
from dawgen.synthesis.provenance import build_provenance, source_kind, summary_of
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_dir

if TYPE_CHECKING:
    from datasets import Dataset

FORMATS = ("hf", "csv", "jsonl")
TEXT_COLUMNS = ("text_a", "text_b", "label")


class ExportError(ValueError):
    """An export that cannot be done as asked (shown as one line by the CLI)."""


@dataclass
class ExportOutcome:
    """A finished export: the folder, its files, the provenance recorded in the card, the hub URL if pushed."""

    path: Path
    format: str
    files: list[str]
    provenance: dict[str, Any]
    url: str | None = None


@dataclass
class SourceSet:
    """The rows of a synthetic set: examples and their scalar metadata columns (name -> (dtype, values))."""

    examples: list[Example]
    metadata: dict[str, tuple[str, list[Any]]]
    left_out: list[str]  # metadata columns that are not one scalar type (lists, mappings, mixed types)
    verbatim_copies: int
    dropped_copies: int
    columns: list[str]  # of the file as read


# ---------------------------------------------------------------- reading the set and its metadata


def _cell_values(table: Table) -> list[dict[str, Any]]:
    if not table.delimited:
        return [dict(record.values or {}) for record in table.records]
    rows = []
    for record in table.records:  # CSV/TSV cells are strings; an empty cell is a missing value
        fields = record.fields or []
        rows.append(
            {name: (value if value != "" else None) for name, value in zip(table.columns, fields, strict=False)}
        )
    return rows


def _dtype(values: Sequence[Any]) -> str | None:
    """The ``datasets`` dtype of a metadata column, or None when it is not one scalar type."""
    kinds = {type(value) for value in values if value is not None}
    if not kinds:
        return None
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        return "int64"
    if kinds <= {int, float}:
        return "float64"
    if kinds == {str}:
        return "string"
    return None


def read_source(task: TaskSpec, path: str | Path, *, drop_copies: bool = False) -> SourceSet:
    """The validated examples of a synthetic set and its scalar metadata columns, row by row."""
    table = read_synthetic_table(path)
    columns = task_columns(task, table)
    examples = examples_from_table(table, columns=columns, labels=task.labels, pair=task.pair)
    rows = _cell_values(table)
    copies = [is_verbatim_copy(example) for example in examples]
    keep = [not (drop_copies and copy) for copy in copies]
    used = {columns.text_a, columns.text_b, columns.label, *TEXT_COLUMNS}
    names = [name for name in dict.fromkeys(key for row in rows for key in row) if name not in used]
    found: dict[str, tuple[str, list[Any]]] = {}
    left_out = []
    for name in names:
        values = [row.get(name) for row, kept in zip(rows, keep, strict=True) if kept]
        dtype = _dtype(values)
        if dtype is None:
            left_out.append(name)
        else:
            found[name] = (dtype, [float(v) if dtype == "float64" and v is not None else v for v in values])
    kept_examples = [example for example, kept in zip(examples, keep, strict=True) if kept]
    dropped = len(examples) - len(kept_examples)
    return SourceSet(kept_examples, found, left_out, sum(copies), dropped, list(table.columns))


def resolve_export_task(path: Path, task: str | TaskSpec | None, summary: dict[str, Any] | None) -> TaskSpec:
    """``task``, else the task named by the summary, else the one ``inspect-synthetic`` infers from the path."""
    from dawgen.data.sources import demo_task
    from dawgen.tasks.registry import BUILTIN_TASKS, get_task

    named = summary.get("task") if summary else None
    if task is not None:
        spec = task if isinstance(task, TaskSpec) else get_task(task)
    elif named == demo_task().name:
        spec = demo_task()
    elif named in BUILTIN_TASKS:
        spec = BUILTIN_TASKS[named]
    else:
        from dawgen.synthesis.quality import infer_task

        spec = infer_task(path)
    if named and named != spec.name:
        raise ExportError(f"{path}: its summary says it was generated for task {named!r}, not {spec.name!r}")
    return spec


# ---------------------------------------------------------------- provenance


# ---------------------------------------------------------------- the dataset and its card


def build_dataset(task: TaskSpec, source: SourceSet) -> Dataset:
    """The set as a typed ``datasets.Dataset`` (label ids in the task table's order), with its split info."""
    from datasets import ClassLabel, Dataset, Features, Value
    from datasets.splits import SplitDict, SplitInfo

    features: dict[str, Any] = {"text_a": Value("string")}
    data: dict[str, list[Any]] = {"text_a": [e.text_a for e in source.examples]}
    if task.pair:
        features["text_b"] = Value("string")
        data["text_b"] = [e.text_b for e in source.examples]
    features["label"] = ClassLabel(names=list(task.labels))
    data["label"] = [task.label_index(e.label) for e in source.examples]
    for name, (dtype, values) in source.metadata.items():
        features[name], data[name] = Value(dtype), values
    dataset = Dataset.from_dict(data, features=Features(features), split="train")
    size = dataset.data.nbytes
    dataset.info.splits = SplitDict({"train": SplitInfo("train", num_bytes=size, num_examples=len(dataset))})
    dataset.info.dataset_size = size
    return dataset


def _rows(task: TaskSpec, source: SourceSet) -> list[dict[str, Any]]:
    """The rows of the csv/jsonl files: the texts, the label name, the metadata."""
    rows = []
    for i, example in enumerate(source.examples):
        row: dict[str, Any] = {"text_a": example.text_a}
        if task.pair:
            row["text_b"] = example.text_b
        row["label"] = example.label
        row.update({name: values[i] for name, (_, values) in source.metadata.items()})
        rows.append(row)
    return rows


def write_csv(path: Path, task: TaskSpec, source: SourceSet) -> None:
    rows = _rows(task, source)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def write_jsonl(path: Path, task: TaskSpec, source: SourceSet) -> None:
    lines = (
        json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) for row in _rows(task, source)
    )
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def check_push(repo: str) -> None:
    """Refuse a ``push`` that cannot work before anything is written: a bad repo id, or offline mode."""
    import huggingface_hub.constants
    from huggingface_hub.utils import validate_repo_id

    validate_repo_id(repo)  # a ValueError naming the problem
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ExportError(f"--push {repo} needs the Hugging Face hub, but offline mode is on (HF_HUB_OFFLINE)")


def push_export(folder: Path, repo: str, fmt: str, dataset: Dataset, *, private: bool, token: str | None) -> str:
    """Upload an export to the dataset repo ``repo`` (created if needed); returns its URL.

    ``hf``: ``Dataset.push_to_hub`` (parquet under ``data/``), then the card and provenance over the README
    it writes; ``csv``/``jsonl``: the folder as it is."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    message = "dawgen export"
    try:
        if fmt == "hf":
            dataset.push_to_hub(repo, private=private, token=token, commit_message=message)
            api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset", commit_message=message,
                              allow_patterns=[CARD_FILE, PROVENANCE_FILE])  # fmt: skip
        else:
            api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
            api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="dataset", commit_message=message)
    except Exception as exc:  # network, authentication, permissions: one line, the local export stays
        raise ExportError(
            f"push to {repo} failed ({type(exc).__name__}: {exc}); the export in {folder} is complete"
        ) from None
    return f"https://huggingface.co/datasets/{repo}"


# ---------------------------------------------------------------- the whole export


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a folder that does not exist yet (or an empty one)")
    if out.is_dir() and any(out.iterdir()):
        raise ExportError(f"--out {out} exists and is not empty; choose another folder or remove it")


def export_synthetic(
    synthetic: str | Path, out: str | Path, *, fmt: str = "hf", task: str | TaskSpec | None = None,
    push: str | None = None, private: bool = False, token: str | None = None, drop_copies: bool = False,
) -> ExportOutcome:  # fmt: skip
    """Export a synthetic set (see the module) into the folder ``out``; every check runs before anything
    is written, and the folder appears whole or not at all. ``push``: also upload it to that hub dataset repo."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    path, out = Path(synthetic), Path(out)
    if not path.exists():
        raise DataError("file not found", path=path)
    check_out(out)
    if push is not None:
        check_push(push)
    _, summary = summary_of(path)
    spec = resolve_export_task(path, task, summary)
    source = read_source(spec, path, drop_copies=drop_copies)
    if not source.examples:
        raise DataError("no rows left to export (every row is a verbatim copy)", path=path)
    kind = source_kind(path, summary, source.columns)
    provenance = build_provenance(path, spec, source, fmt, kind)
    dataset = build_dataset(spec, source)
    with _quiet_datasets(), atomic_dir(out) as tmp:
        if fmt == "hf":
            dataset.save_to_disk(str(tmp))
        elif fmt == "csv":
            write_csv(tmp / DATA_FILES["csv"], spec, source)
        else:
            write_jsonl(tmp / DATA_FILES["jsonl"], spec, source)
        (tmp / CARD_FILE).write_text(card_text(dataset, provenance, fmt), encoding="utf-8")
        (tmp / PROVENANCE_FILE).write_text(
            json.dumps(provenance, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    url = push_export(out, push, fmt, dataset, private=private, token=token) if push is not None else None
    return ExportOutcome(out, fmt, files, provenance, url)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """``datasets``' progress bars off while writing, as they were afterwards."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
