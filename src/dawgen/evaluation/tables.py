"""Markdown tables of results over seeds: mean (std) of test accuracy (F1 where reported), balanced accuracy,
a flag on classifiers that put almost every test example on one label, and the lines saying which
precision (and kind of machine) the records ran in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dawgen.evaluation.metrics import aggregate, format_mean_std
from dawgen.models.precision import describe_record

COLLAPSED_SHARE = 90.0  # % of the test predictions on one label from which a run is flagged as collapsed
CELL_LEGEND = (
    "Each cell: test accuracy in % (then F1 of the positive class where the task reports it), mean (std) over "
    "seeds; `bal`: balanced accuracy (the mean recall of the labels; chance is 100 / labels), `-` where a result "
    "predates it; `top N%*`: the largest share of the test predictions on one label among the seeds, shown where "
    f"a seed reaches {COLLAPSED_SHARE:.0f}% (the classifier has collapsed); `[n seeds]`: a cell over fewer seeds "
    "than the table's fullest, its std then over those."
)


def collapsed(test: Mapping[str, Any]) -> bool:
    """Whether one run's test metrics show at least ``COLLAPSED_SHARE`` % of the predictions on one label."""
    share = test.get("top_prediction_share")
    return isinstance(share, int | float) and share >= COLLAPSED_SHARE


def top_share_flag(runs: Sequence[Mapping[str, Any]]) -> str:
    """`` / top N%*`` with the largest top-label share of the runs when one of them collapsed, else ``""``."""
    shares = [run["top_prediction_share"] for run in runs if collapsed(run)]
    return f" / top {max(shares):.0f}%*" if shares else ""


def stat_cell(stats: Mapping[str, tuple[float, float]], key: str) -> str:
    """``mean (std)`` of metric ``key``, or ``-`` when the runs do not all report it."""
    return format_mean_std(*stats[key]) if key in stats else "-"


def metric_cell(runs: Sequence[Mapping[str, Any]]) -> str:
    """``acc mean (std)`` [``/ F1 mean (std)``] ``/ bal mean (std)`` [``/ top N%*``]: the paper's metric
    first, then balanced accuracy, then the collapse flag (see ``CELL_LEGEND``)."""
    if not runs:
        return "-"
    stats = aggregate(runs)
    cell = format_mean_std(*stats["accuracy"])
    if "f1" in stats:
        cell += f" / F1 {format_mean_std(*stats['f1'])}"
    return cell + f" / bal {stat_cell(stats, 'balanced_accuracy')}" + top_share_flag(runs)


def results_table(
    results: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]], rows: Sequence[str], columns: Sequence[str]
) -> list[str]:
    """Markdown lines: one row per method, one column per task; ``results[(row, column)]`` holds
    the run results (with a ``test`` mapping) of every seed. A cell over fewer seeds than the fullest cell says
    how many (``[1 seed]``): its mean is not comparable with theirs."""
    fullest = max((len(runs) for runs in results.values()), default=0)
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            runs = results.get((row, column), [])
            count = f" [{len(runs)} seed{'s' if len(runs) > 1 else ''}]" if 0 < len(runs) < fullest else ""
            cells.append(metric_cell([r["test"] for r in runs]) + count)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def record_precision(record: Mapping[str, Any], key: str = "compute") -> str:
    """A results record's precision in words (``describe_record`` of its ``compute`` entry)."""
    return describe_record(record.get(key))


def _name(record: Mapping[str, Any]) -> str:
    return f"{record.get('method', '?')} {record.get('task', '?')} seed {record.get('seed', '?')}"


def _grouped(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for record in records:
        groups.setdefault(record_precision(record, key), []).append(_name(record))
    return groups


def precision_lines(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Footnote lines for a results table: ``precision: bf16 autocast (CPU with native bf16)`` when every
    record ran alike; otherwise a ``precision: MIXED`` line and one line per precision naming its records.
    A line on the synthetic sets' generation follows where it ran otherwise than the classifiers."""
    if not records:
        return []
    groups = _grouped(records, "compute")
    if len(groups) == 1:
        lines = [f"precision: {next(iter(groups))}"]
    else:
        lines = ["precision: MIXED, the records below ran in different precisions or on different kinds of machine:"]
        lines += [f"- {precision}: {', '.join(names)}" for precision, names in groups.items()]
    synthetic = _grouped([r for r in records if r.get("synthetic")], "synthetic_compute")
    if synthetic and set(synthetic) != set(groups):
        if len(synthetic) == 1:
            lines.append(f"synthetic data generated in: {next(iter(synthetic))}")
        else:
            lines.append("synthetic data generated in MIXED precisions:")
            lines += [f"- {precision}: {', '.join(names)}" for precision, names in synthetic.items()]
    return lines


def mixed_precision(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether the records (and the generation of their synthetic sets) ran in more than one precision."""
    return (
        len(_grouped(records, "compute")) > 1
        or len(_grouped([r for r in records if r.get("synthetic")], "synthetic_compute")) > 1
    )
