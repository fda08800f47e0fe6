"""The unit of data: one labelled text or text pair, and the error raised on bad input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Example:
    """One labelled example. ``text_b`` is ``None`` for single-sentence tasks."""

    text_a: str
    label: str
    text_b: str | None = None


class DataError(ValueError):
    """Bad input data, located as precisely as possible (file, row, field).

    ``row`` is 1-based and counts data rows as a user sees them in the file: for files with a
    header the first row after it is row 1 (a problem in the header gives no row; the message
    says so); for JSON Lines it is the line number.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.row = row
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


@dataclass(frozen=True)
class ColumnMap:
    """Which columns (or JSON keys) hold the two texts and the label.

    ``label_from_last_field`` follows LM-BFF for ragged GLUE files (SNLI rows carry up to five
    annotator labels): the label is the last field of each row, whatever its length.
    """

    text_a: str
    text_b: str | None = None
    label: str | None = "label"
    label_from_last_field: bool = False
