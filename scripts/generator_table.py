"""Generator variants side by side: dev LM loss and label discrimination of plain, fewgen and dawgen.

    python scripts/generator_table.py --tasks RTE MRPC --seed 13 --epochs 6 \
        --out runs/generator --report results/generator_smollm2.md

Each (task, variant) run lives in ``<out>/<task>/seed-<seed>/<variant>`` and is reused when it has
finished with the same settings (a killed run resumes). The report gives, per run, the untuned label
prompts' dev numbers (epoch 0), those of the kept prompts (best dev LM loss), and the best label
discrimination reached at any epoch.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from dawgen.api import tune_generator
from dawgen.generator.config import GeneratorConfig, Variant
from dawgen.models.loading import DEFAULT_MODEL
from dawgen.utils.io import atomic_write_text

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(task: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    config = GeneratorConfig(
        variant=variant, epochs=args.epochs, per_label_batch=args.per_label_batch, seed=args.seed,
        num_prompt_tokens=args.prompt_tokens,
    )  # fmt: skip
    folder = args.out / task / f"seed-{args.seed}" / variant
    return tune_generator(task=task, data=SHARED, model=args.model, out=folder, generator_config=config).result


def report(results: dict[tuple[str, str], dict[str, Any]], args: argparse.Namespace) -> str:
    command = "python scripts/generator_table.py " + shlex.join(sys.argv[1:])
    first = next(iter(results.values()))
    lines = [
        f"# Generator tuning: plain vs FewGen vs DawGen ({args.model})",
        "",
        f"Label prompts of {args.prompt_tokens} tokens on a frozen {args.model}, k-shot seed {args.seed} "
        f"(16 per label), {args.epochs} epochs of {args.per_label_batch} examples per label per batch; the kept "
        "prompts are those with the lowest dev LM loss (method.md). *Dev LM loss*: mean token NLL of the "
        "second sentence (and eos) of the k-shot dev pairs under their own label's prompt. *Label "
        "discrimination*: % of dev pairs whose own label's prompt gives the highest likelihood of all label "
        f"prompts (chance = 100 / number of labels). Precision {first['precision']}.",
        "",
        "Command:",
        "",
        f"```bash\n{command}\n```",
        "",
        "| task | variant | dev LM loss: untuned -> kept | label discrimination: untuned -> kept "
        "| best discrimination (epoch) | kept epoch | train time |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, variant), r in results.items():
        untuned, kept = r["history"][0], r["dev"]
        best = max(r["history"], key=lambda h: h["dev_discrimination"])
        lines.append(
            f"| {task} | {variant} | {untuned['dev_loss']:.3f} -> {kept['dev_loss']:.3f} "
            f"| {untuned['dev_discrimination']:.1f} -> {kept['dev_discrimination']:.1f} "
            f"| {best['dev_discrimination']:.1f} ({best['epoch']}) | {r['best_epoch']} | {r['train_seconds']:.0f} s |"
        )
    lines += ["", "Per-epoch dev numbers (loss / discrimination %):", ""]
    for (task, variant), r in results.items():
        cells = ", ".join(f"{h['epoch']}: {h['dev_loss']:.3f} / {h['dev_discrimination']:.0f}" for h in r["history"])
        lines.append(f"- {task} {variant}: {cells}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["RTE", "MRPC"])
    parser.add_argument("--variants", nargs="+", default=[v.value for v in Variant], choices=[v.value for v in Variant])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--per-label-batch", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", type=Path, default=Path("runs/generator"))
    parser.add_argument("--report", type=Path, default=None, help="Markdown file to write")
    args = parser.parse_args()
    results = {(task, variant): run(task, variant, args) for task in args.tasks for variant in args.variants}
    text = report(results, args)
    print(text)
    if args.report:
        atomic_write_text(args.report, text)


if __name__ == "__main__":
    main()
