"""Markdown tables of results over seeds: mean (std) of test accuracy, and F1 where reported."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dawgen.evaluation.metrics import aggregate, format_mean_std


def metric_cell(runs: Sequence[Mapping[str, float]]) -> str:
    """``acc mean (std)``, followed by ``/ F1 mean (std)`` when the runs report F1."""
    if not runs:
        return "-"
    stats = aggregate(runs)
    cell = format_mean_std(*stats["accuracy"])
    if "f1" in stats:
        cell += f" / F1 {format_mean_std(*stats['f1'])}"
    return cell


def results_table(
    results: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]], rows: Sequence[str], columns: Sequence[str]
) -> list[str]:
    """Markdown lines: one row per method, one column per task; ``results[(row, column)]`` holds
    the run results (with a ``test`` mapping) of every seed."""
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for row in rows:
        cells = [metric_cell([r["test"] for r in results.get((row, column), [])]) for column in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines
