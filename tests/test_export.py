"""`dawgen export`: synthetic sets as HF datasets / CSV / JSONL with a dataset card, read back as --synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests_support import fails, invoke

from dawgen.config import to_dict
from dawgen.constants import MANIFEST_FILE, QUALITY_REPORT, RESULT_FILE, SYNTHETIC_FILE
from dawgen.data.synthetic import load_synthetic
from dawgen.synthesis.config import DedupKey, GenerationConfig
from dawgen.synthesis.export import CARD_FILE, PROVENANCE_FILE
from dawgen.synthesis.quality import quality_report
from dawgen.synthesis.writer import finalize
from dawgen.tasks import get_task

MNLI, RTE = get_task("MNLI"), get_task("RTE")
PAIRS = [  # (text_a, text_b, label), in an order that is not the task table's
    ("A dog runs in the park.", "An animal is outside.", "entailment"),
    ("A dog runs in the park.", "The dog is asleep indoors.", "contradiction"),
    ("A man plays a guitar on stage.", "The man is a famous singer.", "neutral"),
    ("A man plays a guitar on stage.", "Someone makes music.", "entailment"),
    ("Two girls read books.", "The girls are swimming.", "contradiction"),
    ("Two girls read books.", "The books are novels.", "neutral"),
]


def card_header(folder: Path) -> tuple[dict, str]:
    text = (folder / CARD_FILE).read_text()
    assert text.startswith("---\n")
    header, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(header), body


@pytest.fixture
def dawgen_set(tmp_path) -> Path:
    """An MNLI synthetic set in the layout of a `dawgen run` folder: manifest, generator, summary, quality."""
    run = tmp_path / "run"
    run.mkdir()
    (run / MANIFEST_FILE).write_text(json.dumps({"config": {"data": "data/root", "k": 16, "tasks": ["MNLI"]}}))
    seed_dir = run / "MNLI" / "seed-13"
    generator = seed_dir / "generator-dawgen-gkey0123" / "generator"
    generator.mkdir(parents=True)
    gen_config = {"seed": 13, "epochs": 2, "learning_rate": 0.01, "num_prompt_tokens": 4, "lambda_dist": 0.1}
    (generator / "generator.json").write_text(
        json.dumps({"base_model": "tiny-llama", "variant": "dawgen", "config": gen_config, "info": {"best_epoch": 1}})
    )
    (generator.parent / RESULT_FILE).write_text(json.dumps({"precision": {"dtype": "float32"}}))
    records = [
        {"text_a": a, "text_b": b, "label": label, "generator": "abc123", "seed": 13, "index": i, "round": 0,
         "mean_logprob": -1.5 + i, "num_tokens": 5 + i, "overlap": 0.25, "label_logprobs": {"entailment": -1.0},
         "reject": None}
        for i, (a, b, label) in enumerate(PAIRS)
    ]  # fmt: skip
    records.append({**records[0], "index": 6, "text_b": records[0]["text_a"], "reject": "copy"})
    path = seed_dir / "synthetic-dawgen-skey4567" / SYNTHETIC_FILE
    path.parent.mkdir(parents=True)
    config = GenerationConfig(per_label=2, precision="fp32", device="cpu")
    info = {
        "settings": {"generator": "abc123", "model": "tiny-llama", "task": "MNLI", "pool": ["pool.txt", 40]},
        "task": "MNLI", "generator": {"path": str(generator), "id": "abc123", "variant": "dawgen"},
        "config": to_dict(config), "precision": "float32 on cpu", "processes": 1, "rounds": 1,
    }  # fmt: skip
    finalize(path, records, MNLI.labels, config.per_label, DedupKey.TEXT, info)
    syn = load_synthetic(MNLI, path, drop_copies=False).examples
    report = {"task": "MNLI", "synthetic_file": str(path), "real": "data/root", "seed": 13}
    report |= quality_report(syn, syn[:3], MNLI.labels)
    (path.parent / QUALITY_REPORT).write_text(json.dumps(report))
    return path


@pytest.fixture
def fewgen_set(tmp_path) -> Path:
    """FewGen's public format for RTE: a JSON list of text1/text2/label, in <TASK>/fewgen-synthetic/<k>-<seed>/."""
    path = tmp_path / "RTE" / "fewgen-synthetic" / "16-42" / "gen-train.json"
    path.parent.mkdir(parents=True)
    rows = [
        {"text1": "The cat sat on the mat.", "text2": "A cat is sitting.", "label": "entailment"},
        {"text1": "The cat sat on the mat.", "text2": "The cat is flying.", "label": "not_entailment"},
        {"text1": "It rained, all day.", "text2": "It rained, all day.", "label": "entailment"},  # a verbatim copy
        {"text1": "Prices rose in May.", "text2": "Prices fell in May.", "label": "not_entailment"},
    ]
    path.write_text(json.dumps(rows))
    return path


def test_hf_export_round_trips_typed_features_labels_and_a_provenance_card(dawgen_set, tmp_path):
    from datasets import ClassLabel, Value, load_from_disk

    out = tmp_path / "exported"
    output = invoke("export", str(dawgen_set), "--format", "hf", "--out", str(out))  # task from the summary
    assert "MNLI: 6 rows" in output
    dataset = load_from_disk(str(out))
    features = dataset.features
    assert list(features)[:3] == ["text_a", "text_b", "label"]
    assert features["text_a"] == Value("string") and features["text_b"] == Value("string")
    assert isinstance(features["label"], ClassLabel) and features["label"].names == list(MNLI.labels)
    assert features["seed"] == Value("int64") and features["mean_logprob"] == Value("float64")
    assert features["generator"] == Value("string") and "label_logprobs" not in features  # not a scalar
    assert [features["label"].int2str(i) for i in dataset["label"]] == [label for _, _, label in PAIRS]
    assert dataset["text_b"] == [b for _, b, _ in PAIRS] and dataset["index"] == list(range(6))
    original = load_synthetic(MNLI, dawgen_set)
    assert load_synthetic(MNLI, out) == original  # the folder reads back as a --synthetic input

    header, body = card_header(out)
    names = {f["name"]: f["dtype"] for f in header["dataset_info"]["features"]}
    assert names["label"] == {"class_label": {"names": {"0": "entailment", "1": "neutral", "2": "contradiction"}}}
    assert names["text_a"] == "string" and names["num_tokens"] == "int64"
    assert header["dataset_info"]["splits"][0]["num_examples"] == 6
    assert header["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert "text-classification" in header["task_categories"] and "synthetic" in header["tags"]
    for fact in ("`tiny-llama`", "| generator variant | dawgen |", "`abc123`", "`gkey0123`", "`skey4567`",
                 "k = 16, seed 13, data `data/root`", "per_label 2", "7 attempted, 6 written", "copy 1",
                 "distinct-2", "| `contradiction` | 2 | 2 |", "load_from_disk"):  # fmt: skip
        assert fact in body, fact
    provenance = json.loads((out / PROVENANCE_FILE).read_text())
    assert provenance["generator"]["model"] == "tiny-llama" and provenance["generator"]["run_key"] == "gkey0123"
    assert provenance["kshot"] | {"from": None} == {"k": 16, "seed": 13, "data": "data/root", "from": None}
    assert provenance["generation"]["config"]["per_label"] == 2 and provenance["filters"]["filters"]["copy"] == 1
    assert provenance["quality"]["max_over_min"] == 1.0 and provenance["left_out_columns"] == ["label_logprobs"]
    assert provenance["per_label"] == {"entailment": 2, "neutral": 2, "contradiction": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported", "run"]  # no temporary folder left


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_csv_and_jsonl_exports_read_back_and_load_with_datasets(fmt, fewgen_set, tmp_path):
    from datasets import ClassLabel, load_dataset

    out = tmp_path / fmt
    invoke("export", str(fewgen_set), "--format", fmt, "--out", str(out))  # RTE, from the path
    assert sorted(p.name for p in out.iterdir()) == sorted([CARD_FILE, PROVENANCE_FILE, f"train.{fmt}"])
    original = load_synthetic(RTE, fewgen_set)
    assert load_synthetic(RTE, out) == original and load_synthetic(RTE, out / f"train.{fmt}") == original
    assert original.dropped_copies == 1  # the export keeps the copy; loading for training drops it
    loaded = load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(loaded.features["label"], ClassLabel) and loaded.features["label"].names == list(RTE.labels)
    assert loaded["label"] == [0, 1, 0, 1] and loaded["text_a"][0] == "The cat sat on the mat."
    header, body = card_header(out)
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": f"train.{fmt}"}]
    assert "k = 16, seed 42 (from the folder name 16-42)" in body and "FewGen gen-train.json" in body
    assert "1 verbatim copies" in body
    provenance = json.loads((out / PROVENANCE_FILE).read_text())
    assert provenance["generator"] is None and provenance["rows"] == 4 and provenance["verbatim_copies"] == 1


def test_drop_copies_and_the_python_api(fewgen_set, tmp_path):
    from dawgen.api import export_synthetic

    outcome = export_synthetic(fewgen_set, out=tmp_path / "out", format="jsonl", task="RTE", drop_copies=True)
    assert outcome.provenance["rows"] == 3 and outcome.provenance["dropped_copies"] == 1
    assert outcome.files == [CARD_FILE, PROVENANCE_FILE, "train.jsonl"] and outcome.url is None
    assert load_synthetic(RTE, outcome.path).dropped_copies == 0


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("format", "unknown format 'parquet'; choose one of hf, csv, jsonl"),
        ("out", "exists and is not empty"),
        ("labels", "unknown label 'not_entailment'; expected one of ['entailment', 'neutral', 'contradiction']"),
        ("missing", "file not found"),
        ("offline", "needs the Hugging Face hub, but offline mode is on"),
        ("task", "its summary says it was generated for task 'MNLI', not 'RTE'"),
    ],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(case, message, fewgen_set, dawgen_set, tmp_path):
    out = tmp_path / "new" / "out"
    args = {
        "format": [str(fewgen_set), "--format", "parquet"],
        "out": [str(fewgen_set)],
        "labels": [str(fewgen_set), "--task", "MNLI"],
        "missing": [str(tmp_path / "nope.jsonl")],
        "offline": [str(fewgen_set), "--push", "someone/synthetic-rte"],  # the tests run offline
        "task": [str(dawgen_set), "--task", "RTE"],
    }[case]
    if case == "out":
        out.mkdir(parents=True)
        (out / "keep.txt").write_text("mine")
    before = sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts)
    assert message in fails("export", *args, "--out", str(out))
    assert sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts) == before
    if case == "out":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_push_is_wired_to_the_hub_upload(fewgen_set, tmp_path, monkeypatch):
    import huggingface_hub.constants

    import dawgen.synthesis.export as export

    calls = []

    def fake_push(folder, repo, fmt, dataset, *, private, token):
        calls.append((folder, repo, fmt, len(dataset), private, sorted(p.name for p in folder.iterdir())))
        return f"https://huggingface.co/datasets/{repo}"

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(export, "push_export", fake_push)
    out = tmp_path / "out"
    output = invoke("export", str(fewgen_set), "--out", str(out), "--push", "someone/synthetic-rte", "--private")
    assert calls == [(out, "someone/synthetic-rte", "hf", 4, True, sorted([CARD_FILE, PROVENANCE_FILE,
                      "data-00000-of-00001.arrow", "dataset_info.json", "state.json"]))]  # fmt: skip
    assert "https://huggingface.co/datasets/someone/synthetic-rte" in output
    assert "error:" in fails("export", str(fewgen_set), "--out", str(tmp_path / "x"), "--push", "bad repo//name")
