"""Zero-shot, in-context and prompt tuning on real few-shot data only (no synthetic data).

Runs every (task, seed) through the Python API, keeps each run's folder (so a rerun skips what is
done and a killed run resumes), and writes a Markdown table of test accuracy (and F1 for MRPC)
as mean (std) over seeds, with the per-seed numbers and the command line.

    python scripts/real_only_baselines.py --tasks RTE MRPC SICK --seeds 13 42 --out runs/real-only \
        --report results/real_only_smollm2.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from dawgen.api import evaluate, prompt_tune
from dawgen.classifier.config import PromptTuneConfig
from dawgen.constants import RESULT_FILE
from dawgen.evaluation.metrics import aggregate, format_mean_std
from dawgen.models.loading import DEFAULT_MODEL

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TEST_FILES = {"RTE": "RTE/test.tsv", "MRPC": "MRPC/test.tsv", "SICK": "SICK/trial.tsv", "QNLI": "QNLI/test.tsv",
              "MNLI": "MNLI/dev_matched.jsonl", "SNLI": "SNLI/dev.jsonl"}  # fmt: skip
METHODS = ("zero-shot", "in-context", "prompt-tuning")


def run_one(task: str, seed: int, method: str, out: Path, args: argparse.Namespace) -> dict:
    folder = out / task / f"seed-{seed}" / method
    if (folder / RESULT_FILE).exists() and method != "prompt-tuning":
        return json.loads((folder / RESULT_FILE).read_text())
    test = SHARED / TEST_FILES[task]
    if method == "prompt-tuning":
        config = PromptTuneConfig(seed=seed, max_steps=args.steps, eval_every=args.eval_every,
                                  learning_rate=args.lr, optimizer=args.optimizer)  # fmt: skip
        return prompt_tune(task=task, data=SHARED, model=args.model, test=test, out=folder, tune_config=config).result
    kind = "in-context" if method == "in-context" else "zero-shot"
    return evaluate(task=task, test=test, model=args.model, method=kind, data=SHARED, seed=seed, out=folder)


def report(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"# Real data only: zero-shot, in-context, prompt tuning ({args.model})",
        "",
        "Test accuracy in % (F1 of the positive class for MRPC), mean (std) over seeds "
        f"{', '.join(map(str, args.seeds))}; K = 16 per label, LM-BFF splits from `../shared/data`; "
        "SICK is evaluated on `SICK/trial.tsv`. Prompt tuning keeps the prompt with the best "
        "k-shot dev accuracy.",
        "",
        "Command:",
        "",
        "```bash",
        "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "```",
        "",
        "| method | " + " | ".join(args.tasks) + " |",
        "|---|" + "---|" * len(args.tasks),
    ]
    for method in METHODS:
        cells = []
        for task in args.tasks:
            runs = [results[task, seed, method]["test"] for seed in args.seeds]
            stats = aggregate(runs)
            cell = format_mean_std(*stats["accuracy"])
            if "f1" in stats:
                cell += f" / F1 {format_mean_std(*stats['f1'])}"
            cells.append(cell)
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Per seed (accuracy):", "", "| task | seed | " + " | ".join(METHODS) + " |", "|---|---|---|---|---|"]
    for task in args.tasks:
        for seed in args.seeds:
            row = [f"{results[task, seed, m]['test']['accuracy']:.1f}" for m in METHODS]
            lines.append(f"| {task} | {seed} | " + " | ".join(row) + " |")
    first = results[args.tasks[0], args.seeds[0], "prompt-tuning"]
    lines += ["", f"Prompt tuning settings: `{json.dumps(first['config'])}`; precision: {first['precision']}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["RTE", "MRPC", "SICK"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 42])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--optimizer", default="adafactor")
    parser.add_argument("--out", type=Path, default=Path("runs/real-only"))
    parser.add_argument("--report", type=Path, default=Path("results/real_only_smollm2.md"))
    args = parser.parse_args()
    results = {}
    for task in args.tasks:
        for seed in args.seeds:
            for method in METHODS:
                results[task, seed, method] = run_one(task, seed, method, args.out, args)
                print(task, seed, method, results[task, seed, method]["test"], flush=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report(results, args))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
