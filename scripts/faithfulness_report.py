"""The report of ``generator_faithfulness.py``: a Markdown table, the goals checked, a JSON list and the
weight-entropy curves (``<report stem>_entropy.png``)."""

from __future__ import annotations

import json
import shlex
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from dawgen.utils.io import atomic_write_json, atomic_write_text

JSON_KEYS = ("task", "seed", "generator_model", "variant", "depth", "config", "dev_lm_loss", "label_discrimination",
             "weight_entropy", "no_eos_rate", "judge_agreement", "generation_options")  # fmt: skip
DISCRIMINATION_GOAL = {"RTE": 70.0, "MRPC": 70.0, "SICK": 55.0}
NO_EOS_GOAL = 0.20
JUDGE_GAP_GOAL = 5.0
ORDER = ("dawgen", "fewgen", "plain")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def label(record: dict[str, Any]) -> str:
    """The config's name, with its epochs when they are not the usual 6 and its generation options."""
    epochs = record["generator_options"].get("epochs", 6)
    generation = ", ".join(f"{k}={v}" for k, v in record["generation_options"].items())
    return record["config"] + ("" if epochs == 6 else f" ({epochs} epochs)") + (f"; {generation}" if generation else "")


def table(records: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| task | generator | config | dev LM loss | label discr. % (best epoch) | weight entropy (last epoch) "
        "| no_eos % | judge bal. agreement (judge on real test) | kept / attempts | tune s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['task']} | {r['generator_model']} | {label(r)} | {r['dev_lm_loss']:.3f} "
            f"| {r['label_discrimination']:.1f} ({r['best_discrimination']:.1f}) "
            f"| {_fmt(r['weight_entropy'], 2)} ({_fmt(r['weight_entropy_last_epoch'], 2)}) "
            f"| {100 * r['no_eos_rate']:.1f} | {_fmt(r['judge_agreement'])} ({_fmt(r['judge_real_balanced'])}) "
            f"| {r['kept']} / {r['attempts']} | {r['train_seconds']:.0f} |"
        )
    return lines


def _name(record: dict[str, Any]) -> str:
    return f"{record['config']}, {record['generator_model']}"


def goals(records: list[dict[str, Any]]) -> list[str]:
    """The issue's goals, each held or not, per task (the best configuration by label discrimination);
    the variants' order over the main generator model's runs (the one with the most)."""
    lines = []
    models = [r["generator_model"] for r in records]
    main_model = max(set(models), key=models.count)
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    for task, rows in by_task.items():
        best = max(rows, key=lambda r: (r["label_discrimination"], -r["dev_lm_loss"]))
        goal = DISCRIMINATION_GOAL.get(task, 70.0)
        held = "held" if best["label_discrimination"] >= goal else "not held"
        lines.append(f"- {task}: best label discrimination {best['label_discrimination']:.1f}% ({_name(best)}); "
                     f"goal >= {goal:.0f}: **{held}**.")  # fmt: skip
        judged = [r for r in rows if r["judge_agreement"] is not None]
        if judged:
            close = min(judged, key=lambda r: abs(r["judge_agreement"] - r["judge_real_balanced"]))
            gap = close["judge_agreement"] - close["judge_real_balanced"]
            held = "held" if abs(gap) <= JUDGE_GAP_GOAL else "not held"
            lines.append(f"- {task}: judge agreement closest to the judge's {close['judge_real_balanced']:.1f} on the "
                         f"real test set: {close['judge_agreement']:.1f} ({_name(close)}), {gap:+.1f} points "
                         f"(range over the configs {min(r['judge_agreement'] for r in judged):.1f}-"
                         f"{max(r['judge_agreement'] for r in judged):.1f}); goal within {JUDGE_GAP_GOAL:.0f}: "
                         f"**{held}**.")  # fmt: skip
        low = min(rows, key=lambda r: r["no_eos_rate"])
        held = "held" if low["no_eos_rate"] <= NO_EOS_GOAL else "not held"
        lines.append(f"- {task}: lowest no_eos rate {100 * low['no_eos_rate']:.1f}% ({_name(low)}); goal <= "
                     f"{100 * NO_EOS_GOAL:.0f}%: **{held}**.")  # fmt: skip
        for depth in sorted({r["depth"] for r in rows}):  # the variants at their plain settings
            scores = {}
            for variant in ORDER:
                same = [r["label_discrimination"] for r in rows
                        if r["config"] == f"{variant}-{depth}" and r["generator_model"] == main_model]  # fmt: skip
                if same:
                    scores[variant] = max(same)
            if len(scores) == len(ORDER):
                ordered = scores["dawgen"] >= scores["fewgen"] >= scores["plain"]
                cells = " / ".join(f"{v} {scores[v]:.1f}" for v in ORDER)
                lines.append(f"- {task}, {main_model}, {depth} prompts: discrimination {cells}; "
                             f"DawGen >= FewGen >= plain: **{'held' if ordered else 'not held'}**.")  # fmt: skip
    return lines


def entropy_plot(records: list[dict[str, Any]], png: Path) -> None:
    weighted = [r for r in records if r["entropy_curve"]]
    tasks = sorted({r["task"] for r in weighted})
    if not tasks:
        return
    figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.5), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in weighted if r["task"] == task):
            axis.plot(range(1, len(r["entropy_curve"]) + 1), r["entropy_curve"], label=r["config"], linewidth=1)
        axis.set(title=f"{task}: token-weight entropy", xlabel="step", ylabel="fraction of uniform", ylim=(0, 1.02))
        axis.legend(fontsize=7)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)


def write_report(paths: list[Path], report: Path | None, json_out: Path | None, notes: Path | None = None) -> None:
    records = [json.loads(p.read_text()) for p in paths]
    tasks = list(DISCRIMINATION_GOAL)
    records.sort(key=lambda r: (tasks.index(r["task"]) if r["task"] in tasks else len(tasks), r["generator_model"],
                                r["depth"], ORDER[::-1].index(r["variant"]), r["config"]))  # fmt: skip
    if json_out is not None:
        atomic_write_json(json_out, [{key: r[key] for key in JSON_KEYS} for r in records])
    if report is None:
        print("\n".join(table(records)))
        return
    png = report.with_name(report.stem + "_entropy.png")
    entropy_plot(records, png)
    commands = sorted({r["command"] for r in records})
    first = records[0]
    text = [
        "# Generator faithfulness: do the samples carry their labels? (SmolLM2-135M)",
        "",
        f"k-shot seed {first['seed']} (16 per label); precision {first['precision']}. Stage 1 keeps the prompts "
        "with the best dev LM loss; *label discrimination* = % of the 32 (SICK: 48) k-shot dev pairs whose own "
        "label's prompt gives the second sentence the highest likelihood (chance 50, SICK 33.3). *Weight entropy*: "
        "the token weights' entropy as a fraction of uniform's, mean over all steps (last epoch in brackets); "
        "`plain` has no weights. *no_eos %*: generation attempts dropped for not ending within the token budget "
        "(a fixed number of attempts per label, no top-up). *Judge*: MiniLM pair features + logistic regression "
        "fitted on 2,000 pool pairs **with their gold labels** (a diagnostic only; the method never sees them), "
        "its balanced agreement with the kept samples' labels beside its balanced accuracy on the real test set.",
        "",
        "Commands:",
        "",
        "```bash",
        *commands,
        "# the report: " + shlex.join(["python", *sys.argv]),
        "```",
        "",
        *table(records),
        "",
        "## Goals",
        "",
        *goals(records),
        "",
        f"Weight entropy per step: `{png.name}`.",
        "",
    ]
    if notes is not None:
        text += [notes.read_text().rstrip(), ""]
    atomic_write_text(report, "\n".join(text))
