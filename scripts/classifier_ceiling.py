"""The ceiling of the stage-3 classifier: learning curves over gold training data, per PEFT type.

For each task, seed, PEFT type (``prompt``, ``prefix``, ``lora``) and the full-model ``pft+prompt``
reference, train on K gold examples per label: the LM-BFF k-shot training split plus K - 16 rows per
label of the task's pool (its gold labels used: this is an oracle measurement, not the few-shot method;
every row of any k-shot split of the task is removed from the pool first). Dev is the k-shot dev split,
the test set is the task's (SICK: ``trial.tsv``). The step budget grows with K (``STEPS``). Each run
keeps its folder under --out, so a rerun skips what is finished and resumes what was killed.

    python scripts/classifier_ceiling.py --tasks SICK --types prompt lora --k 16 256 --threads 1
    python scripts/classifier_ceiling.py --collect --tasks RTE MRPC SICK \
        --report results/classifier_ceiling_smollm2.md     # table, JSON twin and PNG from the folders
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REFERENCE = "pft+prompt"  # every weight trains (with a soft prompt): the full-model reference
TYPES = ("prompt", "prefix", "lora", REFERENCE)
# K per label -> (steps, batch size); dev every 25 steps
STEPS = {16: (150, 8), 64: (200, 16), 256: (250, 16)}
# the full model at LM-BFF's learning rate range: 3e-5 moves it in a few hundred steps
REFERENCE_LR = 3e-5


def gold_split(task_name: str, seed: int, k: int) -> tuple[list, list]:
    """The k-shot split of ``seed`` with its training set topped up to ``k`` per label from the pool
    (gold labels; no row of any k-shot split of the task), sampled as the oracle method samples."""
    from dawgen.data.oracle import find_labelled_pool, kshot_folders, kshot_rows, sample_oracle
    from dawgen.data.sources import load_fewshot, load_labelled
    from dawgen.tasks import get_task

    task = get_task(task_name)
    split = load_fewshot(task, SHARED, seed=seed)
    if k == 16:
        return split.train, split.dev
    pool = load_labelled(task, find_labelled_pool(task, SHARED))
    extra = sample_oracle(task, pool, kshot_rows(task, kshot_folders(task, SHARED)), k - 16, seed)
    return split.train + extra.examples, split.dev


def run_one(
    model: str, task_name: str, seed: int, peft: str, k: int, out: Path, options: dict[str, Any]
) -> dict[str, Any]:
    """One training run (or its saved result), on a freshly loaded model (adapters may wrap it in place)."""
    from dawgen.baselines import BASELINES
    from dawgen.classifier.config import PromptTuneConfig
    from dawgen.classifier.run import prompt_tune
    from dawgen.config import config_from_dict
    from dawgen.data.sources import load_test
    from dawgen.models.loading import load_model
    from dawgen.tasks import get_task

    task = get_task(task_name)
    loaded = load_model(model)
    steps, batch = STEPS[k]
    folder = run_folder(out, task_name, seed, peft, k, options)
    train, dev = gold_split(task_name, seed, k)
    test = load_test(task, SHARED / task_name / task.test_file)
    common = {"seed": seed, "max_steps": steps, "batch_size": batch, "eval_every": 25, **options}
    if peft == REFERENCE:
        settings = config_from_dict(BASELINES[REFERENCE].config, {**common, "learning_rate": REFERENCE_LR})
        result = BASELINES[REFERENCE](loaded, task, train, dev, test, settings, folder, True)
    else:
        config = config_from_dict(PromptTuneConfig, common if peft == "prompt" else {**common, "peft": peft})
        result = prompt_tune(loaded, task, train, dev, test=test, config=config, out_dir=folder).result
    return {
        "task": task_name,
        "seed": seed,
        "peft": peft,
        "k": k,
        "options": options,
        "steps": steps,
        "batch_size": batch,
        "accuracy": round(result["test"]["accuracy"], 2),
        "balanced_accuracy": round(result["test"]["balanced_accuracy"], 2),
        "top_prediction_share": round(result["test"]["top_prediction_share"], 1),
        "dev_accuracy": round(result["dev"]["dev_accuracy"], 2) if "dev_accuracy" in result["dev"] else None,
        "best_step": result.get("best_step"),
        "trainable_parameters": result["trainable_parameters"],
        "seconds_per_step": round(result["train_seconds"] / steps, 2),
        "precision": result["precision"],
    }


def run_folder(out: Path, task: str, seed: int, peft: str, k: int, options: dict[str, Any]) -> Path:
    """``<out>/<task>/seed-<s>/<type>-k<K>[-<key>=<value>...]``."""
    suffix = "".join(f"-{key}={value}" for key, value in sorted(options.items()))
    return out / task / f"seed-{seed}" / f"{peft}-k{k}{suffix}"


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs of training options (values read as YAML: numbers, booleans, null)."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: --set {pair!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options


def collect(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The records of every finished run under --out, in a stable order."""
    records = []
    for task in args.tasks:
        for path in sorted((args.out / task).glob("seed-*/*-k*/record.json")):
            records.append(json.loads(path.read_text()))
    order = {name: i for i, name in enumerate(TYPES)}
    return sorted(records, key=lambda r: (r["task"], r["seed"], order.get(r["peft"], 9), r["k"]))


def write_report(records: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Markdown table, JSON twin and one PNG (balanced accuracy vs K, one panel per task)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = Path(args.report)
    keys = ("task", "seed", "peft", "k", "steps", "accuracy", "balanced_accuracy", "seconds_per_step")
    curves = [r for r in records if not r.get("options")]  # the sweeps' runs go to the table only
    twin = [{k: r[k] for k in keys} | ({"options": r["options"]} if r.get("options") else {}) for r in records]
    report.with_suffix(".json").write_text(json.dumps(twin, indent=1) + "\n")
    tasks = sorted({r["task"] for r in records})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for i, peft in enumerate(TYPES):  # one colour per type in every panel
            rows = sorted((r for r in curves if r["task"] == task and r["peft"] == peft), key=lambda r: r["k"])
            if rows:
                x, y = [r["k"] for r in rows], [r["balanced_accuracy"] for r in rows]
                ax.plot(x, y, marker="o", color=f"C{i}", label=peft)
        ax.set(title=task, xscale="log", xlabel="gold examples per label (K)", ylabel="balanced accuracy %")
        ax.minorticks_off()
        ax.set_xticks(sorted(STEPS), [str(k) for k in sorted(STEPS)])
        ax.legend()
    fig.tight_layout()
    png = report.with_suffix(".png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    header = "| task | seed | type | options | K | steps x batch | trainable | acc | balanced acc | top-label share "
    lines = [header + "| dev acc | s/step |", "|" + "---|" * 12]
    for r in records:
        lines.append(
            f"| {r['task']} | {r['seed']} | {r['peft']} | {_options(r)} | {r['k']} | {r['steps']} x {r['batch_size']} "
            f"| {r['trainable_parameters']:,} | {r['accuracy']:.1f} | {r['balanced_accuracy']:.1f} "
            f"| {r['top_prediction_share']:.0f}% | {r['dev_accuracy']} | {r['seconds_per_step']:.2f} |"
        )
    precisions = sorted({r["precision"] for r in records})
    table = "\n".join(lines)
    report.with_name(report.stem + "_table.md").write_text(
        f"Precision: {'; '.join(precisions)}.\n\n{table}\n\n![balanced accuracy vs K]({png.name})\n"
    )


def _options(record: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted((record.get("options") or {}).items())) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["RTE", "MRPC", "SICK"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[13])
    parser.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    parser.add_argument("--k", nargs="+", type=int, default=sorted(STEPS), choices=sorted(STEPS))
    parser.add_argument("--model", default=None, help="classifier model (default: the offline SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 when two jobs share 2 cores)")
    parser.add_argument("--out", type=Path, default=Path("runs/ceiling"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="training options (a sweep)")
    parser.add_argument("--collect", action="store_true", help="only gather finished runs into --report")
    parser.add_argument("--report", default=None, help="results/<name>.md: writes <name>.json, .png, _table.md")
    args = parser.parse_args()
    if not args.collect:
        import torch

        from dawgen.models.loading import DEFAULT_MODEL

        if args.threads:
            torch.set_num_threads(args.threads)
        print("$ python " + shlex.join(sys.argv), flush=True)
        options = parse_options(args.set)
        for task in args.tasks:
            for seed in args.seeds:
                for k in args.k:
                    for peft in args.types:
                        path = run_folder(args.out, task, seed, peft, k, options) / "record.json"
                        if path.exists():  # finished earlier
                            continue
                        record = run_one(args.model or DEFAULT_MODEL, task, seed, peft, k, args.out, options)
                        path.write_text(json.dumps(record, indent=1) + "\n")
                        print(json.dumps(record), flush=True)
    if args.report:
        write_report(collect(args), args)


if __name__ == "__main__":
    main()
