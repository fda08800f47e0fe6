"""Reading, validating and sampling few-shot data."""

from dawgen.data.example import ColumnMap, DataError, Example
from dawgen.data.hub import examples_from_dataset, load_hub_dataset
from dawgen.data.kshot import KShotSplit, find_kshot_folder, load_kshot_folder, sample_kshot, save_kshot
from dawgen.data.readers import (
    detect_columns,
    load_split,
    read_examples,
    read_texts,
    write_examples_jsonl,
    write_examples_tsv,
)

__all__ = [
    "ColumnMap", "DataError", "Example", "KShotSplit", "detect_columns", "examples_from_dataset",
    "find_kshot_folder", "load_hub_dataset", "load_kshot_folder", "load_split", "read_examples",
    "read_texts", "sample_kshot", "save_kshot", "write_examples_jsonl", "write_examples_tsv",
]  # fmt: skip
