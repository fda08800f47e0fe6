"""Start-up time of the CLI: `dawgen --help` and `dawgen tasks` as whole processes, beside `python -c pass`.

Neither command imports torch, transformers or the other heavy libraries, so both should take well
under 2 s. Each runs as a fresh process (`python -m dawgen.cli ...`, so no console script is needed);
every round runs each command once, so all see the same machine load, and the best round counts.

    python benchmarks/cli_startup.py [--quick]

Ends with `cli_help_s: <seconds>` (the best wall time of `dawgen --help`).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path

from common import timed

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "dawgen --help": ["-m", "dawgen.cli", "--help"],
    "dawgen tasks": ["-m", "dawgen.cli", "tasks"],
}


def run_python(args: list[str]) -> None:
    """One process of this interpreter; its output (the CLI prints to stderr) is dropped unless it fails."""
    child = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if child.returncode:
        sys.exit(f"python {' '.join(args)} failed (exit code {child.returncode}):\n{child.stderr}")


def cpu_kind() -> str:
    """The CPU's model name, its core count, and whether it has native bf16 (what precision "auto" checks)."""
    from dawgen.models.precision import cpu_has_native_bf16

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16 (AVX512-BF16/AMX)"
    return f"{name}, {os.cpu_count()} cores, {bf16}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="best of 3 rounds instead of 5")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 5)
    print(f"CPU: {cpu_kind()}; Python {platform.python_version()}; best of {rounds} rounds")
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, argv in COMMANDS.items():
            times[name].append(timed(partial(run_python, argv)))
    print(f"{'command':<16} {'best s':>8} {'median s':>9}")
    for name, seconds in times.items():
        print(f"{name:<16} {min(seconds):8.3f} {statistics.median(seconds):9.3f}")
    print(f"cli_help_s: {min(times['dawgen --help']):.3f}")


if __name__ == "__main__":
    main()
