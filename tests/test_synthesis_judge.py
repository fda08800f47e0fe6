"""Label consistency: the judge learns a separable toy task, agrees with consistent labels and not with
flipped ones, is deterministic, rejects unknown labels; files, JSON and CLI."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dawgen.cli import app
from dawgen.data.example import Example
from dawgen.data.sources import DEMO_TASK_FILE, demo_dir
from dawgen.synthesis.judge import Judge, agreement, judge_synthetic, label_consistency, pair_features

LABELS = ("yes", "no")
WORDS = ("rain", "sun", "cold", "warm", "dog", "cat", "red", "blue")


class KeywordEncoder:
    """Bag-of-words vectors over a small vocabulary: enough signal for a linear judge, no model."""

    vocabulary = (*WORDS, "not")

    def encode(self, texts):
        return torch.tensor([[float(word in text.split()) for word in self.vocabulary] for text in texts])


def pair(i: int, label: str) -> Example:
    """The second sentence negates the first exactly when the label is ``no``."""
    word = WORDS[i % len(WORDS)]
    return Example(f"the {word} is here", label, f"the {word} is {'not ' if label == 'no' else ''}here")


def toy(n: int, offset: int = 0) -> list[Example]:
    return [pair(i + offset, LABELS[i % 2]) for i in range(n)]


def flipped(examples: list[Example]) -> list[Example]:
    return [Example(e.text_a, LABELS[1 - LABELS.index(e.label)], e.text_b) for e in examples]


def test_pair_features_shape_and_single_sentences():
    encoder = KeywordEncoder()
    features = pair_features(encoder, toy(4))
    assert features.shape == (4, 4 * len(KeywordEncoder.vocabulary))
    single = pair_features(encoder, [Example("the dog", "yes")])
    d = len(KeywordEncoder.vocabulary)
    assert torch.equal(single[0, d : 2 * d], torch.zeros(d)) and torch.equal(single[0, 2 * d : 3 * d], single[0, :d])
    mixed = pair_features(encoder, [Example("the dog", "yes"), *toy(1)])
    assert torch.equal(mixed[0], single[0]) and torch.equal(mixed[1], features[0])


def test_consistent_labels_agree_and_flipped_labels_do_not():
    report = label_consistency({"same": toy(20, 3), "flipped": flipped(toy(20, 3))}, toy(40), toy(10, 7), LABELS,
                               encoder=KeywordEncoder())  # fmt: skip
    assert report["reference"] == 40 and report["real_held_out"]["agreement"] == 100.0
    same, wrong = report["synthetic"]["same"], report["synthetic"]["flipped"]
    assert same["agreement"] == same["balanced_agreement"] == 100.0
    assert wrong["agreement"] == 0.0 and wrong["per_label"]["yes"]["judged_as"] == {"yes": 0, "no": 10}
    # as training data: a judge fitted on the consistent set reads the real held-out pairs, one on the
    # flipped set inverts them
    assert same["trained_on_it"] == {"trained_on": 20, "accuracy": 100.0, "balanced_accuracy": 100.0}
    assert wrong["trained_on_it"]["accuracy"] == 0.0 and "few_shot_trained" not in report
    with_few = label_consistency({}, toy(40), toy(10, 7), LABELS, encoder=KeywordEncoder(), few_shot=toy(4, 1))
    assert with_few["few_shot_trained"]["trained_on"] == 4 and with_few["synthetic"] == {}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(LABELS), min_size=1, max_size=30))
def test_per_label_counts_add_up(labels):
    judge = Judge(LABELS).fit(pair_features(KeywordEncoder(), toy(16)), [e.label for e in toy(16)])
    rows = [pair(i, label) for i, label in enumerate(labels)]
    result = agreement(judge, pair_features(KeywordEncoder(), rows), rows)
    assert sum(sum(v["judged_as"].values()) for v in result["per_label"].values()) == len(rows)
    for label, row in result["per_label"].items():
        assert row["examples"] == labels.count(label)
        assert (row["agreement"] is None) == (row["examples"] == 0)
    hits = sum(v["judged_as"][label] for label, v in result["per_label"].items())
    assert result["agreement"] == pytest.approx(100 * hits / len(rows), abs=0.01)


def test_judge_is_deterministic_and_checks_labels():
    features, labels = pair_features(KeywordEncoder(), toy(16)), [e.label for e in toy(16)]
    first, second = Judge(LABELS).fit(features, labels), Judge(LABELS).fit(features, labels)
    assert torch.equal(first.linear.weight, second.linear.weight)
    with pytest.raises(ValueError, match="'maybe'"):
        Judge(LABELS).fit(features, [*labels[:-1], "maybe"])
    with pytest.raises(RuntimeError, match="fit"):
        Judge(LABELS).predict(features)
    with pytest.raises(ValueError, match="two labels"):
        Judge(["yes"])


def test_judge_files_and_cli(tmp_path, monkeypatch):
    monkeypatch.setattr("dawgen.synthesis.judge.SentenceEncoder", KeywordEncoder)
    task = str(demo_dir() / DEMO_TASK_FILE)
    synthetic = tmp_path / "syn.jsonl"
    rows = [{"text_a": "The dog slept.", "text_b": "The dog slept.", "label": "entailment"},
            {"text_a": "The cat ran.", "text_b": "The cat sat.", "label": "not_entailment"}]  # fmt: skip
    synthetic.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "judge.json"
    report = judge_synthetic([synthetic], reference=demo_dir() / "test.tsv", held_out=demo_dir() / "dev.tsv",
                             task=task, out=out, sample=40, few_shot=demo_dir())  # fmt: skip
    assert (
        report["reference"] == 40
        and report["few_shot_trained"]["trained_on"] == 32
        and report["synthetic"][str(synthetic)]["examples"] == 2
    )
    assert json.loads(out.read_text()) == report
    result = CliRunner().invoke(app, ["judge-synthetic", str(synthetic), "--reference", str(demo_dir() / "test.tsv"),
                                      "--held-out", str(demo_dir() / "dev.tsv"), "--task", task,
                                      "--few-shot", str(demo_dir())])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "few-shot" in result.output and "|u-v|" in result.output  # rich markup escaped
    assert "agreement" in result.output
    missing = CliRunner().invoke(app, ["judge-synthetic", str(synthetic), "--reference", str(tmp_path / "none.tsv"),
                                       "--held-out", str(demo_dir() / "dev.tsv"), "--task", task])  # fmt: skip
    assert missing.exit_code == 2 and "none.tsv" in missing.output
