"""Label consistency of a pipeline run's synthetic sets (``dawgen judge-synthetic``), as one Markdown table.

    python scripts/judge_table.py runs/small --seeds 13 --fewgen --out results/label_consistency \
        --report results/label_consistency_smollm2.md

For every task and seed of RUN_DIR/results.json, the synthetic sets its methods trained on are judged by
a MiniLM + logistic-regression judge fitted on the task's pool with its gold labels (rows the few-shot
learner never sees as labelled data) and checked on the run's test set. ``--fewgen`` adds FewGen's public
set of that task and seed where the data root has one. Per task and seed, the JSON report goes to
``--out/<TASK>-<seed>.json``; a report already there is read back, not recomputed (delete it to redo).
Percentages are balanced (the mean over labels of the per-label rate), as the test sets are not.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dawgen.api import judge_synthetic
from dawgen.config import config_from_dict
from dawgen.pipeline.config import RunConfig
from dawgen.tasks import get_task

POOL_FILES = ("pool/train.json", "pool/train.tsv")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def labelled_pool(data: Path, task: str) -> Path:
    for name in POOL_FILES:
        if (data / task / name).is_file():
            return data / task / name
    raise FileNotFoundError(f"no labelled pool for {task} under {data / task} (looked for {', '.join(POOL_FILES)})")


def _is_public(path: str) -> bool:
    return "fewgen-synthetic" in Path(path).parts


def set_name(path: str) -> str:
    """``synthetic-dawgen-<key>/synthetic.jsonl`` -> ``synthetic-dawgen``; FewGen's file by its folder."""
    parts = Path(path).parts
    return "FewGen's public set" if _is_public(path) else parts[-2].rsplit("-", 1)[0]


def rows(task: str, seed: int, report: dict[str, Any]) -> list[str]:
    labels = list(report["real_held_out"]["per_label"])
    few = report.get("few_shot_trained", {}).get("balanced_accuracy")
    out = [
        f"| {task} | {seed} | real test set (judge check) | {report['real_held_out']['examples']} "
        f"| {_fmt(report['real_held_out']['balanced_agreement'])} | "
        + " / ".join(_fmt(report["real_held_out"]["per_label"][label]["agreement"]) for label in labels)
        + f" | few-shot real pairs: {_fmt(few)} |"
    ]
    by_name = sorted(report["synthetic"].items(), key=lambda item: (_is_public(item[0]), set_name(item[0])))
    for path, result in by_name:
        per_label = " / ".join(_fmt(result["per_label"][label]["agreement"]) for label in labels)
        out.append(
            f"| {task} | {seed} | {set_name(path)} | {result['examples']} | {_fmt(result['balanced_agreement'])} "
            f"| {per_label} | {_fmt(result['trained_on_it']['balanced_accuracy'])} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", help="default: every seed of results.json")
    parser.add_argument("--fewgen", action="store_true", help="add FewGen's public set where there is one")
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON reports")
    parser.add_argument("--report", type=Path, required=True, help="Markdown file to write")
    args = parser.parse_args()

    manifest = json.loads((args.run_dir / "manifest.json").read_text())
    config = config_from_dict(RunConfig, manifest["config"], str(args.run_dir / "manifest.json"))
    records = json.loads((args.run_dir / "results.json").read_text())["records"]
    data = Path(config.data)
    lines = [
        "| task | seed | set | examples | judge agrees % | per label % | test % of a judge trained on it |",
        "|---|---|---|---|---|---|---|",
    ]
    wanted = set(args.seeds or [r["seed"] for r in records])
    for task in dict.fromkeys(r["task"] for r in records):
        for seed in sorted({r["seed"] for r in records if r["task"] == task} & wanted):
            paths = sorted({str(args.run_dir / r["synthetic"]) for r in records
                            if r["task"] == task and r["seed"] == seed and r["synthetic"]})  # fmt: skip
            fewgen = data / task / "fewgen-synthetic" / f"16-{seed}" / "gen-train.json"
            if args.fewgen and fewgen.is_file():
                paths.append(str(fewgen))
            saved = args.out / f"{task}-{seed}.json"
            report = json.loads(saved.read_text()) if saved.is_file() else judge_synthetic(
                paths, reference=labelled_pool(data, task), held_out=config.test_file(get_task(task)),
                task=task, out=saved, few_shot=data, seed=seed, k=config.k,
            )  # fmt: skip
            lines += rows(task, seed, report)
            print("\n".join(lines[-len(report["synthetic"]) - 1 :]), flush=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text("\n".join(lines) + "\n")
    print(f"table in {args.report}")


if __name__ == "__main__":
    main()
