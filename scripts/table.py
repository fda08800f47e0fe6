"""Run methods x tasks x seeds through the Python API and write a Markdown results table.

Methods: `zero-shot`, `in-context` (no training), `real` (prompt tuning on the k-shot data), and
the real + synthetic strategies `syn`, `merged`, `merged_ls`, `real_then_syn`, `syn_then_real`,
`paired`, `paired+surgery` (the paper's method). Each run keeps its folder under --out, so a rerun
skips what is finished and a killed run resumes. Data come from ../shared/data.

    python scripts/table.py --tasks RTE MRPC SICK --seeds 13 42 --methods zero-shot in-context real \
        --out runs/real-only --report results/real_only_smollm2.md
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
from dawgen.evaluation.tables import results_table
from dawgen.models.loading import DEFAULT_MODEL
from dawgen.tasks import get_task

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FEWGEN = "{root}/{task}/fewgen-synthetic/16-13/gen-train.json"
UNTRAINED = ("zero-shot", "in-context")


def run_one(task: str, seed: int, method: str, args: argparse.Namespace) -> dict:
    folder = args.out / task / f"seed-{seed}" / method
    if (folder / RESULT_FILE).exists():  # finished earlier
        return json.loads((folder / RESULT_FILE).read_text())
    test = SHARED / task / get_task(task).test_file
    if method in UNTRAINED:
        return evaluate(task=task, test=test, model=args.model, method=method, data=SHARED, seed=seed, out=folder)
    combine, _, surgery = method.partition("+")
    config = PromptTuneConfig(
        seed=seed, max_steps=args.steps, eval_every=args.eval_every, batch_size=args.batch_size,
        syn_batch_size=args.syn_batch_size, learning_rate=args.lr, optimizer=args.optimizer, combine=combine,
        surgery=surgery == "surgery",
    )  # fmt: skip
    synthetic = None if combine == "real" else args.synthetic.format(root=SHARED, task=task)
    return prompt_tune(
        task=task, data=SHARED, model=args.model, test=test, synthetic=synthetic, out=folder, tune_config=config
    ).result


def report(results: dict, args: argparse.Namespace) -> str:
    by_cell = {(m, t): [results[t, s, m] for s in args.seeds] for t in args.tasks for m in args.methods}
    lines = [
        f"# {args.title}",
        "",
        f"Classifier {args.model}. Test accuracy in % (and F1 of the positive class for MRPC), mean (std) over "
        f"seeds {', '.join(map(str, args.seeds))}. K = 16 per label (LM-BFF splits in `../shared/data`); SICK is "
        "evaluated on `SICK/trial.tsv`. Trained prompts are selected by k-shot dev accuracy.",
        "",
        "Command:",
        "",
        "```bash",
        "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "```",
        "",
        *results_table(by_cell, args.methods, args.tasks),
        "",
        "Per seed (test accuracy; conflict rate of the paired steps where there is one):",
        "",
        "| task | seed | " + " | ".join(args.methods) + " |",
        "|---|---|" + "---|" * len(args.methods),
    ]
    for task in args.tasks:
        for seed in args.seeds:
            cells = []
            for method in args.methods:
                result = results[task, seed, method]
                cell = f"{result['test']['accuracy']:.1f}"
                if result.get("conflict_rate") is not None:
                    cell += f" ({result['conflict_rate']:.0%} conflicts)"
                cells.append(cell)
            lines.append(f"| {task} | {seed} | " + " | ".join(cells) + " |")
    trained = [r for r in results.values() if "config" in r]
    if trained:
        lines += ["", f"Prompt-tuning settings (first run): `{json.dumps(trained[0]['config'])}`; "
                  f"precision {trained[0]['precision']}."]  # fmt: skip
    synthetic = {task: r["synthetic"] for (task, _, _), r in results.items() if r.get("synthetic")}
    for task, info in synthetic.items():
        lines.append(f"- {task} synthetic set: {info['size']} examples after dropping {info['dropped_copies']} "
                     f"verbatim copies; per label {info['per_label']}.")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["RTE", "MRPC", "SICK"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[13, 42])
    parser.add_argument("--methods", nargs="+", default=["zero-shot", "in-context", "real"])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--synthetic", default=FEWGEN, help="path pattern with {root} and {task}")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--syn-batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--optimizer", default="adafactor")
    parser.add_argument("--out", type=Path, default=Path("runs/table"))
    parser.add_argument("--report", type=Path, default=Path("results/table.md"))
    parser.add_argument("--title", default="Results")
    args = parser.parse_args()
    results = {}
    for task in args.tasks:
        for seed in args.seeds:
            for method in args.methods:
                results[task, seed, method] = run_one(task, seed, method, args)
                print(task, seed, method, results[task, seed, method]["test"], flush=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report(results, args))
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
