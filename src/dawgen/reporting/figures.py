"""The report's own figures: dev accuracy over steps per method, and gradient conflicts of paired runs."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from dawgen.evaluation.plots import running_mean

LINESTYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Series:
    """One run's curve: x and y values, and which method and seed it belongs to."""

    method: str
    seed: Any
    x: list[float]
    y: list[float]


def save_figure(fig: Any, png: Path) -> Path:
    """Save ``fig`` through a temporary sibling and ``os.replace`` (never a half-written PNG), then close it."""
    png.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=png.parent, prefix=f".{png.name}.tmp-", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.chmod(tmp, 0o644)
        os.replace(tmp, png)
    finally:
        plt.close(fig)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return png


def method_colors(methods: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    return {method: cmap(i % cmap.N) for i, method in enumerate(methods)}


def _seed_styles(series: Sequence[Series]) -> dict[Any, str]:
    seeds = list(dict.fromkeys(s.seed for s in series))
    return {seed: LINESTYLES[i % len(LINESTYLES)] for i, seed in enumerate(seeds)}


def _outside_legend(ax: Any, title: str | None = None) -> None:
    """A legend right of the axes, so it never covers the data."""
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        fontsize=8,
        title=title,
        title_fontsize=8,
        frameon=False,
    )


def plot_dev_curves(task: str, series: Sequence[Series], methods: Sequence[str], png: Path) -> Path | None:
    """Dev accuracy over steps: a thin line per seed and a thick line for the mean over seeds, per method."""
    if not any(s.x for s in series):
        return None
    colors = method_colors(methods)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    several = False
    for method in methods:
        runs = [s for s in series if s.method == method and s.x]
        if not runs:
            continue
        label = f"{method} ({len(runs)} seed{'s' * (len(runs) > 1)})"
        if len(runs) == 1:
            ax.plot(runs[0].x, runs[0].y, color=colors[method], lw=1.8, marker="o", ms=3, label=label)
            continue
        several = True
        for run in runs:
            ax.plot(run.x, run.y, color=colors[method], lw=0.9, alpha=0.35)
        common = sorted(set.intersection(*(set(run.x) for run in runs)))
        means = [fmean(dict(zip(run.x, run.y, strict=True))[x] for run in runs) for x in common]
        ax.plot(common, means, color=colors[method], lw=2.2, marker="o", ms=3, label=label)
    note = " (thick: mean over seeds, thin: each seed)" if several else ""
    ax.set(title=f"{task}: dev accuracy during prompt tuning{note}", xlabel="training step", ylabel="dev accuracy (%)")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _outside_legend(ax, "method")
    return save_figure(fig, png)


def plot_conflicts(
    task: str, series: Sequence[Series], cosines: Sequence[Series], methods: Sequence[str], png: Path
) -> Path | None:
    """Running conflict rate (``series``: 1 per conflicting step) and running gradient cosine, a line per run."""
    if not series:
        return None
    colors = method_colors(methods)
    styles = _seed_styles(series)
    longest = max(len(s.x) for s in series)
    window = max(5, longest // 20)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2))
    for flags, cosine in zip(series, cosines, strict=True):
        rate = sum(flags.y) / max(len(flags.y), 1)
        style = {"color": colors.get(flags.method, "k"), "ls": styles[flags.seed], "lw": 1.2}
        left.plot(flags.x, [100 * v for v in running_mean(flags.y, window)], **style)
        right.plot(
            cosine.x,
            running_mean(cosine.y, window),
            label=f"{flags.method}, seed {flags.seed} ({rate:.0%} of steps)",
            **style,
        )
    left.set(
        title=f"conflict rate (running mean over {window} steps)",
        xlabel="training step",
        ylabel="steps with cos(real, synthetic) < 0 (%)",
        ylim=(-3, 103),
    )
    right.axhline(0, color="k", lw=0.6)
    right.set(
        title=f"gradient cosine (running mean over {window} steps)",
        xlabel="training step",
        ylabel="cosine(real, synthetic gradient)",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _outside_legend(right, "run (conflict rate)")
    fig.suptitle(f"{task}: gradient conflicts between real and synthetic batches")
    fig.tight_layout()
    return save_figure(fig, png)
