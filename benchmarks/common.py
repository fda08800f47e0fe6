"""Shared helpers of the benchmark scripts: the few-shot data they run on, and timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def rte_or_demo_split(seed: int = 13):
    """RTE's k-shot split from ../shared/data when present, else the shipped demo set."""
    from dawgen.data.sources import demo_dir, demo_task, load_fewshot
    from dawgen.tasks import get_task

    if (SHARED_DATA / "RTE").is_dir():
        task = get_task("RTE")
        return task, load_fewshot(task, SHARED_DATA, seed=seed)
    task = demo_task()
    return task, load_fewshot(task, demo_dir())


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rte_or_demo_synthetic(task):
    """FewGen's RTE seed-13 synthetic set (verbatim copies dropped), or the demo test set as stand-in."""
    from dawgen.data.sources import demo_dir
    from dawgen.data.synthetic import load_synthetic

    fewgen = SHARED_DATA / "RTE" / "fewgen-synthetic" / "16-13" / "gen-train.json"
    return load_synthetic(task, fewgen if task.name == "RTE" and fewgen.exists() else demo_dir() / "test.tsv")


def machine_line() -> str:
    """The machine a benchmark ran on: CPU model, native bf16 or not, torch threads."""
    import torch

    from dawgen.models.precision import cpu_has_native_bf16, cpu_model

    native = "yes" if cpu_has_native_bf16() else "no"
    return f"CPU: {cpu_model()}, native bf16: {native}, torch threads: {torch.get_num_threads()}"
