"""Bad input: every error names the file, and the row and field where they apply."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dawgen.data import ColumnMap, DataError, load_split, read_examples, read_texts
from dawgen.tasks import BUILTIN_TASKS

HEADER = "sentence1\tsentence2\tlabel\n"
LABELS = ("yes", "no")


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def fails(path: Path, *, row: int | None = None, field: str | None = None, says: str = "", **kwargs) -> DataError:
    """Read ``path`` expecting a DataError that locates the problem; return it for further checks."""
    reader = kwargs.pop("reader", read_examples)
    with pytest.raises(DataError) as info:
        reader(path, **kwargs)
    error, message = info.value, str(info.value)
    assert error.path == str(path) and message.startswith(str(path)), message
    assert error.row == row, message
    if row is not None:
        assert f"row {row}" in message
    assert error.field == field, message
    if field is not None:
        assert f"field '{field}'" in message
    assert says in message, message
    return error


def test_unknown_label(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", HEADER + "a\tb\tyes\na\tb\tmaybe\n")
    fails(path, row=2, field="label", says="unknown label 'maybe'; expected one of ['yes', 'no']", labels=LABELS)


def test_missing_column_lists_available_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", HEADER + "a\tb\tyes\n")
    columns = ColumnMap("premise", "hypothesis", "label")
    fails(path, field="premise", says="no column 'premise'; available columns: ['sentence1', 'sentence2', 'label']",
          columns=columns)  # fmt: skip


def test_no_label_column_detected(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "sentence1\tsentence2\tscore\na\tb\t1\n")
    fails(path, says="no label column; expected one of ['gold_label', 'label'")


def test_pair_requested_without_second_text(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "text,label\nhello,yes\n")
    fails(path, says="a sentence-pair task needs two text columns", pair=True)
    fails(path, says="needs a text_b column", pair=True, columns=ColumnMap("text", None, "label"))


def test_empty_first_text(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", HEADER + "a\tb\tyes\n  \tb\tno\n")
    fails(path, row=2, field="sentence1", says="empty text")


def test_empty_second_text(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", HEADER + "a\t\tyes\n")
    fails(path, row=1, field="sentence2", says="empty text")


def test_empty_label(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", HEADER + "a\tb\tyes\na\tb\t \n")
    fails(path, row=2, field="label", says="empty label")


def test_ragged_row_too_few_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", HEADER + "a\tb\tyes\na\tb\n")
    fails(path, row=2, says="ragged row: 2 fields, but the header has 3")


def test_ragged_row_too_many_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", HEADER + "a\tb\tc\tyes\n")
    fails(path, row=1, says="ragged row: 4 fields, but the header has 3 (is a tab inside a text?)")


def test_ragged_rows_allowed_only_with_label_from_last_field(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "sentence1\tsentence2\tlabel1\tgold_label\na\tb\tx\ty\tyes\na\tb\tno\n")
    columns = ColumnMap("sentence1", "sentence2", "gold_label", label_from_last_field=True)
    fails(path, row=2, says="ragged row: 3 fields, but the header has 4", columns=columns)


def test_invalid_utf8_names_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", HEADER.encode() + b"a\tb\tyes\ncaf\xe9\tb\tno\n")
    fails(path, row=2, says="not valid UTF-8: byte 0xe9 on line 3")


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_a_binary_file_names_the_header_not_row_0(tmp_path: Path, suffix: str) -> None:
    """Rows count from 1 everywhere: a bad byte in a header (e.g. a binary file) says so, not "row 0"."""
    error = fails(write(tmp_path / f"a{suffix}", b"\x89PNG\r\n\x1a\n\x00\x00"), says="byte 0x89 on line 1 (the header)")
    assert "row 0" not in str(error)


def test_bad_quote_in_a_csv_header_names_the_header(tmp_path: Path) -> None:
    error = fails(write(tmp_path / "a.csv", '"text,label\nfine,yes\n'), says="bad CSV in the header")
    assert "row 0" not in str(error)


def test_invalid_utf8_in_jsonl_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", b'{"text": "a", "label": "yes"}\n{"text": "\xff", "label": "no"}\n')
    fails(path, row=2, says="not valid UTF-8")


def test_invalid_json_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"text": "a", "label": "yes"}\n\n{"text": "b", "label": }\n')
    fails(path, row=3, says="invalid JSON: Expecting value")


def test_invalid_json_file(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '[\n{"text": "a", "label": "yes"},\n{"text": "b"\n]')
    fails(path, says="invalid JSON: Expecting ',' delimiter at line 4")


def test_record_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"text": "a", "label": "yes"}\n["b", "no"]\n')
    fails(path, row=2, says="expected a JSON object, got list")


def test_json_top_level_not_a_list_or_pool(tmp_path: Path) -> None:
    fails(write(tmp_path / "a.json", '"just a string"'), says="expected a list of objects or a pool object, got str")


def test_pool_record_not_an_object_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", json.dumps({"0": {"text_a": "a", "text_b": "b", "label": "yes"}, "7": "oops"}))
    fails(path, row=7, says="expected a JSON object, got str")


def test_pool_record_missing_key(tmp_path: Path) -> None:
    pool = {"0": {"text_a": "a", "text_b": "b", "label": "yes"}, "12": {"text_a": "a", "label": "no"}}
    path = write(tmp_path / "a.json", json.dumps(pool))
    fails(path, row=12, field="text_b", says="record has no key 'text_b'; it has ['text_a', 'label']")


def test_text_not_a_string(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", json.dumps([{"text": "a", "label": "yes"}, {"text": 42, "label": "no"}]))
    fails(path, row=2, field="text", says="text must be a string, got int")


def test_label_of_wrong_type_or_missing(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"text": "a", "label": ["yes"]}\n')
    fails(path, row=1, field="label", says="label must be a string or number, got a list")
    path = write(tmp_path / "b.jsonl", '{"text": "a", "label": "yes"}\n{"text": "b", "label": null}\n')
    fails(path, row=2, field="label", says="label must be a string or number, got missing")


@pytest.mark.parametrize(
    ("suffix", "text", "says"),
    [(".tsv", "\n", "file is empty"), (".csv", "", "file is empty"), (".jsonl", "\n\n", "no records"),
     (".json", "", "file is empty"), (".json", "[]", "no records")],
)  # fmt: skip
def test_empty_file(tmp_path: Path, suffix: str, text: str, says: str) -> None:
    fails(write(tmp_path / f"a{suffix}", text), says=says)


def test_header_without_rows(tmp_path: Path) -> None:
    fails(write(tmp_path / "a.tsv", "\ufeff" + HEADER), says="no data rows (only a header)")


def test_duplicate_header_names(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "text,label,text\na,yes,b\n")
    error = fails(path, field="text", says="duplicate column name 'text' in the header (line 1)")
    assert "row 0" not in str(error)


def test_unsupported_suffix(tmp_path: Path) -> None:
    fails(write(tmp_path / "a.xlsx", "x"), says="unsupported file type '.xlsx'; use one of .tsv, .csv, .jsonl, .json")
    fails(write(tmp_path / "a.txt", "x"), says="a .txt file has no labels: use read_texts")


def test_file_not_found(tmp_path: Path) -> None:
    fails(tmp_path / "missing.tsv", says="file not found")
    fails(tmp_path / "missing.txt", says="file not found", reader=read_texts)


def test_unterminated_csv_quote(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'text,label\nfine,yes\n"never closed,no\nmore,yes\n')
    fails(path, row=2, says="bad CSV (unexpected end of data); is a quote left open?")


def test_read_texts_without_a_text_column(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"body": "a"}\n')
    fails(path, says="no text column; expected one of ['text', 'sentence'", reader=read_texts)


def test_load_split_rejects_other_tasks_labels(tmp_path: Path) -> None:
    """SICK labels are upper case; lower-case NLI labels are not SICK's."""
    path = write(tmp_path / "a.tsv", "pair_ID\tsentence_A\tsentence_B\tentailment_label\n1\ta\tb\tneutral\n")
    with pytest.raises(DataError, match=r"row 1, field 'entailment_label': unknown label 'neutral'"):
        load_split(BUILTIN_TASKS["SICK"], path)
