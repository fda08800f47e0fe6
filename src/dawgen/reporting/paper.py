"""The paper's T5-large numbers (``paper_results.yaml``), looked up by dawgen method and task name."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

PAPER_FILE = "paper_results.yaml"


@dataclass(frozen=True)
class PaperRow:
    """One row of one of the paper's tables."""

    table: int
    paper: str  # the paper's name for the row
    method: str | None  # the dawgen method it corresponds to, if any
    params: str
    scores: dict[str, float | None]  # task (upper case) -> accuracy in %
    avg: float | None

    def score(self, task: str) -> float | None:
        return self.scores.get(task.upper())


@dataclass(frozen=True)
class PaperResults:
    backbone: str
    tasks: tuple[str, ...]
    aliases: dict[str, str]
    rows: tuple[PaperRow, ...]

    def names(self, method: str) -> list[str]:
        """``method`` and the other names of the same method (``ours`` = ``dawgen+paired+surgery``)."""
        names = [method, self.aliases.get(method)]
        names += [alias for alias, target in self.aliases.items() if target == method]
        return [name for name in dict.fromkeys(names) if name]

    def row(self, method: str) -> PaperRow | None:
        """The first paper row for ``method`` (or one of its other names), or None."""
        names = self.names(method)
        return next((row for row in self.rows if row.method in names), None)

    def unmatched(self, methods: list[str]) -> list[PaperRow]:
        """The Table 1 rows of methods not in ``methods`` (what the run did not try)."""
        have = {name for method in methods for name in self.names(method)}
        return [row for row in self.rows if row.table == 1 and row.method not in have]


def _row(table: int, raw: dict[str, Any]) -> PaperRow:
    scores = {str(task).upper(): None if v is None else float(v) for task, v in raw["scores"].items()}
    avg = raw.get("avg")
    return PaperRow(
        table, str(raw["paper"]), raw.get("method"), str(raw["params"]), scores, None if avg is None else float(avg)
    )


@functools.cache
def paper_results() -> PaperResults:
    """The packaged ``paper_results.yaml``, parsed."""
    text = resources.files("dawgen.reporting").joinpath(PAPER_FILE).read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    rows = tuple(_row(int(table["table"]), row) for table in raw["tables"] for row in table["rows"])
    return PaperResults(str(raw["backbone"]), tuple(raw["tasks"]), dict(raw.get("aliases") or {}), rows)
