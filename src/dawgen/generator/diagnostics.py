"""What generator tuning shows: weight statistics, dev loss and label discrimination, a plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import torch

from dawgen.evaluation.plots import read_metrics, running_mean
from dawgen.generator.bilevel import GeneratorObjective
from dawgen.generator.losses import entropy_ratio
from dawgen.generator.sequences import GenBatch, GenSequence, collate

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def weight_stats(weights: torch.Tensor, batch: GenBatch, tokenizer: Any, top_k: int = 5) -> dict[str, Any]:
    """Entropy of the token weights (as a distribution; ``weight_entropy_ratio`` = 1 means uniform),
    their spread, and the ``top_k`` tokens the weight net favours in the batch's first sample."""
    weights = weights.detach().float().cpu()
    ratio = float(entropy_ratio(weights))
    first = (batch.target_rows.cpu() == 0).nonzero().squeeze(1)
    order = first[weights[first].argsort(descending=True)][:top_k]
    ids = batch.target_ids.cpu()
    return {
        "weight_entropy": ratio * math.log(len(weights)),
        "weight_entropy_ratio": ratio,
        "weight_max": float(weights.max()),
        "weight_min": float(weights.min()),
        "weight_std": float(weights.std()) if len(weights) > 1 else 0.0,
        "top_tokens": [[tokenizer.decode([int(ids[i])]), round(float(weights[i]), 4)] for i in order],
    }


@torch.no_grad()
def label_log_likelihoods(
    objective: GeneratorObjective,
    prompts: torch.Tensor,
    sequences: Sequence[GenSequence],
    pad_id: int,
    batch_size: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """[n, L] sum of each sequence's target-token log-probs under each label's prompt, and [n] its
    target length."""
    device = prompts.device
    sums, lengths = [], []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        batch = collate(chunk, objective.prompt_slots, pad_id).to(device)
        scores = objective.every_label(prompts, batch)
        total = torch.zeros(len(chunk), objective.num_labels, dtype=scores.logprob.dtype, device=device)
        sums.append(total.index_add(0, batch.target_rows, scores.logprob).cpu())
        lengths.append(torch.tensor([len(s.target) for s in chunk]))
    return torch.cat(sums), torch.cat(lengths)


def dev_metrics(
    objective: GeneratorObjective, prompts: torch.Tensor, sequences: Sequence[GenSequence], pad_id: int, batch_size: int
) -> dict[str, float]:
    """``dev_loss``: the LM loss (mean per target token) under the gold label's prompt;
    ``dev_discrimination``: % of sequences whose own-label likelihood is the highest of all labels."""
    sums, lengths = label_log_likelihoods(objective, prompts, sequences, pad_id, batch_size)
    gold = torch.tensor([s.label for s in sequences])
    own = sums.gather(1, gold[:, None]).squeeze(1)
    return {
        "dev_loss": float(-own.sum() / lengths.sum()),
        "dev_discrimination": 100.0 * float((sums.argmax(1) == gold).float().mean()),
    }


def plot_generator_training(metrics_file: str | Path, png: str | Path, title: str = "") -> Path:
    """A PNG of a generator run's ``metrics.jsonl``: the losses, the token weights, and dev per epoch."""
    steps, evals = read_metrics(metrics_file)
    weighted = [r for r in steps if "weight_entropy_ratio" in r]
    panels = 2 + bool(weighted)
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    axes = axes[0]
    window = max(1, len(steps) // 25)

    ax = axes[0]
    for key, label in (("lm", "L_wgen (LM)"), ("dist", "L_dist"), ("disc_lookahead", "L_disc(Q')")):
        points = [r for r in steps if r.get(key) is not None]
        if points:
            ax.plot([r["step"] for r in points], running_mean([r[key] for r in points], window), label=label)
    ax.set(title="training losses (running mean)", xlabel="step")
    ax.legend()

    if weighted:
        ax = axes[1]
        x = [r["step"] for r in weighted]
        ax.plot(x, [r["weight_entropy_ratio"] for r in weighted], color="C0")
        ax.set(title="token weights", xlabel="step", ylim=(0, 1.05))
        ax.set_ylabel("entropy / log N (1 = uniform)", color="C0")
        twin = ax.twinx()
        twin.plot(x, [r["weight_max"] for r in weighted], color="C1", lw=0.8)
        twin.set_ylabel("largest weight (mean is 1)", color="C1")

    ax = axes[-1]
    x = [r["epoch"] for r in evals]
    ax.plot(x, [r["dev_loss"] for r in evals], marker="o", color="C0", label="dev LM loss")
    best = min(evals, key=lambda r: r["dev_loss"], default=None)
    if best is not None:
        ax.scatter([best["epoch"]], [best["dev_loss"]], s=80, facecolors="none", edgecolors="C3", label="kept")
    ax.set(title="dev split", xlabel="epoch", ylabel="LM loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="upper left")
    twin = ax.twinx()
    twin.plot(x, [r["dev_discrimination"] for r in evals], marker="s", color="C2")
    twin.set_ylabel("label discrimination (%)", color="C2")

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    png = Path(png)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png
