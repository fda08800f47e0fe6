"""The quality report as one figure: label balance, length, copies and diversity, embedding similarity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

SYN_COLOR, REAL_COLOR = "C0", "C1"


def _paired_bars(ax: Any, labels: list[str], synthetic: list[float], real: list[float], fmt: str) -> None:
    """Synthetic and real values side by side for every label, each bar annotated."""
    x = np.arange(len(labels))
    for offset, values, name, color in ((-0.2, synthetic, "synthetic", SYN_COLOR), (0.2, real, "real", REAL_COLOR)):
        bars = ax.bar(x + offset, [v or 0 for v in values], 0.4, label=name, color=color)
        ax.bar_label(bars, [fmt.format(v) if v is not None else "-" for v in values], fontsize=8, padding=2)
    ax.set_xticks(x, labels)
    ax.margins(y=0.3)
    ax.legend(fontsize=8, loc="upper left", ncol=2)


def _balance(ax: Any, report: dict[str, Any], labels: list[str]) -> None:
    balance = report["label_balance"]
    real_total = max(sum(balance["real"].values()), 1)
    _paired_bars(ax, labels, [balance["synthetic_share"][label] for label in labels],
                 [balance["real"][label] / real_total for label in labels], "{:.0%}")  # fmt: skip
    counts = ", ".join(f"{label}: {balance['synthetic'][label]}" for label in labels)
    ax.set(title=f"label balance (synthetic {counts})", ylabel="share of the set")


def _length(ax: Any, report: dict[str, Any], labels: list[str]) -> None:
    lengths = report["length_words"]
    _paired_bars(ax, labels, [lengths[label]["synthetic"] for label in labels],
                 [lengths[label]["real"] for label in labels], "{:.1f}")  # fmt: skip
    ax.set(title="mean length of the generated side", ylabel="words")


def _diversity(ax: Any, report: dict[str, Any], labels: list[str]) -> None:
    """Per label: distinct-1/2, self-BLEU, and the copy rates of pair tasks."""
    per_label = report["diversity"]["per_label"]
    series = {"distinct-1": [per_label[label]["distinct_1"] for label in labels],
              "distinct-2": [per_label[label]["distinct_2"] for label in labels],
              "self-BLEU": [per_label[label]["self_bleu"] for label in labels]}  # fmt: skip
    if "copies" in report:
        copies = report["copies"]["per_label"]
        series["verbatim copies"] = [copies[label]["verbatim_rate"] for label in labels]
        near = f"near copies (overlap >= {report['copies']['threshold']})"
        series[near] = [copies[label]["near_copy_rate"] for label in labels]
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x - 0.4 + width * (i + 0.5), [v or 0 for v in values], width, label=name)
        ax.bar_label(bars, [f"{v:.2f}" if v is not None else "-" for v in values], fontsize=7, padding=1)
    real, matched = report["diversity"]["real"], report["diversity"]["synthetic_size_matched"]
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.35)
    title = (
        f"synthetic diversity (samples of {report['diversity']['sample']}) and copies, per label\n"
        f"at the real set's size: distinct-2 {_number(matched['distinct_2'])} (real {_number(real['distinct_2'])}), "
        f"self-BLEU {_number(matched['self_bleu'])} (real {_number(real['self_bleu'])})"
    )
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="upper center")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _embeddings(ax: Any, report: dict[str, Any], labels: list[str]) -> None:
    """Cosine of every synthetic label's centroid with every real label's, MMD^2 on the diagonal's labels."""
    embeddings = report.get("embeddings")
    if not embeddings or not embeddings["centroid_cosine_matrix"]:
        ax.axis("off")
        ax.text(0.5, 0.5, "embedding similarity not computed", ha="center", va="center")
        return
    matrix = embeddings["centroid_cosine_matrix"]
    rows = [label for label in labels if label in matrix]
    columns = [label for label in labels if label in next(iter(matrix.values()))]
    values = np.array([[matrix[r][c] for c in columns] for r in rows])
    low, high = values.min() - 0.05, values.max() + 0.05  # the data's own range: the differences are small
    image = ax.imshow(values, cmap="viridis", vmin=low, vmax=high)
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="w" if value < (low + high) / 2 else "k")
    mmd = embeddings["per_label"]
    ax.set_yticks(range(len(rows)), [f"{r}\n(MMD² {mmd[r]['mmd2_rbf']:.3f})" if r in mmd else r for r in rows])
    ax.set_xticks(range(len(columns)), columns)
    ax.set(title=f"centroid cosine, {embeddings['model']}", xlabel="real label", ylabel="synthetic label")
    plt.colorbar(image, ax=ax, fraction=0.046)


def plot_quality(report: dict[str, Any], png: str | Path) -> Path:
    """Write the report's figure to ``png``."""
    labels = list(report["label_balance"]["synthetic"])
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _balance(axes[0, 0], report, labels)
    _length(axes[0, 1], report, labels)
    _diversity(axes[1, 0], report, labels)
    _embeddings(axes[1, 1], report, labels)
    size = report["size"]
    fig.suptitle(f"{report.get('task', '')}: {Path(report.get('synthetic_file', '')).name} "
                 f"({size['synthetic']} synthetic vs {size['real']} real)")  # fmt: skip
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
