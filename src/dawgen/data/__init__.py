"""Reading, validating and sampling few-shot data."""

from dawgen.data.example import ColumnMap, DataError, Example

__all__ = ["ColumnMap", "DataError", "Example"]
