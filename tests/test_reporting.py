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
            # MRPC's results predate balanced accuracy (an older results.json)
            test |= {"f1": accuracy + 5} if task == "MRPC" else {"balanced_accuracy": accuracy - 1}
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
    # mean (std) over seeds 13 and 42: std of (50, 52) is sqrt(2); MRPC adds F1 and has no balanced accuracy;
    # pt's seed 13 put every test prediction on one label
    assert row(text, "pt") == (
        "| pt | 51.0 (1.4) / bal 50.0 (1.4) / top 100%* | 56.0 (1.4) / F1 61.0 (1.4) / bal - / top 100%* "
        "| 53.5 | - | 20.48K |"
    )
    ours = "| ours | 62.0 (2.8) / bal 61.0 (2.8) | 71.0 (1.4) / F1 76.0 (1.4) / bal - | 66.5 | - | 20.48K |"
    assert row(text, "ours") == ours
    assert "| RTE | 13 | 50.0 / bal 49.0 / top 100%* | 60.0 / bal 59.0 / top 60% (50% conflicts) |" in text
    assert "| MRPC | 42 | 57.0 / bal - / top 60% | " in text
    assert "`bal`: balanced accuracy" in text and "avg bal" in row(text, "method")
    assert "git commit: 0123abc" in text and "| classifier.model | smollm2-135m |" in text
    assert "| transformers | 5.23.0 |" in text and "| classifier | 8 | 10m 00s | 100% |" in text
    helped = "RTE: ours 62.0 vs pt 51.0: +11.0 points (paper, T5-large: +5.7); balanced accuracy 61.0 vs 50.0: +11.0"
    assert helped in text
    assert "MRPC: ours 71.0 vs pt 56.0: +15.0 points (paper, T5-large: +10.7); best here" in text  # no balanced
    assert "gold-data oracle" not in text  # no oracle row in this run


def test_paper_numbers_beside_ours(report: tuple[str, str]):
    text = report[0]
    assert row(text, "ours").startswith("| ours | 62.0 (2.8) / bal 61.0 (2.8) |")  # the results table comes first
    beside = [line for line in text.splitlines() if line.startswith("| ours | Ours (DawGen + Real + GS) (Table 1)")]
    assert beside == ["| ours | Ours (DawGen + Real + GS) (Table 1) | 102K | 62.0 (2.8) / bal 61.0 (2.8) | 57.40 "
                      "| 71.0 (1.4) / bal - | 69.67 | 66.5 | 63.53 |"]  # fmt: skip
    assert "| pt | Prompt Tuning (Table 1) | 102K | 51.0 (1.4) / bal 50.0 (1.4) | 51.70 | 56.0 (1.4) / bal - |" in text
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
    assert "manifest.json not found" in text and "| pt | 50.0 (0.0) / bal - | - | - | - | - |" in text
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


def test_the_report_says_how_much_of_the_oracle_gain_ours_recovers(tmp_path: Path):
    scores = {  # (task, method) -> (accuracy, balanced accuracy), one seed
        ("RTE", "pt"): (50.0, 50.0), ("RTE", "ours"): (56.0, 55.0), ("RTE", "oracle+paired+surgery"): (60.0, 60.0),
        ("RTE", "fewgen+merged"): (52.0, 51.0), ("RTE", "oracle+merged"): (58.0, 56.0),
        ("MRPC", "pt"): (55.0, 50.0), ("MRPC", "ours"): (58.0, 52.0), ("MRPC", "oracle+paired+surgery"): (54.0, 48.0),
    }  # fmt: skip
    oracle_file = "RTE/seed-13/oracle-abc/synthetic.jsonl"
    rows = [{"text_a": f"Gold premise {i}.", "text_b": f"Gold hypothesis {i}.", "label": RTE_LABELS[i % 2]}
            for i in range(4)]  # fmt: skip
    (tmp_path / oracle_file).parent.mkdir(parents=True)
    (tmp_path / oracle_file).write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_json(tmp_path / "RTE/seed-13/oracle-abc/synthetic.summary.json", {
        "source": "oracle (gold pool labels)", "pool": "data/RTE/pool/train.json", "pool_rows": 30, "kshot_rows": 12,
        "kshot_pairs": 10, "removed": {"kshot_rows": 9, "duplicates": 1, "verbatim_copies": 0},
        "target_per_label": 2, "per_label": {"entailment": 2, "not_entailment": 2}, "short": False, "written": 4,
    })  # fmt: skip
    records = [
        {"task": task, "seed": 13, "method": method, "folder": None, "generator": None,
         "synthetic": oracle_file if (task, method) == ("RTE", "oracle+paired+surgery") else None,
         "test": {"accuracy": acc, "balanced_accuracy": bal, "top_prediction_share": 95.0 if method == "pt" else 60.0}}
        for (task, method), (acc, bal) in scores.items()
    ]  # fmt: skip
    methods = ["pt", "ours", "fewgen+merged", "oracle+merged", "oracle+paired+surgery"]
    write_json(tmp_path / "results.json", {"tasks": ["RTE", "MRPC"], "seeds": [13], "methods": methods,
                                           "records": records})  # fmt: skip
    text = write_report(tmp_path)[0].read_text()
    section = text.split("## Against the gold-data oracle: oracle (gold pool labels)")[1].split("\n## ")[0]
    # (ours - pt) / (oracle - pt): balanced (55 - 50) / (60 - 50), accuracy (56 - 50) / (60 - 50)
    assert "| RTE | ours | oracle+paired+surgery | balanced accuracy | 50.0 | 55.0 | 60.0 | 50% |" in section
    assert "| RTE | ours | oracle+paired+surgery | accuracy | 50.0 | 56.0 | 60.0 | 60% |" in section
    assert "| RTE | fewgen+merged | oracle+merged | accuracy | 50.0 | 52.0 | 58.0 | 25% |" in section
    assert "| MRPC | ours | oracle+paired+surgery | balanced accuracy | 50.0 | 52.0 | 48.0 | n/a" in section
    assert "fewgen+merged | oracle+merged" not in section.split("| MRPC |")[1]  # MRPC has no such rows
    assert row(text, "oracle+paired+surgery [oracle (gold pool labels)]").startswith(
        "| oracle+paired+surgery [oracle (gold pool labels)] | 60.0 (0.0) / bal 60.0 (0.0) | 54.0 (0.0) / bal 48.0"
    )
    assert "| pt | 50.0 (0.0) / bal 50.0 (0.0) / top 95%* |" in text and "gold labels in place of" in text
    assert "RTE: ours 56.0 vs pt 50.0: +6.0 points" in text and "best here: ours (56.0)" in text  # not the oracle
    assert "RTE: RTE/seed-13/oracle-abc/synthetic.jsonl (oracle (gold pool labels))" in text
    assert (
        "oracle (gold pool labels): 4 rows with their gold labels sampled from data/RTE/pool/train.json "
        "(2 per label, target 2); removed from the pool's 30 rows: 9 rows of "
        "a k-shot split (any seed, train or dev; 10 distinct k-shot pairs), 1 duplicates, 0 verbatim copies."
    ) in text


# --- precision ------------------------------------------------------------------------------------

NATIVE_BF16 = {"precision": "bf16-autocast", "device": "cpu", "cpu_native_bf16": True, "cpu": "Xeon A"}
NO_BF16 = {"precision": "fp32", "device": "cpu", "cpu_native_bf16": False, "cpu": "Xeon B"}


def test_a_run_without_precision_records_says_so(report: tuple[str, str]):
    """The fake run predates precision records: its results, generator and generation say so."""
    lines = report[0].splitlines()
    assert "precision: unknown (not recorded)" in lines
    assert "| generator | RTE | dawgen | tiny | 6 | 2 | 3.210 | 75.0 | - | unknown (not recorded) |" in lines
    assert any(line.startswith("generation: 9 written") and line.endswith("; precision: unknown (not recorded)")
               for line in lines)  # fmt: skip


def test_precision_lines_name_one_precision_or_every_mixed_record():
    from dawgen.evaluation.tables import mixed_precision, precision_lines

    same = [{"task": "RTE", "seed": s, "method": "pt", "compute": NATIVE_BF16} for s in (13, 42)]
    assert precision_lines(same) == ["precision: bf16 autocast (CPU with native bf16)"] and not mixed_precision(same)
    moved = [*same, {"task": "RTE", "seed": 87, "method": "pt", "compute": NO_BF16}]
    assert precision_lines(moved) == [
        "precision: MIXED, the records below ran in different precisions or on different kinds of machine:",
        "- bf16 autocast (CPU with native bf16): pt RTE seed 13, pt RTE seed 42",
        "- fp32 (CPU without native bf16): pt RTE seed 87",
    ]
    assert mixed_precision(moved)
    synthetic = [{**same[0], "synthetic": "s.jsonl", "synthetic_compute": NO_BF16}]
    assert precision_lines(synthetic)[1:] == ["synthetic data generated in: fp32 (CPU without native bf16)"]
    assert precision_lines([{**same[0], "synthetic": "s.jsonl", "synthetic_compute": NATIVE_BF16}])[1:] == []
    assert precision_lines([]) == []


def test_mixed_precisions_show_in_the_report(tmp_path: Path):
    records = [
        {"task": "RTE", "seed": seed, "method": "pt", "test": {"accuracy": 50.0 + seed % 2}, "folder": "x",
         "compute": compute}
        for seed, compute in ((13, NATIVE_BF16), (42, NO_BF16))
    ]  # fmt: skip
    write_json(tmp_path / "results.json", {"tasks": ["RTE"], "seeds": [13, 42], "methods": ["pt"], "records": records})
    stages = [{"stage": "classifier", "task": "RTE", "seed": 13, "name": "pt", "folder": "x", "key": "k",
               "seconds": 1.0, "precision": "bf16-autocast"}]  # fmt: skip
    write_json(tmp_path / "manifest.json", {"device": "cpu", "cpu": "Xeon B", "cpu_native_bf16": False,
                                            "stages": stages})  # fmt: skip
    markdown, _ = write_report(tmp_path)
    text = markdown.read_text()
    assert "precision: MIXED, the records below ran in different precisions or on different kinds of machine:" in text
    assert "- fp32 (CPU without native bf16): pt RTE seed 42" in text.splitlines()
    assert "| RTE | 13 | 51.0 / bal - / top - (bf16 autocast (CPU with native bf16)) |" in text
    assert "| RTE | 42 | 50.0 / bal - / top - (fp32 (CPU without native bf16)) |" in text
    assert "CPU: Xeon B; native bf16: no" in text
    assert "| classifier | RTE | 13 | pt | x | bf16-autocast | 1.0 s |" in text


# --- the order of a paper's results section, the claims, paths -----------------------------------


def headings(text: str) -> list[str]:
    return [line[3:] for line in text.splitlines() if line.startswith("## ")]


def test_the_report_opens_with_the_results_then_the_claims_and_ends_with_the_configuration(report):
    order = headings(report[0])
    assert order[:2] == ["Results", "The paper's claims"] and order[-1].startswith("Run details: configuration")
    assert "Data scale" not in order  # the fixture run has no data_scale.png
    tail = report[0].split("## Run details")[1]
    assert "### Configuration" in tail and "### Versions" in tail and "### Wall time per stage" in tail
    assert report[0].index("| ours | 62.0 (2.8) / bal 61.0 (2.8) |") < report[0].index("### Configuration")


def test_the_data_scale_curve_follows_the_claims_when_the_run_has_one(tmp_path: Path, png: bytes):
    records = [{"task": "RTE", "seed": 13, "method": "pt", "test": {"accuracy": 50.0}, "folder": None}]
    write_json(tmp_path / "results.json", {"tasks": ["RTE"], "seeds": [13], "methods": ["pt"], "records": records})
    (tmp_path / "data_scale.png").write_bytes(png)
    markdown, page = write_report(tmp_path)
    order = headings(markdown.read_text())
    assert order[:3] == ["Results", "The paper's claims", "Data scale"]
    assert "](data_scale.png)" in markdown.read_text() and page.read_text().count("data:image/png") == 1


def test_no_path_in_the_report_is_absolute(tmp_path: Path, png: bytes, run_dir: Path, report: tuple[str, str]):
    for text in report:
        assert str(run_dir) not in text and str(run_dir.resolve()) not in text
    run = tmp_path / "run"
    synthetic = synthetic_set(run / "synthetic" / "RTE", png)
    (run / "gen").mkdir()
    write_json(run / "gen" / "result.json", {"task": "RTE", "variant": "dawgen"})
    (run / "gen" / "training.png").write_bytes(png)
    records = [{"task": "RTE", "seed": 13, "method": "ours", "test": {"accuracy": 60.0}, "folder": str(run / "cls"),
                "generator": str(run / "gen"), "synthetic": str(run / synthetic)}]  # fmt: skip
    write_json(run / "results.json", {"tasks": ["RTE"], "seeds": [13], "methods": ["ours"], "records": records})
    stages = [{"stage": "classifier", "task": "RTE", "seed": 13, "name": "ours", "folder": str(run / "cls"),
               "seconds": 1.0}]  # fmt: skip
    write_json(run / "manifest.json", {"config": {"data_dir": str(tmp_path / "data"), "out": [str(run / "x")]},
                                       "stages": stages})  # fmt: skip
    markdown, page = write_report(run)
    text = markdown.read_text()
    for rendered in (text, page.read_text()):
        assert str(tmp_path) not in rendered and str(tmp_path.resolve()) not in rendered
    assert "### RTE: synthetic/RTE/synthetic.jsonl" in text and "| gen | RTE | dawgen |" in text
    assert "| data_dir | ../data |" in text and '| out | ["x"] |' in text
    assert "| classifier | RTE | 13 | ours | cls | - | 1.0 s |" in text
