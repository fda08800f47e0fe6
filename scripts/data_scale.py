"""The data-scale curve of a protocol: `ours` and the gold-data oracle against the synthetic set's size.

For every size N (samples per label) it runs `dawgen run` on the protocol's config with
`generation.per_label=N` for the methods `ours` and `oracle+paired+surgery` (the oracle's rows are pool
pairs **with their gold labels**: an oracle measurement, not the few-shot method) in its own run folder
(`<out>/per-label-<N>`: every stage cached, a rerun resumes). The main run folder gives the point at the
protocol's own size and `pt` (real data alone) is the point at 0 for both lines. It writes the curve's PNG
into the main run folder as `data_scale.png` (the report shows it) and prints its JSON records.

    python scripts/data_scale.py -c configs/medium.yaml --task SICK --seed 13 --sizes 50 150 --main runs/medium
    python scripts/data_scale.py ... --collect --json results/medium_curve.json   # no training: plot and records
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CURVES = {"ours": "ours", "oracle": "oracle+paired+surgery"}  # curve name -> method
BASELINE = "pt"  # real data alone: the 0 point of both curves


def run_size(config: str, task: str, seed: int, size: int, out: Path) -> None:
    """`dawgen run` of both curves' methods with ``size`` samples per label (cached stages are skipped)."""
    methods = ",".join(CURVES.values())
    command = [sys.executable, "-m", "dawgen.cli", "run", "-c", config, "--tasks", task, "--seeds", str(seed),
               "--methods", methods, "--set", f"generation.per_label={size}", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True)


def balanced(folder: Path, task: str, seed: int, method: str) -> float | None:
    """The test balanced accuracy of ``method`` in a run folder's results.json (None if it has not run)."""
    path = folder / "results.json"
    if not path.exists():
        return None
    for record in json.loads(path.read_text())["records"]:
        if (record["task"], record["seed"], record["method"]) == (task, seed, method):
            return record["test"]["balanced_accuracy"]
    return None


def curve_records(main: Path, out: Path, task: str, seed: int, main_size: int, sizes: list[int]) -> list[dict]:
    """``{"task", "seed", "curve", "per_label", "balanced_accuracy"}`` for every point that has run."""
    records: list[dict[str, Any]] = []
    zero = balanced(main, task, seed, BASELINE)
    for curve, method in CURVES.items():
        points = {0: zero, main_size: balanced(main, task, seed, method)}
        points |= {size: balanced(out / f"per-label-{size}", task, seed, method) for size in sizes}
        for size, value in sorted(points.items()):
            if value is not None:
                records.append({"task": task, "seed": seed, "curve": curve, "per_label": size,
                                "balanced_accuracy": round(value, 2)})  # fmt: skip
    return records


def plot(records: list[dict], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for curve, style in (("ours", "o-"), ("oracle", "s--")):
        points = [(r["per_label"], r["balanced_accuracy"]) for r in records if r["curve"] == curve]
        if points:
            ax.plot(*zip(*points, strict=True), style, label=f"{curve} ({CURVES[curve]})")
    ax.set_xscale("symlog", linthresh=50)
    ax.set_xlabel("synthetic (oracle: gold pool) samples per label; 0 = pt, real data alone")
    ax.set_ylabel("test balanced accuracy %")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 150], help="per label, besides the main run's")
    parser.add_argument("--main", type=Path, required=True, help="the protocol's run folder (pt, and its own size)")
    parser.add_argument("--main-size", type=int, default=500, help="the main run's generation.per_label")
    parser.add_argument("--out", type=Path, default=None, help="default: <main>-curve")
    parser.add_argument("--collect", action="store_true", help="only collect and plot what has run")
    parser.add_argument("--json", type=Path, default=None, help="also write the records here")
    args = parser.parse_args()
    out = args.out or args.main.with_name(args.main.name + "-curve")
    if not args.collect:
        for size in args.sizes:
            run_size(args.config, args.task, args.seed, size, out / f"per-label-{size}")
    records = curve_records(args.main, out, args.task, args.seed, args.main_size, args.sizes)
    plot(records, args.main / "data_scale.png", f"{args.task} seed {args.seed}: data scale")
    if args.json:
        args.json.write_text(json.dumps(records, indent=1) + "\n")
    print(json.dumps(records, indent=1))


if __name__ == "__main__":
    main()
