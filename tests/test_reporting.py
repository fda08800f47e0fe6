"""``write_report``: a fake pipeline run folder rendered as Markdown and self-contained HTML; the paper's numbers."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from statistics import fmean

import matplotlib.pyplot as plt
import numpy as np
import pytest

from dawgen.data.example import Example
from dawgen.reporting import load_run, paper_results, write_report
from dawgen.synthesis.quality import quality_report

PAPER_TABLES = Path(__file__).resolve().parents[2] / "shared" / "docs" / "paper-tables.md"
ACCURACY = {  # (task, method) -> test accuracy of seeds 13 and 42
    ("RTE", "pt"): (50.0, 52.0),
    ("RTE", "ours"): (60.0, 64.0),
    ("MRPC", "pt"): (55.0, 57.0),
    ("MRPC", "ours"): (70.0, 72.0),
}
RTE_LABELS = ("entailment", "not_entailment")


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def write_metrics(folder: Path, paired: bool, seed: int) -> None:
    """Eight steps and two evaluations; paired runs log every other step as a conflict."""
    lines = []
    for step in range(1, 9):
        record = {"kind": "step", "step": step, "source": "real", "train_loss": 1.0 / step}
        if paired:
            conflict = step % 2 == 0
            record |= {"source": "paired", "real_loss": 1.0 / step, "syn_loss": 0.5, "conflict": conflict,
                       "cosine": -0.2 if conflict else 0.3}  # fmt: skip
        lines.append(record)
        if step % 4 == 0:
            dev = 50.0 + step + 5 * paired + seed % 4
            lines.append({"kind": "eval", "step": step, "train_loss": 0.5, "dev_accuracy": dev, "dev_loss": 0.7})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.fixture(scope="module")
def png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("png") / "tiny.png"
    plt.imsave(path, np.zeros((4, 4)))
    return path.read_bytes()


def synthetic_set(folder: Path, png: bytes) -> str:
    """A small RTE synthetic file with its summary, quality.json (dawgen's report) and quality.png."""
    records = [
        {"text_a": "A man <b>bold</b> walks.", "text_b": "A man walks & talks.", "label": "entailment"},
        *({"text_a": f"Premise {i}.", "text_b": f"Hypothesis {i}.", "label": RTE_LABELS[i % 2]} for i in range(8)),
    ]
    folder.mkdir(parents=True)
    (folder / "synthetic.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write_json(folder / "synthetic.summary.json", {"target_per_label": 5, "attempted": 12, "written": 9,
                                                   "filters": {"copy": 2, "too_short": 1, "duplicate": 0},
                                                   "gave_up": {"not_entailment": "max_attempts"}})  # fmt: skip
    examples = [Example(r["text_a"], r["label"], r["text_b"]) for r in records]
    real = [Example("Real premise.", label, "Real hypothesis.") for label in RTE_LABELS for _ in range(2)]
    quality = quality_report(examples, real, RTE_LABELS, sample=20)
    quality["embeddings"] = {"model": "m", "centroid_cosine_matrix": {}, "per_label": {
        label: {"centroid_cosine": 0.8764, "mmd2_rbf": 0.0123, "synthetic_sampled": 4, "real": 2}
        for label in RTE_LABELS}}  # fmt: skip
    write_json(folder / "quality.json", quality)
    (folder / "quality.png").write_bytes(png)
    return "synthetic/RTE/synthetic.jsonl"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, png: bytes) -> Path:
    """The layout ``dawgen run`` writes: 2 tasks x 2 seeds x (pt, ours); RTE's ours runs use a synthetic set,
    MRPC's name a synthetic file that does not exist."""
    root = tmp_path_factory.mktemp("run")
    synthetic = synthetic_set(root / "synthetic" / "RTE", png)
    write_json(
        root / "generator" / "result.json",
        {
            "task": "RTE",
            "variant": "dawgen",
            "model": "tiny",
            "steps": 6,
            "best_epoch": 2,
            "dev": {"dev_loss": 3.21, "dev_discrimination": 75.0},
        },
    )
    (root / "generator" / "training.png").write_bytes(png)
    records, stages = [], []
    for (task, method), accuracies in ACCURACY.items():
        for seed, accuracy in zip((13, 42), accuracies, strict=True):
            folder = f"classifier/{task}/{seed}/{method}"
            write_metrics(root / folder, paired=method == "ours", seed=seed)
            (root / folder / "training.png").write_bytes(png)
            collapsed = method == "pt" and seed == 13  # every test prediction one label
            test = {"accuracy": accuracy, "loss": 0.6, "top_prediction_share": 100.0 if collapsed else 60.0}
            test |= {"f1": accuracy + 5} if task == "MRPC" else {}
            records.append({
                "task": task, "seed": seed, "method": method, "test": test, "dev": {"accuracy": 60.0},
                "folder": folder, "conflict_rate": 0.5 if method == "ours" else None, "trainable_parameters": 20480,
                "generator": "generator" if method == "ours" and task == "RTE" else None,
                "synthetic": None if method == "pt" else synthetic if task == "RTE" else "synthetic/MRPC/gone.jsonl",
            })  # fmt: skip
            stages.append({"stage": "classifier", "task": task, "seed": seed, "name": method, "folder": folder,
                           "key": "abc", "seconds": 75.0})  # fmt: skip
    write_json(root / "results.json", {"tasks": ["RTE", "MRPC"], "seeds": [13, 42], "methods": ["pt", "ours"],
                                       "records": records})  # fmt: skip
    write_json(root / "manifest.json", {
        "config": {"tasks": ["RTE", "MRPC"], "classifier": {"model": "smollm2-135m", "steps": 8}},
        "versions": {"dawgen": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0", "peft": "0.21.2",
                     "python": "3.11.9"},
        "git_commit": "0123abc", "device": "cpu", "created": "2025-01-02T03:04:05", "stages": stages,
    })  # fmt: skip
    return root


@pytest.fixture(scope="module")
def report(run_dir: Path) -> tuple[str, str]:
    """The Markdown and the HTML, written once for the module."""
    markdown, page = write_report(run_dir)
    assert markdown == run_dir / "report.md" and page == run_dir / "report.html"
    return markdown.read_text(), page.read_text()


def row(text: str, first_cell: str) -> str:
    """The Markdown table row starting with ``first_cell`` (the first one found)."""
    return next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))


def test_report_files_and_results_table(report: tuple[str, str]):
    text = report[0]
    # mean (std) over seeds 13 and 42: std of (50, 52) is sqrt(2); MRPC adds F1
    assert row(text, "pt") == "| pt | 51.0 (1.4) | 56.0 (1.4) / F1 61.0 (1.4) | 53.5 | 20.48K |"
    assert row(text, "ours") == "| ours | 62.0 (2.8) | 71.0 (1.4) / F1 76.0 (1.4) | 66.5 | 20.48K |"
    assert "| RTE | 13 | 50.0* | 60.0 (50% conflicts) |" in text and "| RTE | 42 | 52.0 | " in text
    assert "git commit: 0123abc" in text and "| classifier.model | smollm2-135m |" in text
    assert "| transformers | 5.23.0 |" in text and "| classifier | 8 | 10m 00s | 100% |" in text
    assert "RTE: ours 62.0 vs pt 51.0: +11.0 points (paper, T5-large: +5.7)" in text


def test_paper_numbers_beside_ours(report: tuple[str, str]):
    text = report[0]
    assert row(text, "ours").startswith("| ours | 62.0 (2.8) |")  # the results table comes first
    beside = [line for line in text.splitlines() if line.startswith("| ours | Ours (DawGen + Real + GS) (Table 1)")]
    assert beside == ["| ours | Ours (DawGen + Real + GS) (Table 1) | 102K | 62.0 (2.8) | 57.40 | 71.0 (1.4) | 69.67 "
                      "| 66.5 | 63.53 |"]  # fmt: skip
    assert "| pt | Prompt Tuning (Table 1) | 102K | 51.0 (1.4) | 51.70 | 56.0 (1.4) | 58.94 |" in text
    assert "Table 1 rows this run has no counterpart for: Prompting (0-shot), In-Context, FT" in text


def test_figures_and_embedded_images(run_dir: Path, report: tuple[str, str]):
    text, html = report
    for name in ("curves-RTE.png", "curves-MRPC.png", "conflicts-RTE.png", "conflicts-MRPC.png"):
        assert (run_dir / "report" / name).read_bytes()[:4] == b"\x89PNG"
        assert f"](report/{name})" in text
    assert "](classifier/RTE/13/ours/training.png)" in text and "](synthetic/RTE/quality.png)" in text
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 4 + 8 + 1 + 1  # report figures, the runs' and the generator's training.png, quality.png
    assert all(base64.b64decode(image)[:4] == b"\x89PNG" for image in images)
    assert "<style>" in html and "<link" not in html and 'src="report/' not in html  # self-contained
    assert "| RTE | ours | 13 | 8 | 50.0% | 0.050 |" in text
    assert (
        "| generator | RTE | dawgen | tiny | 6 | 2 | 3.210 | 75.0 | - |" in text and "](generator/training.png)" in text
    )  # conflict table: every other step, cosines -0.2/0.3


def test_synthetic_quality_and_escaped_samples(report: tuple[str, str]):
    text, html = report
    assert (
        "generation: 9 written of 12 attempted (target 5 per label); filtered: copy 2, too_short 1; "
        "gave up on not_entailment (max_attempts)"
    ) in text
    header = row(text, "label")
    assert "verbatim copies" in header and "distinct-2" in header and "centroid cosine" in header and "MMD²" in header
    assert row(text, "entailment").startswith("| entailment | 5 | 2 | 0.0% |")
    assert "| 0.876 | 0.0123 |" in row(text, "entailment")
    assert row(text, "all labels").startswith("| all labels | 9 | 4 |")
    # three samples per label, the literal "<b>" escaped in both formats
    assert "<b>" not in html and "A man &lt;b&gt;bold&lt;/b&gt; walks." in html and "walks &amp; talks." in html
    assert "| entailment | A man &lt;b&gt;bold&lt;/b&gt; walks. | A man walks &amp; talks. |" in text
    assert text.count("| not_entailment | Premise") == 3 and "Premise 7." not in text
    assert "MRPC: synthetic/MRPC/gone.jsonl" in text and "The synthetic file itself was not found." in text


def test_missing_pieces_are_skipped(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"results\.json"):
        write_report(tmp_path)
    records = [{"task": "RTE", "seed": 13, "method": "pt", "test": {"accuracy": 50.0}, "folder": "nowhere"},
               {"task": "RTE", "seed": 13, "method": "ft", "test": None, "folder": None}]  # fmt: skip
    write_json(tmp_path / "results.json", {"tasks": ["RTE", "CUSTOM"], "seeds": [13], "methods": ["pt", "ours", "ft"],
                                           "records": records})  # fmt: skip
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "curves-OLD.png").write_bytes(b"stale")
    markdown, page = write_report(tmp_path)
    text = markdown.read_text()
    assert "manifest.json not found" in text and "| pt | 50.0 (0.0) | - | - | - |" in text
    assert "| ours |" not in text.split("## What helped")[0] and "| ft |" not in text  # no test accuracy
    assert "no ours-vs-pt comparison" in text and "No run logged gradient conflicts" in text
    assert "No run used synthetic data." in text and "No run folder with a metrics.jsonl" in text
    assert "data:image" not in page.read_text() and not (tmp_path / "report" / "curves-OLD.png").exists()


def test_paper_file_is_consistent():
    paper = paper_results()
    assert paper.backbone == "T5-large" and len(paper.tasks) == 7
    for table_row in paper.rows:  # the AVG column is the mean of the seven tasks (truncated or rounded)
        scores = [table_row.score(task) for task in paper.tasks]
        if table_row.avg is not None and table_row.paper != "Prompt Tuning":  # printed 43.49; the mean is 43.56
            assert fmean(scores) == pytest.approx(table_row.avg, abs=0.011), table_row.paper
    # rows shared between tables carry the same numbers
    for method in ("fewgen+paired", "dawgen+paired"):
        pair = [r for r in paper.rows if r.method == method]
        assert [r.table for r in pair] == [2, 3] and pair[0].scores == pair[1].scores
    assert paper.row("dawgen+paired+surgery").scores == paper.row("ours").scores  # Table 3 repeats Table 1
    assert paper.row("ours").table == 1 and paper.row("pt").score("rte") == 51.70 and paper.row("setfit") is None
    assert paper.row("transfer").paper == "SPoT†" and paper.row("transfer").score("QNLI") is None


@pytest.mark.skipif(not PAPER_TABLES.is_file(), reason=f"{PAPER_TABLES} not found")
def test_paper_file_matches_the_paper_tables():
    """Every T5-large row of paper-tables.md, in order, against the YAML."""
    expected = []
    for line in PAPER_TABLES.read_text().split("### Table 1, Flan")[0].splitlines():  # Table 1, T5-large block
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[1] in ("0", "770M", "410K", "102K"):
            expected.append(cells[2:])
    text = PAPER_TABLES.read_text()
    for line in text.split("### Table 2")[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "T5-L":
            expected.append(cells[-8:])
    rows = paper_results().rows
    assert len(expected) == len(rows) == 10 + 9 + 6
    for want, have in zip(expected, rows, strict=True):
        got = [have.score(task) for task in paper_results().tasks] + [have.avg]
        assert [None if w in ("–", "-") else float(w.strip("*")) for w in want] == got, have.paper


def test_load_run_groups_records(run_dir: Path):
    data = load_run(run_dir)
    assert data.tasks == ["RTE", "MRPC"] and data.seeds == [13, 42] and data.methods == ["pt", "ours"]
    assert data.ours() == "ours" and [r["seed"] for r in data.scored("ours", "RTE")] == [13, 42]
    [rte, mrpc] = data.synthetic_sets()
    assert rte.task == "RTE" and rte.users == ["ours (seed 13)", "ours (seed 42)"] and rte.quality is not None
    assert mrpc.summary is None and mrpc.quality is None and mrpc.quality_plot is None


def test_parameter_counts_show_a_range_only_where_they_differ():
    from types import SimpleNamespace

    from dawgen.reporting.sections import _parameters

    def records(*counts):
        return SimpleNamespace(records=[{"method": "ft", "trainable_parameters": c} for c in counts])

    assert _parameters(records(134_515_202, 134_516_354), "ft") == "134.5M"  # 2 vs 3 label heads
    assert _parameters(records(11_520, 23_040), "ft") == "11.52K-23.04K"
    assert _parameters(records(), "ft") == "-"
