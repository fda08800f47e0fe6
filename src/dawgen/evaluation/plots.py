"""Training curves of a run: losses, gradient agreement (paired runs), dev accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def running_mean(values: list[float], window: int) -> list[float]:
    """Running mean over the last ``window`` values."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out


def read_metrics(metrics_file: str | Path) -> tuple[list[dict], list[dict]]:
    """The step records and the evaluation records of a run's ``metrics.jsonl``."""
    records = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("kind") == "step"], [r for r in records if r.get("kind") == "eval"]


def plot_training(metrics_file: str | Path, png: str | Path, title: str = "") -> Path:
    """Write a PNG of the run's ``metrics.jsonl``: one panel per kind of curve present."""
    steps, evals = read_metrics(metrics_file)
    paired = [r for r in steps if "cosine" in r]
    panels = 2 + bool(paired)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    axes = axes[0]
    window = max(1, len(steps) // 25)

    ax = axes[0]
    if paired:
        for key, label in (("real_loss", "real batch"), ("syn_loss", "synthetic batch")):
            ax.plot([r["step"] for r in paired], running_mean([r[key] for r in paired], window), label=label)
    else:
        ax.plot([r["step"] for r in steps], running_mean([r["train_loss"] for r in steps], window), label="train")
    ax.set(title="training loss (running mean)", xlabel="step", ylabel="cross-entropy")
    ax.legend()

    if paired:
        ax = axes[1]
        x = [r["step"] for r in paired]
        ax.plot(x, [r["cosine"] for r in paired], lw=0.6, color="0.5", label="cosine(real, synthetic)")
        conflicts = [r for r in paired if r["conflict"]]
        ax.scatter([r["step"] for r in conflicts], [r["cosine"] for r in conflicts], s=6, color="C3",
                   label=f"conflict ({len(conflicts) / len(paired):.0%} of steps)")  # fmt: skip
        ax.axhline(0, color="k", lw=0.5)
        ax.set(title="gradient agreement", xlabel="step", ylabel="cosine")
        ax.legend(loc="lower right")

    ax = axes[-1]
    ax.plot([r["step"] for r in evals], [r["dev_accuracy"] for r in evals], marker="o")
    best = max(evals, key=lambda r: (r["dev_accuracy"], -r["dev_loss"]), default=None)
    if best is not None:
        ax.scatter([best["step"]], [best["dev_accuracy"]], s=80, facecolors="none", edgecolors="C3", label="kept")
        ax.legend()
    ax.set(title="dev accuracy", xlabel="step", ylabel="%")

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
