"""The report of a pipeline run folder (``dawgen report RUN_DIR``): Markdown and self-contained HTML."""

from dawgen.reporting.paper import PaperResults, PaperRow, paper_results
from dawgen.reporting.report import build_report, build_summary, write_report
from dawgen.reporting.run_data import RunData, load_run

__all__ = [
    "PaperResults",
    "PaperRow",
    "RunData",
    "build_report",
    "build_summary",
    "load_run",
    "paper_results",
    "write_report",
]
