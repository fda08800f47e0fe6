"""A protocol run's JSON twin for results/: one record per method, task and seed, and the data-scale curve.

Reads ``<run>/results.json`` (what `dawgen run` wrote) and, when given, the curve records of
``scripts/data_scale.py --json``, and writes a list of ``{"task", "seed", "method", "accuracy",
"balanced_accuracy", "top_prediction_share", "conflict_rate", "compute"}`` records (``compute``: the run's
precision record) followed by the curve's ``{"task", "seed", "curve", "per_label", "balanced_accuracy"}``
records.

    python scripts/protocol_results.py runs/medium --curve runs/medium-curve/curve.json \
        --out results/medium_protocol_smollm2.json --markdown      # --markdown: the per-seed table too

A protocol may run in parts, in different run folders (a new checkout has no ``runs/``): ``--keep FILE``
keeps the records of an earlier twin whose task, seed and method the run folder does not hold (its curve
records too, unless ``--curve`` is given).

    python scripts/protocol_results.py runs/medium --keep results/medium_protocol_smollm2.json \
        --out results/medium_protocol_smollm2.json

``--summary FILE.md`` also writes the headline table, the paper's claims, the oracle recovery and the per-seed
numbers of every record of the twin (kept ones included), as ``dawgen report`` shows them for one run folder.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dawgen.reporting import build_summary
from dawgen.reporting.document import to_markdown
from dawgen.utils.io import atomic_write_text


def method_records(run: Path) -> list[dict[str, Any]]:
    """Every test result of the run folder, in percent, to four decimals."""
    records = json.loads((run / "results.json").read_text())["records"]
    rows = []
    for record in records:
        test = record["test"]
        rows.append({
            "task": record["task"], "seed": record["seed"], "method": record["method"],
            "accuracy": round(test["accuracy"], 4), "balanced_accuracy": round(test["balanced_accuracy"], 4),
            "top_prediction_share": round(test["top_prediction_share"], 4),
            "conflict_rate": record.get("conflict_rate"), "compute": record.get("compute"),
        })  # fmt: skip
    return sorted(rows, key=lambda r: (r["task"], r["seed"], r["method"]))


def markdown_table(records: list[dict[str, Any]], order: list[str]) -> list[str]:
    """The per-seed table of the method records, methods in ``order`` (the config's), then task and seed."""
    rank = {method: i for i, method in enumerate(order)}
    lines = ["| method | task | seed | accuracy | balanced accuracy | top-label share | conflict rate |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(records, key=lambda r: (rank.get(r["method"], len(rank)), r["task"], r["seed"])):
        conflicts = "-" if r["conflict_rate"] is None else f"{100 * r['conflict_rate']:.0f}%"
        scores = f"{r['accuracy']:.1f} | {r['balanced_accuracy']:.1f} | {r['top_prediction_share']:.0f}%"
        lines.append(f"| {r['method']} | {r['task']} | {r['seed']} | {scores} | {conflicts} |")
    return lines


def as_results_record(record: dict[str, Any]) -> dict[str, Any]:
    """A twin record in the shape of ``results.json``'s records, which the report's sections read."""
    test = {key: record[key] for key in ("accuracy", "balanced_accuracy", "top_prediction_share") if key in record}
    names = ("task", "seed", "method", "conflict_rate", "compute")
    return {**{key: record.get(key) for key in names}, "test": test}


def row(record: dict[str, Any]) -> tuple[str, int, str]:
    return record["task"], record["seed"], record["method"]


def kept_records(earlier: list[dict[str, Any]], held: set[tuple[str, int, str]]) -> tuple[list[dict], list[dict]]:
    """The method records of ``earlier`` whose task, seed and method are not in ``held``, and its curve records."""
    methods = [r for r in earlier if "curve" not in r and row(r) not in held]
    return methods, [r for r in earlier if "curve" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the protocol's run folder")
    parser.add_argument("--curve", type=Path, default=None, help="records of scripts/data_scale.py --json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--keep", type=Path, default=None, help="an earlier twin: its records of other rows stay")
    parser.add_argument("--markdown", action="store_true", help="also print the per-seed Markdown table")
    parser.add_argument("--summary", type=Path, default=None, help="write the tables and claims of every record")
    args = parser.parse_args()
    records = method_records(args.run)
    curve = [] if args.curve is None else json.loads(args.curve.read_text())
    if args.keep is not None:
        held = {row(r) for r in records}
        earlier, earlier_curve = kept_records(json.loads(args.keep.read_text()), held)
        records = sorted(earlier + records, key=lambda r: (r["task"], r["seed"], r["method"]))
        curve = curve or earlier_curve
    order = json.loads((args.run / "results.json").read_text())["methods"]
    if args.markdown:
        print("\n".join(markdown_table(records, order)))
    if args.summary is not None:
        summary = build_summary([as_results_record(r) for r in records], f"{args.run.name}: every part", order)
        atomic_write_text(args.summary, to_markdown(summary, args.summary.parent))
        print(f"summary in {args.summary}")
    records += curve
    atomic_write_text(args.out, json.dumps(records, indent=1) + "\n")
    print(f"{len(records)} records in {args.out}")


if __name__ == "__main__":
    main()
