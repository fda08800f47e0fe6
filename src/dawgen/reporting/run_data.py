"""Reading a pipeline run folder: ``manifest.json``, ``results.json`` and the run folders they point to.

Layout written by ``dawgen run`` (paths in the JSON files are relative to the run folder)::

    manifest.json   {"config", "versions", "git_commit", "device", "cpu", "cpu_native_bf16", "created",
                     "stages": [{"stage", "task", "seed", "name", "folder", "key", "seconds", "precision"}]}
    results.json    {"tasks", "seeds", "methods", "records": [{"task", "seed", "method", "test", "dev",
                     "folder", "conflict_rate", "trainable_parameters", "compute", "generator", "synthetic",
                     "synthetic_compute"}]}

``compute`` and ``synthetic_compute`` are ``dawgen.models.precision.precision_record``s (older runs lack them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dawgen.constants import (
    MANIFEST_FILE,
    METRICS_FILE,
    QUALITY_PLOT,
    QUALITY_REPORT,
    RESULT_FILE,
    RESULTS_FILE,
    TRAINING_PLOT,
)
from dawgen.evaluation.plots import read_metrics
from dawgen.utils.io import read_json_object

OURS = ("ours", "dawgen+paired+surgery")  # the paper's method, under either name
PROMPT_TUNING = "pt"


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def has_accuracy(record: dict[str, Any]) -> bool:
    test = record.get("test")
    return isinstance(test, dict) and isinstance(test.get("accuracy"), int | float)


@dataclass
class RunData:
    """A run folder's manifest and results, with helpers to find the files each record points to."""

    run_dir: Path
    manifest: dict[str, Any]
    results: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        listed = [str(t) for t in self.results.get("tasks") or []]
        return list(dict.fromkeys(listed + [str(r["task"]) for r in self.records]))

    @property
    def seeds(self) -> list[int]:
        listed = list(self.results.get("seeds") or [])
        return list(dict.fromkeys(listed + [r["seed"] for r in self.records]))

    @property
    def methods(self) -> list[str]:
        """The listed methods, then any other method a record has; only those with a test accuracy."""
        listed = [str(m) for m in self.results.get("methods") or []]
        names = dict.fromkeys(listed + [str(r["method"]) for r in self.records])
        return [m for m in names if any(r["method"] == m and has_accuracy(r) for r in self.records)]

    def scored(self, method: str, task: str) -> list[dict[str, Any]]:
        """Records of ``method`` on ``task`` that have a test accuracy."""
        return [r for r in self.records if r["method"] == method and r["task"] == task and has_accuracy(r)]

    def matched(self, methods: Sequence[str], task: str) -> list[list[dict[str, Any]]]:
        """The scored records of each of ``methods`` on ``task``, only of the seeds every one of them has, so
        that rows are compared over the same seeds (all empty where they share none)."""
        runs = [self.scored(method, task) for method in methods]
        common = set.intersection(*({r["seed"] for r in method_runs} for method_runs in runs)) if runs else set()
        return [[r for r in method_runs if r["seed"] in common] for method_runs in runs]

    def cells(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """``(method, task) -> records``, the shape ``results_table`` reads."""
        return {(m, t): self.scored(m, t) for m in self.methods for t in self.tasks}

    def ours(self) -> str | None:
        """The name the run uses for the paper's method, if it has it."""
        return next((name for name in OURS if name in self.methods), None)

    def path(self, relative: str | None) -> Path | None:
        """A path of the results, resolved against the run folder (None stays None)."""
        return None if not relative else self.run_dir / relative

    def shown(self, path: str | Path) -> str:
        """``path`` as the report shows it: relative to the run folder (``../`` where outside), never absolute."""
        full = Path(path) if Path(path).is_absolute() else self.run_dir / path
        return Path(os.path.relpath(full.resolve(), self.run_dir.resolve())).as_posix()

    def scrub(self, text: str) -> str:
        """``text`` (e.g. an error message) with the run folder's absolute path left out of the paths in it."""
        for root in dict.fromkeys((str(self.run_dir.resolve()), str(self.run_dir.absolute()))):
            text = text.replace(root + os.sep, "").replace(root, ".")
        return text

    def existing(self, relative: str | None, name: str | None = None) -> Path | None:
        """``relative`` (or the file ``name`` inside it), when it exists."""
        path = self.path(relative)
        if path is not None and name is not None:
            path = path / name
        return path if path is not None and path.exists() else None

    def run_metrics(self) -> Iterator[tuple[dict[str, Any], list[dict], list[dict]]]:
        """Every record with a readable ``metrics.jsonl``: the record, its step and its eval records."""
        for record in self.records:
            metrics = self.existing(record.get("folder"), METRICS_FILE)
            if metrics is None:
                continue
            try:
                steps, evals = read_metrics(metrics)
            except (OSError, ValueError):
                continue
            yield record, steps, evals

    def training_plots(self) -> list[tuple[dict[str, Any], Path]]:
        plots = [(r, self.existing(r.get("folder"), TRAINING_PLOT)) for r in self.records]
        return [(r, p) for r, p in plots if p is not None]

    def generators(self) -> list[tuple[str, Path, dict[str, Any]]]:
        """Each distinct generator folder that exists: its relative path, path and ``result.json``."""
        relatives = dict.fromkeys(r["generator"] for r in self.records if r.get("generator"))
        found = [(rel, self.existing(rel)) for rel in relatives]
        return [(rel, path, read_json(path / RESULT_FILE) or {}) for rel, path in found if path is not None]

    def synthetic_sets(self) -> list[SyntheticInfo]:
        """Each distinct synthetic file named by a record, with its quality files and the runs using it."""
        sets: dict[str, SyntheticInfo] = {}
        for record in self.records:
            relative = record.get("synthetic")
            if not relative:
                continue
            if relative not in sets:
                path = self.run_dir / relative
                sets[relative] = SyntheticInfo(relative, path, str(record["task"]))
            sets[relative].users.append(f"{record['method']} (seed {record['seed']})")
        return list(sets.values())


@dataclass
class SyntheticInfo:
    """A synthetic file, the task it belongs to, and the quality files ``inspect_synthetic`` writes beside it."""

    relative: str
    path: Path
    task: str
    users: list[str] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, Any] | None:
        return read_json(self.path.with_name(f"{self.path.stem}.summary.json"))

    @property
    def quality(self) -> dict[str, Any] | None:
        return read_json(self.path.parent / QUALITY_REPORT)

    @property
    def quality_plot(self) -> Path | None:
        plot = self.path.parent / QUALITY_PLOT
        return plot if plot.exists() else None


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder; ``results.json`` must be there, ``manifest.json`` may be missing."""
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"{run_dir}: run folder not found" if not run_dir.exists() else f"{run_dir}: not a folder"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is {run_dir} a dawgen run folder?")
    results = read_json_object(path, what="a JSON object with 'records'")
    for key in ("records", "tasks", "seeds", "methods"):
        if not isinstance(results.get(key) or [], list):
            raise ValueError(f"{path}: '{key}' must be a list, got {results[key]!r}")
    manifest = read_json(run_dir / MANIFEST_FILE)
    records = [r for r in results.get("records") or [] if isinstance(r, dict) and "task" in r and "method" in r]
    for record in records:
        record.setdefault("seed", "?")
    return RunData(run_dir, manifest if isinstance(manifest, dict) else {}, results, records)
