"""``write_report``: a run folder's results as ``report.md`` and a self-contained ``report.html``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dawgen.constants import REPORT_DIR, REPORT_HTML, REPORT_MARKDOWN
from dawgen.reporting.claims import claims
from dawgen.reporting.data_sections import data_scale, generators, gradient_conflicts, training_curves
from dawgen.reporting.document import Document, Image, to_html, to_markdown
from dawgen.reporting.run_data import RunData, load_run
from dawgen.reporting.run_section import run_details
from dawgen.reporting.sections import helped, oracle_recovery, paper_comparison, per_seed, results
from dawgen.reporting.synthetic_section import synthetic_data
from dawgen.utils.io import atomic_write_text


def build_report(run_dir: str | Path) -> Document:
    """The report of ``run_dir`` as a document, ordered like a paper's results section: the headline table,
    the paper's claims, the data-scale curve, the detail, and last the configuration, versions and wall times;
    its own figures are written to ``run_dir/report/``."""
    data = load_run(run_dir)
    figures = data.run_dir / REPORT_DIR
    document = Document(f"dawgen run report: {data.run_dir.resolve().name}")
    for section in (
        results(data),
        claims(data),
        data_scale(data),
        helped(data),
        oracle_recovery(data),
        paper_comparison(data),
        per_seed(data),
        training_curves(data, figures),
        gradient_conflicts(data, figures),
        generators(data),
        synthetic_data(data),
        run_details(data),
    ):
        document.blocks.extend(section)
    _remove_stale_figures(figures, {b.path.resolve() for b in document.blocks if isinstance(b, Image)})
    return document


def build_summary(records: Sequence[Mapping[str, Any]], title: str, methods: Sequence[str] = ()) -> Document:
    """The report's sections that need only the results records, not a run folder's files: the headline
    table, the paper's claims, the oracle recovery and the per-seed numbers. For a protocol that ran in parts
    whose run folders are not all at hand (``records`` in the shape of ``results.json``'s; ``methods`` orders
    the rows, the others follow)."""
    data = RunData(Path("."), {}, {"methods": list(methods)}, [dict(record) for record in records])
    document = Document(title)
    for section in (results(data), claims(data), oracle_recovery(data), per_seed(data)):
        document.blocks.extend(section)
    return document


def _remove_stale_figures(figures: Path, kept: set[Path]) -> None:
    """Figures of an earlier report that this one no longer shows (e.g. a task since removed)."""
    for png in figures.glob("*.png") if figures.is_dir() else []:
        if png.resolve() not in kept:
            with contextlib.suppress(FileNotFoundError):
                png.unlink()


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``RUN_DIR/report.md`` (images linked by relative path) and ``RUN_DIR/report.html`` (one file,
    images embedded, to be mailed), plus figures under ``RUN_DIR/report/``; return the two paths."""
    run_dir = Path(run_dir)
    document = build_report(run_dir)
    markdown = atomic_write_text(run_dir / REPORT_MARKDOWN, to_markdown(document, run_dir))
    page = atomic_write_text(run_dir / REPORT_HTML, to_html(document, run_dir))
    return markdown, page
