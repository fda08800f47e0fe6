"""Examples from Hugging Face ``datasets`` (optional; local files are the default everywhere)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dawgen.data.example import ColumnMap, DataError, Example
from dawgen.data.readers import Record, Table, detect_columns, examples_from_table

NO_LABEL = -1  # datasets' ClassLabel value for "no gold label" (e.g. SNLI pairs without consensus)


def _label_names(dataset: Any, label: str | None, label_names: Sequence[str] | None) -> list[str] | None:
    """The names of integer labels: ``label_names`` if given, else the ClassLabel feature's names."""
    if label_names is not None:
        return list(label_names)
    feature = (getattr(dataset, "features", None) or {}).get(label) if label else None
    names = getattr(feature, "names", None)  # a datasets.ClassLabel
    return list(names) if names is not None else None


def _named_label(raw: Any, names: list[str] | None, source: str, row: int, field: str) -> Any:
    """Map an integer label to its name; other values pass through unchanged."""
    if names is None or not isinstance(raw, int) or isinstance(raw, bool):
        return raw
    if not 0 <= raw < len(names):
        raise DataError(f"label index {raw} is out of range for label names {names}", path=source, row=row, field=field)
    return names[raw]


def examples_from_dataset(
    dataset: Any,
    *,
    columns: ColumnMap | None = None,
    label_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    pair: bool | None = None,
    source: str = "dataset",
) -> list[Example]:
    """Convert a ``datasets.Dataset`` into examples; integer (ClassLabel) labels become their names.

    Rows labelled -1 (no gold label) are dropped. Rows are numbered from 1 in error messages.
    """
    names = list(dataset.column_names)
    columns = columns or detect_columns(names, pair=pair, source=source)
    label = columns.label
    classes = _label_names(dataset, label, label_names)
    records = []
    for row, values in enumerate(dataset.to_list(), start=1):
        if label is not None and label in values:
            if classes is not None and values[label] == NO_LABEL:
                continue
            values = {**values, label: _named_label(values[label], classes, source, row, label)}
        records.append(Record(row, values=values))
    if not records:
        raise DataError("no labelled rows", path=source)
    return examples_from_table(Table(source, names, records), columns=columns, labels=labels, pair=pair)


def load_hub_dataset(
    name: str,
    split: str,
    *,
    config: str | None = None,
    columns: ColumnMap | None = None,
    label_names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    pair: bool | None = None,
) -> list[Example]:
    """Load ``name`` (with ``config``) from the Hugging Face hub and convert one split to examples."""
    source = f"{name}{'/' + config if config else ''}[{split}]"
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        raise DataError("reading from the Hugging Face hub needs the 'datasets' package", path=source) from None
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as exc:
        raise DataError(
            f"could not load from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            "if you are offline, use a local file or a dataset already in the datasets cache",
            path=source,
        ) from exc
    return examples_from_dataset(
        dataset, columns=columns, label_names=label_names, labels=labels, pair=pair, source=source
    )
