"""Report sections from the run folders: training curves, gradient conflicts, generator runs."""

from __future__ import annotations

import re
from pathlib import Path
from statistics import fmean

from dawgen.constants import DATA_SCALE_PLOT, TRAINING_PLOT
from dawgen.models.precision import describe_record
from dawgen.reporting.document import Block, Heading, Image, Table, Text
from dawgen.reporting.figures import Series, plot_conflicts, plot_dev_curves
from dawgen.reporting.run_data import RunData
from dawgen.reporting.sections import format_number, format_rate

MAX_RUN_PLOTS = 8  # embed each run's own training.png up to this many runs


def slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", str(name)).strip("_") or "task"


def _methods(data: RunData) -> list[str]:
    """Every method of the run, those with test results first."""
    return list(dict.fromkeys([*data.methods, *(r["method"] for r in data.records)]))


def data_scale(data: RunData) -> list[Block]:
    """The data-scale curve (accuracy against the synthetic set's size), when the run folder has one."""
    png = data.existing(DATA_SCALE_PLOT)
    if png is None:
        return []
    caption = f"{DATA_SCALE_PLOT}: test (balanced) accuracy against the size of the synthetic set"
    return [Heading(2, "Data scale"), Image(png, caption)]


def training_curves(data: RunData, figures: Path) -> list[Block]:
    """Section 4: one figure per task of dev accuracy over steps per method; each run's own plot if few."""
    blocks: list[Block] = [Heading(2, "Training curves")]
    series: dict[str, list[Series]] = {}
    for record, _, evals in data.run_metrics():
        points = [e for e in evals if isinstance(e.get("dev_accuracy"), int | float)]
        run = Series(record["method"], record["seed"], [e["step"] for e in points], [e["dev_accuracy"] for e in points])
        series.setdefault(record["task"], []).append(run)
    for task in data.tasks:
        runs = series.get(task, [])
        png = plot_dev_curves(task, runs, _methods(data), figures / f"curves-{slug(task)}.png")
        if png is not None:
            blocks.append(Image(png, f"{task}: dev accuracy over training steps, per method"))
    plots = data.training_plots()
    if len(plots) <= MAX_RUN_PLOTS:
        blocks += [Image(p, f"{r['task']}, {r['method']}, seed {r['seed']}: training.png") for r, p in plots]
    else:
        blocks.append(
            Text(
                f"Each of the {len(plots)} runs has its own training.png (losses, gradient agreement, "
                f"dev accuracy) in its folder, e.g. {data.shown(plots[0][0]['folder'])}."
            )
        )
    if len(blocks) == 1:
        blocks.append(Text("No run folder with a metrics.jsonl or training.png was found."))
    return blocks


def gradient_conflicts(data: RunData, figures: Path) -> list[Block]:
    """Section 5: for every run that logged conflicts, the running conflict rate and gradient cosine."""
    blocks: list[Block] = [Heading(2, "Gradient conflicts")]
    flags: dict[str, list[Series]] = {}
    cosines: dict[str, list[Series]] = {}
    rows = []
    for record, steps, _ in data.run_metrics():
        paired = [s for s in steps if "conflict" in s]
        if not paired:
            continue
        x = [s["step"] for s in paired]
        run_flags = Series(record["method"], record["seed"], x, [float(bool(s["conflict"])) for s in paired])
        run_cosines = Series(record["method"], record["seed"], x, [float(s.get("cosine") or 0.0) for s in paired])
        flags.setdefault(record["task"], []).append(run_flags)
        cosines.setdefault(record["task"], []).append(run_cosines)
        rows.append(
            [
                record["task"],
                record["method"],
                str(record["seed"]),
                str(len(paired)),
                format_rate(fmean(run_flags.y)),
                format_number(fmean(run_cosines.y)),
            ]
        )
    if not rows:
        return [*blocks, Text("No run logged gradient conflicts (no paired real + synthetic run).")]
    blocks.append(
        Text(
            "Paired runs take one real and one synthetic batch per step; the gradients conflict when "
            "their cosine is negative (surgery then projects the synthetic one)."
        )
    )
    for task in data.tasks:
        if task in flags:
            png = plot_conflicts(
                task, flags[task], cosines[task], _methods(data), figures / f"conflicts-{slug(task)}.png"
            )
            if png is not None:
                blocks.append(Image(png, f"{task}: running conflict rate and gradient cosine, one line per run"))
    header = ["task", "method", "seed", "paired steps", "conflict rate", "mean cosine"]
    return [*blocks, Table(header, rows)]


def generators(data: RunData) -> list[Block]:
    """Generator tuning runs (stage 1): their settings, dev numbers and training plots."""
    found = data.generators()
    if not found:
        return []
    rows = []
    for relative, _, result in found:
        dev = result.get("dev") or {}
        rows.append(
            [
                data.shown(relative),
                str(result.get("task", "-")),
                str(result.get("variant", "-")),
                str(result.get("model", "-")),
                str(result.get("steps", "-")),
                str(result.get("best_epoch", "-")),
                format_number(dev.get("dev_loss")),
                format_number(dev.get("dev_discrimination"), "{:.1f}"),
                format_number(result.get("train_seconds"), "{:.0f}"),
                describe_record(result.get("compute")),
            ]
        )
    header = [
        "folder",
        "task",
        "variant",
        "model",
        "steps",
        "best epoch",
        "dev LM loss",
        "dev discrimination %",
        "seconds",
        "precision",
    ]
    blocks: list[Block] = [Heading(2, "Generator tuning"), Table(header, rows)]
    plots = [(rel, path / TRAINING_PLOT) for rel, path, _ in found if (path / TRAINING_PLOT).exists()]
    if len(plots) <= MAX_RUN_PLOTS:
        blocks += [Image(png, f"generator {data.shown(rel)}: training.png") for rel, png in plots]
    return blocks
