"""Do the generator's samples carry their labels? Variant x prompt depth, measured end to end.

    python scripts/generator_faithfulness.py --tasks RTE --configs plain:input dawgen:deep \
        [--epochs 6] [--per-label 200] [--gen-set stop_at=sentence] [--out runs/faithfulness]
    python scripts/generator_faithfulness.py --collect --report results/generator_faithfulness_smollm2.md \
        --json results/generator_faithfulness_smollm2.json

A config is ``variant:depth[:key=value,...]`` (generator options, e.g. ``dawgen:input:weight_temperature=4``).
For each (task, config): stage 1 on the k-shot split of seed ``--seed`` (kept prompts: best dev LM loss),
then ``--per-label`` generation attempts per label (no top-up, so the drop rates are over a fixed number
of attempts), then a diagnostic judge: MiniLM pair features + logistic regression fitted on the task's
pool **with its gold labels** (never used by the method; diagnostics only) reads the kept samples. Its
balanced accuracy on the real test set says how far to trust it. Everything is cached under ``--out``
and resumes; each finished (task, config) writes ``record.json``, which ``--collect`` gathers.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from dawgen.api import generate_synthetic, tune_generator
from dawgen.config import config_from_dict, to_dict
from dawgen.constants import GENERATOR_DIR, METRICS_FILE, RESULT_FILE
from dawgen.data.sources import load_test
from dawgen.data.synthetic import load_synthetic
from dawgen.generator.config import GeneratorConfig
from dawgen.models.loading import DEFAULT_MODEL
from dawgen.synthesis.config import GenerationConfig
from dawgen.synthesis.embeddings import SentenceEncoder
from dawgen.synthesis.judge import Judge, agreement, pair_features
from dawgen.tasks.registry import get_task
from dawgen.utils.io import atomic_write_json

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
POOLS = ("pool/train.json", "pool/train.tsv")
TEST_FILES = {"SICK": "trial.tsv"}
JUDGE_ROWS = 2000  # pool rows the diagnostic judge is fitted on
# what the code did before these generator options existed (a run saved without them did this)
BEFORE_OPTIONS = {"weight_temperature": 1.0, "weight_floor": 0.0, "weight_min_entropy": 0.0, "eos_weight": 1.0,
                  "lambda_disc": 0.0}  # fmt: skip


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """``variant:depth[:k=v,...]`` -> (name, generator options)."""
    variant, depth, *rest = text.split(":")
    options: dict[str, Any] = {"variant": variant, "prompt_depth": depth}
    for item in ",".join(rest).split(",") if rest else []:
        key, value = item.split("=", 1)
        options[key] = yaml.safe_load(value)
    return text.replace(":", "-").replace(",", "-").replace("=", ""), options


def parse_settings(items: list[str]) -> dict[str, Any]:
    return {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in items)}


def task_file(task: str, names: tuple[str, ...]) -> Path:
    for name in names:
        if (SHARED / task / name).is_file():
            return SHARED / task / name
    raise FileNotFoundError(f"none of {names} under {SHARED / task}")


def entropy_summary(metrics: Path) -> dict[str, Any]:
    """The weight entropy (fraction of uniform) per step, its mean over all steps and over the last epoch."""
    steps = [json.loads(line) for line in metrics.read_text().splitlines()]
    steps = [r for r in steps if r.get("kind") == "step" and "weight_entropy_ratio" in r]
    if not steps:
        return {"weight_entropy": None, "weight_entropy_last_epoch": None, "entropy_curve": []}
    last = [r["weight_entropy_ratio"] for r in steps if r["epoch"] == steps[-1]["epoch"]]
    curve = [round(r["weight_entropy_ratio"], 4) for r in steps]
    return {
        "weight_entropy": round(sum(curve) / len(curve), 4),
        "weight_entropy_last_epoch": round(sum(last) / len(last), 4),
        "entropy_curve": curve,
    }


class DiagnosticJudge:
    """The pool-fitted judge of one task (gold pool labels: a diagnostic, never the method's)."""

    def __init__(self, task: str, seed: int) -> None:
        self.spec = get_task(task)
        self.encoder = SentenceEncoder()
        pool = load_test(self.spec, task_file(task, POOLS))
        rows = random.Random(seed).sample(pool, min(JUDGE_ROWS, len(pool)))
        self.judge = Judge(self.spec.labels).fit(pair_features(self.encoder, rows), [e.label for e in rows])
        test = load_test(self.spec, SHARED / task / TEST_FILES.get(task, "test.tsv"))
        self.real = agreement(self.judge, pair_features(self.encoder, test), test)

    def read(self, synthetic: Path) -> dict[str, Any]:
        examples = load_synthetic(self.spec, synthetic, drop_copies=False).examples
        if not examples:
            return {"examples": 0, "balanced_agreement": None, "agreement": None}
        return agreement(self.judge, pair_features(self.encoder, examples), examples)


def finished_tuning(folder: Path, config: GeneratorConfig) -> dict[str, Any] | None:
    """The result of a finished stage 1 in ``folder`` whose settings are ``config``'s, where options the
    code gained since then (absent from the saved settings) stand at the values that reproduce the older
    code (``BEFORE_OPTIONS``); None if there is none (``tune_generator`` then runs, or refuses other settings)."""
    path = folder / RESULT_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    same = all(saved["config"].get(key, BEFORE_OPTIONS.get(key)) == value for key, value in to_dict(config).items())
    return saved if same else None


def run_one(
    task: str, name: str, options: dict[str, Any], args: argparse.Namespace, judge: DiagnosticJudge | None
) -> None:
    folder = args.out / task / f"seed-{args.seed}" / args.model_name / name
    settings = {"epochs": args.epochs, "seed": args.seed, **options}
    config = config_from_dict(GeneratorConfig, settings, f"config {name}")
    tuned = finished_tuning(folder, config)
    if tuned is None:
        tuned = tune_generator(task=task, data=SHARED, model=args.model, out=folder, generator_config=config).result
    if args.tune_only:
        return
    generation = GenerationConfig(**{"per_label": args.per_label, "top_up_rounds": 0, "seed": args.seed,
                                     "batch_size": 16, **parse_settings(args.gen_set)})  # fmt: skip
    synthetic = folder / f"synthetic-{args.gen_name}" / "synthetic.jsonl"
    pool = task_file(task, POOLS)
    # few_shot: the k-shot split, which stage 2's k-shot filters learn from when they are on
    summary = generate_synthetic(generator=folder / GENERATOR_DIR, out=synthetic, pool=pool, few_shot=SHARED,
                                 generation_config=generation).summary  # fmt: skip
    attempted = sum(label["attempted"] for label in summary["labels"].values())
    assert judge is not None
    read = judge.read(synthetic)
    record = {
        "task": task, "seed": args.seed, "generator_model": args.model_name, "variant": options["variant"],
        "depth": options["prompt_depth"], "config": name, "generator_options": settings,
        "generation_options": parse_settings(args.gen_set),
        "dev_lm_loss": round(tuned["dev"]["dev_loss"], 4),
        "label_discrimination": round(tuned["dev"]["dev_discrimination"], 2),
        "best_discrimination": max(h["dev_discrimination"] for h in tuned["history"]),
        "untuned_discrimination": tuned["history"][0]["dev_discrimination"],
        "kept_epoch": tuned["best_epoch"], "history": tuned["history"],
        **entropy_summary(folder / METRICS_FILE),
        "attempts": attempted, "kept": summary["written"],
        "drops": summary["filters"],
        "no_eos_rate": round(summary["filters"].get("no_eos", 0) / max(attempted, 1), 4),
        "judge_agreement": read["balanced_agreement"], "judge_agreement_raw": read["agreement"],
        "judge_per_label": {k: v["agreement"] for k, v in read.get("per_label", {}).items()},
        "judge_real_balanced": judge.real["balanced_agreement"], "judge_real_accuracy": judge.real["agreement"],
        "precision": tuned["precision"], "compute": tuned["compute"], "train_seconds": tuned["train_seconds"],
        "generation_seconds": summary["this_run"]["seconds"], "command": shlex.join(sys.argv),
    }  # fmt: skip
    atomic_write_json(folder / f"record-{args.gen_name}.json", record)
    print(json.dumps({k: record[k] for k in ("task", "config", "dev_lm_loss", "label_discrimination",
                                              "weight_entropy", "no_eos_rate", "judge_agreement")}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["RTE"])
    parser.add_argument("--configs", nargs="+", default=["plain:input"])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--per-label", type=int, default=200)
    parser.add_argument("--gen-set", nargs="*", default=[], help="generation options KEY=VALUE")
    parser.add_argument("--gen-name", default="default", help="name of these generation options in the cache")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--model-name", default="smollm2-135m")
    parser.add_argument("--out", type=Path, default=Path("runs/faithfulness"))
    parser.add_argument("--tune-only", action="store_true", help="stage 1 only (generation and judge later)")
    parser.add_argument("--collect", action="store_true", help="gather the finished records and write the report")
    parser.add_argument("--report", type=Path)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--notes", type=Path, help="Markdown appended to the report (the reading of the numbers)")
    args = parser.parse_args()
    if args.collect:
        from faithfulness_report import write_report

        write_report(sorted(args.out.glob("*/seed-*/*/*/record-*.json")), args.report, args.json, args.notes)
        return
    for task in args.tasks:
        judge = None if args.tune_only else DiagnosticJudge(task, args.seed)
        for text in args.configs:
            name, options = parse_config(text)
            run_one(task, name, options, args, judge)


if __name__ == "__main__":
    main()
