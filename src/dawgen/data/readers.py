"""Reading and writing labelled examples: TSV (LM-BFF/GLUE), CSV, JSON Lines, JSON.

Every problem raises ``DataError`` naming the file, the row and the field. Rows are counted from 1,
as a user sees them: in TSV/CSV the first data row is row 1 (a problem in the header names the
header, not a row); in JSON Lines the row is the line number; in a JSON list it is the index + 1;
in a PPFT pool (``{"0": {...}}``) it is the record's key.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dawgen.data.example import ColumnMap, DataError, Example
from dawgen.utils.io import atomic_write_text

if TYPE_CHECKING:
    from dawgen.tasks.schema import TaskSpec

PAIR_ALIASES: tuple[tuple[str, str], ...] = (
    ("text_a", "text_b"), ("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"),
    ("question", "sentence"), ("sentence_A", "sentence_B"), ("#1 String", "#2 String"), ("text1", "text2"),
)  # fmt: skip
SINGLE_ALIASES: tuple[str, ...] = ("text", "sentence", "text_a", "sentence1")
LABEL_ALIASES: tuple[str, ...] = ("gold_label", "label", "is_duplicate", "Quality", "entailment_label")


@dataclass(frozen=True)
class Record:
    """One row before it becomes an example: a mapping (JSON) or the raw fields of a delimited row."""

    row: int | None
    values: Mapping[str, Any] | None = None
    fields: Sequence[str] | None = None


@dataclass(frozen=True)
class Table:
    """The rows of one source. ``columns`` is the header, or the keys of the first JSON record."""

    source: str
    columns: Sequence[str]
    records: Sequence[Record]
    delimited: bool = False


# ---------------------------------------------------------------- parsing files into tables


def _read_text(path: Path, first_row: int | None) -> str:
    """The file decoded as UTF-8 (BOM allowed). A bad byte's row is its line index + ``first_row``
    (``first_row=0``: the first line is a header, so a bad byte there names the header, not row 0)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("is a directory, not a data file", path=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start)
        row = None if first_row is None or line + first_row < 1 else line + first_row
        header = " (the header)" if first_row == 0 and line == 0 else ""
        message = f"not valid UTF-8: byte 0x{data[exc.start]:02x} on line {line + 1}{header}; save the file as UTF-8"
        raise DataError(message, path=path, row=row) from None


def _delimited_table(path: Path, rows: Iterable[tuple[int, list[str]]]) -> Table:
    """A table from (row, fields) pairs; the first non-empty one is the header."""
    rows = [(row, fields) for row, fields in rows if fields and fields != [""]]
    if not rows:
        raise DataError("file is empty", path=path)
    (header_row, header), body = rows[0], rows[1:]
    header = [name.strip() for name in header]
    for i, name in enumerate(header):
        if name in header[:i]:
            raise DataError(
                f"duplicate column name {name!r} in the header (line {header_row + 1})", path=path, field=name
            )
    if not body:
        raise DataError("no data rows (only a header)", path=path)
    return Table(str(path), header, [Record(row, fields=fields) for row, fields in body], delimited=True)


def _parse_tsv(path: Path) -> Table:
    """LM-BFF/GLUE TSV: split each line on tabs, no quoting; CRLF tolerated."""
    lines = _read_text(path, first_row=0).split("\n")
    return _delimited_table(path, ((i, line.rstrip("\r").split("\t")) for i, line in enumerate(lines)))


def _parse_csv(path: Path) -> Table:
    """Standard CSV with ``"`` quoting."""
    reader = csv.reader(io.StringIO(_read_text(path, first_row=0), newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            rows.append((len(rows), fields))
    except csv.Error as exc:
        where = {"row": len(rows)} if rows else {}  # no rows yet: the header itself
        header = "" if rows else " in the header"
        raise DataError(f"bad CSV{header} ({exc}); is a quote left open?", path=path, **where) from None
    return _delimited_table(path, rows)


def _object(value: Any, path: Path, row: int | None) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise DataError(f"expected a JSON object, got {type(value).__name__}", path=path, row=row)
    return value


def _parse_jsonl(path: Path) -> Table:
    """JSON Lines: one object per line; blank lines are skipped."""
    records = []
    for number, line in enumerate(_read_text(path, first_row=1).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg} (column {exc.colno})", path=path, row=number) from None
        records.append(Record(number, values=_object(value, path, number)))
    return _json_table(path, records)


def _parse_json(path: Path) -> Table:
    """A JSON list of objects, or a PPFT pool ``{"0": {...}, "1": {...}}``."""
    text = _read_text(path, first_row=None)
    if not text.strip():
        raise DataError("file is empty", path=path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", path=path) from None
    if isinstance(data, list):
        items = [(i + 1, value) for i, value in enumerate(data)]
    elif isinstance(data, dict):
        items = [(int(key) if key.isdecimal() else i + 1, value) for i, (key, value) in enumerate(data.items())]
    else:
        raise DataError(f"expected a list of objects or a pool object, got {type(data).__name__}", path=path)
    return _json_table(path, [Record(row, values=_object(value, path, row)) for row, value in items])


def _json_table(path: Path, records: list[Record]) -> Table:
    if not records:
        raise DataError("no records (the file holds no data)", path=path)
    return Table(str(path), list(records[0].values or {}), records)


_PARSERS = {".tsv": _parse_tsv, ".csv": _parse_csv, ".jsonl": _parse_jsonl, ".json": _parse_json}


def read_table(path: str | Path) -> Table:
    """Parse a .tsv/.csv/.jsonl/.json file into a ``Table`` (no column interpretation yet)."""
    path = Path(path)
    parser = _PARSERS.get(path.suffix.lower())
    if parser is None:
        hint = " (a .txt file has no labels: use read_texts)" if path.suffix.lower() == ".txt" else ""
        raise DataError(f"unsupported file type {path.suffix!r}; use one of {', '.join(_PARSERS)}{hint}", path=path)
    return parser(path)


# ---------------------------------------------------------------- columns


def _find_pair(names: Sequence[str]) -> tuple[str, str] | None:
    return next(((a, b) for a, b in PAIR_ALIASES if a in names and b in names), None)


def _first_text_column(names: Sequence[str], source: str | None) -> str:
    """The first text of a known pair, else a known single-text column."""
    found_pair = _find_pair(names)
    text = found_pair[0] if found_pair else next((name for name in SINGLE_ALIASES if name in names), None)
    if text is None:
        known = [*SINGLE_ALIASES, *(a for a, _ in PAIR_ALIASES)]
        raise DataError(f"no text column; expected one of {known}, found {list(names)}", path=source)
    return text


def detect_columns(names: Sequence[str], *, pair: bool | None = None, source: str | None = None) -> ColumnMap:
    """Guess the text and label columns from known names (see the ``*_ALIASES`` constants)."""
    found_pair = _find_pair(names)
    if pair is True and found_pair is None:
        known = ", ".join(f"{a}/{b}" for a, b in PAIR_ALIASES)
        raise DataError(f"a sentence-pair task needs two text columns ({known}); found {list(names)}", path=source)
    label = next((name for name in LABEL_ALIASES if name in names), None)
    if label is None:
        raise DataError(f"no label column; expected one of {list(LABEL_ALIASES)}, found {list(names)}", path=source)
    if found_pair is not None and pair is not False:
        return ColumnMap(found_pair[0], found_pair[1], label)
    return ColumnMap(_first_text_column(names, source), None, label)


def _resolve_columns(table: Table, columns: ColumnMap | None, pair: bool | None) -> ColumnMap:
    """The columns to read: given or detected, with ``text_b`` dropped for single-text reading."""
    if columns is None:
        columns = detect_columns(table.columns, pair=pair, source=table.source)
        if table.delimited and columns.label == "gold_label" and table.columns[-1] == "gold_label":
            columns = replace(columns, label_from_last_field=True)  # GLUE MNLI/SNLI, ragged rows
    elif columns.label_from_last_field and not _label_is_last(table, columns.label):
        columns = replace(columns, label_from_last_field=False)  # e.g. SNLI's CSV, gold_label first
    if pair is True and columns.text_b is None:
        raise DataError("a sentence-pair task needs a text_b column, but none is configured", path=table.source)
    if pair is False and columns.text_b is not None:
        columns = replace(columns, text_b=None)
    missing = [name for name in _needed(columns) if name not in table.columns]
    if missing:
        message = f"no column {missing[0]!r}; available columns: {list(table.columns)}"
        raise DataError(message, path=table.source, field=missing[0])
    return columns


def _label_is_last(table: Table, label: str | None) -> bool:
    """Whether "the last field" can stand for the label: a delimited file whose header ends with it (or lacks it)."""
    return table.delimited and (label not in table.columns or table.columns[-1] == label)


def _needed(columns: ColumnMap) -> list[str]:
    """The column names that must be present (not the label when it is the last field)."""
    names = [columns.text_a, columns.text_b, None if columns.label_from_last_field else columns.label]
    return [name for name in names if name is not None]


def has_columns(table: Table, columns: ColumnMap) -> bool:
    """Whether every column ``columns`` names is in ``table``."""
    return all(name in table.columns for name in _needed(columns))


# ---------------------------------------------------------------- records to examples


def _values(record: Record, table: Table, columns: ColumnMap) -> tuple[Mapping[str, Any], Any]:
    """The record as a mapping, and its raw label (the last field when ``label_from_last_field``)."""
    if record.fields is None:
        values = record.values or {}
    else:
        n, got = len(table.columns), len(record.fields)
        if got < n or (got > n and not columns.label_from_last_field):
            hint = " (is a tab inside a text?)" if got > n else ""
            message = f"ragged row: {got} fields, but the header has {n}{hint}"
            raise DataError(message, path=table.source, row=record.row)
        values = dict(zip(table.columns, record.fields, strict=False))
        if columns.label_from_last_field:
            return values, record.fields[-1]
    return values, values.get(columns.label) if columns.label else None


def _text(values: Mapping[str, Any], name: str, table: Table, row: int | None) -> str:
    if name not in values:
        raise DataError(f"record has no key {name!r}; it has {list(values)}", path=table.source, row=row, field=name)
    text = values[name]
    if not isinstance(text, str):
        raise DataError(f"text must be a string, got {type(text).__name__}", path=table.source, row=row, field=name)
    if not text.strip():
        raise DataError("empty text", path=table.source, row=row, field=name)
    return text


def _label(raw: Any, labels: Sequence[str] | None, table: Table, row: int | None, field: str) -> str:
    """Normalize a label (numbers and booleans become strings) and check it against ``labels``."""
    if isinstance(raw, int | float):  # bool is an int: True -> "1"
        raw = str(int(raw)) if float(raw).is_integer() else str(raw)
    if not isinstance(raw, str):
        kind = "missing" if raw is None else f"a {type(raw).__name__}"
        raise DataError(f"label must be a string or number, got {kind}", path=table.source, row=row, field=field)
    label = raw.strip()
    if not label:
        raise DataError("empty label", path=table.source, row=row, field=field)
    if labels is not None and label not in labels:
        expected = f"expected one of {list(labels)}"
        raise DataError(f"unknown label {label!r}; {expected}", path=table.source, row=row, field=field)
    return label


def examples_from_table(
    table: Table,
    *,
    columns: ColumnMap | None = None,
    labels: Sequence[str] | None = None,
    pair: bool | None = None,
) -> list[Example]:
    """Turn a table into validated examples (see ``read_examples`` for the arguments)."""
    columns = _resolve_columns(table, columns, pair)
    label_field = columns.label or "label"
    unlabelled = columns.label is None and not columns.label_from_last_field
    examples = []
    for record in table.records:
        values, raw_label = _values(record, table, columns)
        label = "" if unlabelled else _label(raw_label, labels, table, record.row, label_field)
        text_a = _text(values, columns.text_a, table, record.row)
        text_b = _text(values, columns.text_b, table, record.row) if columns.text_b else None
        examples.append(Example(text_a=text_a, label=label, text_b=text_b))
    return examples


def read_examples(
    path: str | Path,
    *,
    columns: ColumnMap | None = None,
    labels: Sequence[str] | None = None,
    pair: bool | None = None,
) -> list[Example]:
    """Read labelled examples from a .tsv, .csv, .jsonl or .json file.

    ``columns`` None detects the columns from known names. ``labels`` restricts the allowed labels.
    ``pair`` True requires two texts, False reads only the first, None follows the columns.
    """
    return examples_from_table(read_table(path), columns=columns, labels=labels, pair=pair)


def load_split(task: TaskSpec, path: str | Path) -> list[Example]:
    """Read a file for ``task``: its own columns when the file has them, else detected ones."""
    table = read_table(path)
    columns = task.columns if has_columns(table, task.columns) else None
    return examples_from_table(table, columns=columns, labels=task.labels, pair=task.pair)


def read_texts(path: str | Path, column: str | None = None) -> list[str]:
    """Unlabelled texts (e.g. a pool of first sentences): one per line of a .txt, or one column of a table.

    Without ``column`` the first text column is detected (``text_a`` of a pair).
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        lines = _read_text(path, first_row=1).split("\n")
        texts = [line.rstrip("\r") for line in lines if line.strip()]
        if not texts:
            raise DataError("file is empty", path=path)
        return texts
    table = read_table(path)
    columns = ColumnMap(column or _first_text_column(table.columns, table.source), None, None)
    return [example.text_a for example in examples_from_table(table, columns=columns, pair=False)]


def read_unlabelled(task: TaskSpec, path: str | Path) -> list[Example]:
    """The inputs of a file for ``task`` with their labels left unread (every ``label`` is ""): a pair per row
    for a pair task (the task's own text columns when the file has them, else detected ones), else one text;
    a .txt file holds one text a line (single-text tasks only)."""
    path = Path(path)
    if path.suffix.lower() == ".txt":
        if task.pair:
            message = f"{task.name} is a sentence-pair task, but a .txt file holds single texts; give a table of pairs"
            raise DataError(message, path=path)
        return [Example(text, "") for text in read_texts(path)]
    table = read_table(path)
    own = replace(task.columns, label=None, label_from_last_field=False)
    if has_columns(table, own):
        columns = own
    elif task.pair:
        found = _find_pair(table.columns)
        if found is None:
            known = ", ".join(f"{a}/{b}" for a, b in PAIR_ALIASES)
            raise DataError(f"no pair of text columns ({known}); found {list(table.columns)}", path=table.source)
        columns = ColumnMap(found[0], found[1], None)
    else:
        columns = ColumnMap(_first_text_column(table.columns, table.source), None, None)
    return examples_from_table(table, columns=columns, pair=task.pair)


# ---------------------------------------------------------------- writing


def write_examples_tsv(path: str | Path, examples: Sequence[Example]) -> Path:
    """Write ``text_a[, text_b], label`` as an LM-BFF-style TSV (atomically). Texts may not hold tabs/newlines."""
    pair = any(example.text_b is not None for example in examples)
    header = ["text_a", "text_b", "label"] if pair else ["text_a", "label"]
    lines = ["\t".join(header)]
    for row, example in enumerate(examples, start=1):
        fields = {"text_a": example.text_a, "text_b": example.text_b or "", "label": example.label}
        for name, value in fields.items():
            if any(c in value for c in "\t\r\n"):
                raise DataError("a TSV field cannot hold a tab or newline; use JSONL", path=path, row=row, field=name)
        lines.append("\t".join(fields[name] for name in header))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_examples_jsonl(path: str | Path, examples: Sequence[Example]) -> Path:
    """Write one ``{"text_a", ["text_b",] "label"}`` object per line (atomically)."""
    records = ({"text_a": e.text_a, "text_b": e.text_b, "label": e.label} for e in examples)
    lines = (json.dumps({k: v for k, v in r.items() if v is not None}, ensure_ascii=False) + "\n" for r in records)
    return atomic_write_text(path, "".join(lines))
