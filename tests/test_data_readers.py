"""Readers and writers on every file format, on the real data in ../shared/data and on small files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from tests_support import DATA, needs_data

from dawgen.data import (
    ColumnMap,
    DataError,
    Example,
    detect_columns,
    examples_from_dataset,
    load_hub_dataset,
    load_split,
    read_examples,
    read_texts,
    write_examples_jsonl,
    write_examples_tsv,
)
from dawgen.tasks import BUILTIN_TASKS

NLI = ("entailment", "neutral", "contradiction")


def write(path: Path, text: str | bytes) -> Path:
    """Write ``text`` verbatim (no newline translation)."""
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


# ---------------------------------------------------------------- real data


@needs_data
@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("RTE/test.tsv", {"entailment": 146, "not_entailment": 131}),
        ("MRPC/test.tsv", {"0": 129, "1": 279}),
        ("QNLI/test.tsv", {"entailment": 2702, "not_entailment": 2761}),
        ("MNLI/dev_matched.jsonl", {"entailment": 3479, "neutral": 3123, "contradiction": 3213}),
        ("SNLI/dev.jsonl", {"entailment": 3329, "neutral": 3235, "contradiction": 3278}),
        ("SNLI/test.csv", {"entailment": 3368, "neutral": 3219, "contradiction": 3237}),
        ("SICK/trial.tsv", {"ENTAILMENT": 143, "NEUTRAL": 281, "CONTRADICTION": 71}),
        ("SICK/pool/train.tsv", {"ENTAILMENT": 1274, "NEUTRAL": 2524, "CONTRADICTION": 641}),
    ],
)
def test_evaluation_files(name: str, counts: dict[str, int]) -> None:
    examples = read_examples(DATA / name)
    assert Counter(e.label for e in examples) == counts
    assert all(e.text_a.strip() and e.text_b and e.text_b.strip() for e in examples)
    task = BUILTIN_TASKS[name.split("/")[0]]
    assert load_split(task, DATA / name) == examples


@needs_data
def test_first_rows_are_right() -> None:
    """BOMs are stripped (MRPC's first column is ``Quality``) and the texts land in the right fields."""
    mrpc = read_examples(DATA / "MRPC/test.tsv")[0]
    assert mrpc.label == "1" and mrpc.text_a.startswith("He said the foodservice pie business")
    snli = read_examples(DATA / "SNLI/test.csv")[0]
    assert snli == Example("This church choir sings to the masses as they sing joyous songs from the book at a church.",
                           "neutral", "The church has cracks in the ceiling.")  # fmt: skip
    mnli = read_examples(DATA / "MNLI/dev_matched.jsonl")[0]
    assert (mnli.text_a, mnli.label) == ("The new rights are nice enough", "neutral")


@needs_data
@pytest.mark.parametrize(("task", "rows"), [("RTE", 2240), ("MRPC", 3300), ("QNLI", 8999), ("QQP", 4990),
                                            ("MNLI", 8999), ("SNLI", 8999)])  # fmt: skip
def test_pools(task: str, rows: int) -> None:
    examples = load_split(BUILTIN_TASKS[task], DATA / task / "pool/train.json")
    assert len(examples) == rows
    texts = read_texts(DATA / task / "pool/train.json")
    assert texts == [e.text_a for e in examples]


@needs_data
@pytest.mark.parametrize(("task", "rows"), [("RTE", 10000), ("MRPC", 10000), ("QNLI", 10000), ("QQP", 10000),
                                            ("MNLI", 15000)])  # fmt: skip
def test_fewgen_synthetic(task: str, rows: int) -> None:
    examples = load_split(BUILTIN_TASKS[task], DATA / task / "fewgen-synthetic/16-13/gen-train.json")
    assert len(examples) == rows
    assert Counter(e.label for e in examples) == {label: 5000 for label in BUILTIN_TASKS[task].labels}


@needs_data
def test_sick_pool_texts() -> None:
    assert len(read_texts(DATA / "SICK/pool/train.tsv")) == 4439
    assert read_texts(DATA / "SICK/pool/train.tsv", column="sentence_B")[0].startswith("A group of boys")


@needs_data
def test_snli_ragged_rows_take_the_last_field() -> None:
    """SNLI rows with five annotator labels have 15 fields: the label is the last one (LM-BFF)."""
    path = DATA / "SNLI/k-shot/16-13/train.tsv"
    lines = path.read_text(encoding="utf-8").splitlines()
    ragged = [i for i, line in enumerate(lines) if len(line.split("\t")) == 15]
    assert ragged
    examples = read_examples(path)  # auto-detected, no task given
    for i in ragged:
        assert examples[i - 1].label == lines[i].split("\t")[-1]
    strict = ColumnMap("sentence1", "sentence2", "gold_label")
    with pytest.raises(DataError, match="ragged row: 15 fields, but the header has 11"):
        read_examples(path, columns=strict)


# ---------------------------------------------------------------- small files, every format


def test_tsv_crlf_bom_and_literal_quotes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", '\ufeffsentence1\tsentence2\tlabel\r\n"Hi," he said\tx\t yes \r\n')
    assert read_examples(path) == [Example('"Hi," he said', "yes", "x")]


def test_csv_with_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", '\ufefflabel,text\r\n1,"a, b"\r\n0,"two\nlines ""quoted"""\r\n')
    assert read_examples(path) == [Example("a, b", "1"), Example('two\nlines "quoted"', "0")]


def test_jsonl_and_json_labels_become_strings(tmp_path: Path) -> None:
    rows = [{"premise": "p", "hypothesis": "h", "label": 1}, {"premise": "q", "hypothesis": "i", "label": True}]
    jsonl = write(tmp_path / "a.jsonl", "".join(json.dumps(r) + "\n" for r in rows) + "\n")
    as_list = write(tmp_path / "b.json", json.dumps(rows))
    pool = write(tmp_path / "c.json", json.dumps({str(i): r for i, r in enumerate(rows)}))
    expected = [Example("p", "1", "h"), Example("q", "1", "i")]
    assert read_examples(jsonl) == read_examples(as_list) == read_examples(pool) == expected


def test_pair_forcing_and_explicit_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", "id\tq\ts\tlab\n1\tWhat?\tThis.\tyes\n")
    columns = ColumnMap("q", "s", "lab")
    assert read_examples(path, columns=columns) == [Example("What?", "yes", "This.")]
    assert read_examples(path, columns=columns, pair=False) == [Example("What?", "yes")]
    assert read_examples(path, columns=ColumnMap("q", label=None)) == [Example("What?", "")]


def test_read_texts_txt(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "first line\r\n\nsecond line\n")
    assert read_texts(path) == ["first line", "second line"]


PAIRS = [("text_a", "text_b"), ("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"),
         ("question", "sentence"), ("sentence_A", "sentence_B"), ("#1 String", "#2 String"),
         ("text1", "text2")]  # fmt: skip


@pytest.mark.parametrize(("a", "b"), PAIRS)
def test_detect_pair_columns(a: str, b: str) -> None:
    assert detect_columns(["id", a, b, "label"]) == ColumnMap(a, b, "label")
    assert detect_columns(["id", a, b, "label"], pair=False).text_b is None


@pytest.mark.parametrize("label", ["gold_label", "label", "is_duplicate", "Quality", "entailment_label"])
def test_detect_label_and_single_columns(label: str) -> None:
    assert detect_columns(["sentence", label]) == ColumnMap("sentence", None, label)


def test_load_split_checks_labels_and_pairs(tmp_path: Path) -> None:
    rte = BUILTIN_TASKS["RTE"]
    good = write(tmp_path / "good.jsonl", json.dumps({"text_a": "a", "text_b": "b", "label": "entailment"}) + "\n")
    assert load_split(rte, good) == [Example("a", "entailment", "b")]
    bad = write(tmp_path / "bad.tsv", "sentence1\tsentence2\tlabel\na\tb\tneutral\n")
    with pytest.raises(DataError, match=r"unknown label 'neutral'; expected one of \['entailment', 'not_entailment'\]"):
        load_split(rte, bad)


# ---------------------------------------------------------------- writers


@pytest.mark.parametrize("writer", [write_examples_tsv, write_examples_jsonl])
@pytest.mark.parametrize("pair", [True, False])
def test_writers_round_trip(tmp_path: Path, writer, pair: bool) -> None:
    examples = [Example('He said "hi"', "yes", "b" if pair else None), Example("ünï", "no", "c" if pair else None)]
    path = writer(tmp_path / "out" / ("x.tsv" if writer is write_examples_tsv else "x.jsonl"), examples)
    assert read_examples(path) == examples
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary files left


def test_tsv_writer_refuses_tabs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"row 2, field 'text_b': a TSV field cannot hold a tab"):
        write_examples_tsv(tmp_path / "x.tsv", [Example("a", "l", "b"), Example("a", "l", "b\tc")])
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- Hugging Face datasets (no network)


def _nli_dataset():
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"premise": datasets.Value("string"), "hypothesis": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=list(NLI))})  # fmt: skip
    data = {"premise": ["p1", "p2", "p3"], "hypothesis": ["h1", "h2", "h3"], "label": [2, -1, 0]}
    return datasets.Dataset.from_dict(data, features=features)


def test_examples_from_dataset_maps_class_labels() -> None:
    examples = examples_from_dataset(_nli_dataset(), labels=NLI)
    assert examples == [Example("p1", "contradiction", "h1"), Example("p3", "entailment", "h3")]  # -1 dropped
    renamed = examples_from_dataset(_nli_dataset(), label_names=["E", "N", "C"])
    assert [e.label for e in renamed] == ["C", "E"]


def test_examples_from_dataset_bad_label_index() -> None:
    with pytest.raises(DataError, match=r"snli\[test\], row 1, field 'label': label index 2 is out of range"):
        examples_from_dataset(_nli_dataset(), label_names=["yes", "no"], source="snli[test]")


def test_load_hub_dataset_offline_and_online(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match=r"snli/plain\[validation\]: could not load .*offline"):
        load_hub_dataset("snli", "validation", config="plain")
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: _nli_dataset())
    assert len(load_hub_dataset("snli", "validation", labels=NLI, pair=True)) == 2
