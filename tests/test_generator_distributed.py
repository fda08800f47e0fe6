"""Data-parallel stage 1 (variant ``plain``): two CPU processes (gloo) against one, with the same batches.

``torchrun`` starts ``tests/launched_cli.py tune-generator`` twice over; every process takes half of each
batch's rows, weights its token-mean loss by its share of the batch's target tokens and the prompts'
gradients are summed. The two-process run must follow the one-process loss curve, keep the same epoch, write
its folder once, and the bi-level variants must refuse to run sharded.

Pinned to fp32. Tolerance: every loss within ``RTOL`` = 1e-5 relative (plus ``ATOL`` = 1e-6), the kept
prompts within 1e-4 relative plus 1e-5 (a sum over two shards rounds otherwise than one mean).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests_support import free_port, invoke

import dawgen
from dawgen.constants import GENERATOR_DIR, METRICS_FILE, RESULT_FILE
from dawgen.data.sources import demo_dir
from dawgen.generator.artifacts import PROMPTS_FILE

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEMO = demo_dir()
WORKER = Path(__file__).with_name("launched_cli.py")
RTOL, ATOL, PROMPT_RTOL, PROMPT_ATOL = 1e-5, 1e-6, 1e-4, 1e-5
TIMED = {"seconds"}  # what differs between runs by design


def launch(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    port = str(free_port())
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    return subprocess.run([*torchrun, str(WORKER), *args], env=env, capture_output=True, text=True, timeout=240)


def launcher_env() -> dict[str, str]:
    source = str(Path(dawgen.__file__).parents[1])  # the processes run this checkout's dawgen
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}


def tune_args(model: Path, out: Path, variant: str = "plain") -> list[str]:
    # 3 + 3 rows a batch: each process gets 3 rows of unequal token counts
    return ["tune-generator", "--task", str(DEMO / "task.yaml"), "--data", str(DEMO), "--model", str(model),
            "--variant", variant, "--epochs", "2", "--per-label-batch", "3", "--prompt-tokens", "2",
            "--precision", "fp32", "--device", "cpu", "--out", str(out)]  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_decoder_dir, tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("generator-distributed")
    one, two = root / "one", root / "two"
    invoke(*tune_args(tiny_decoder_dir, one))
    return one, two, launch(tune_args(tiny_decoder_dir, two), launcher_env())


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / METRICS_FILE).read_text().splitlines()]


def test_two_processes_follow_the_loss_curve_of_one(runs):
    one, two, launched = runs
    assert launched.returncode == 0, launched.stderr[-3000:]
    want, got = records(one), records(two)
    assert [(r["kind"], r["step"]) for r in got] == [(r["kind"], r["step"]) for r in want]  # written once
    assert len({r["lm"] for r in want if r["kind"] == "step"}) > 1  # the loss moves
    for mine, theirs in zip(got, want, strict=True):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            if isinstance(value, float) and key not in TIMED:
                assert math.isclose(mine[key], value, rel_tol=RTOL, abs_tol=ATOL), (key, mine[key], value)
            elif key not in TIMED:
                assert mine[key] == value, key
    result_one, result_two = (json.loads((folder / RESULT_FILE).read_text()) for folder in (one, two))
    assert result_two["best_epoch"] == result_one["best_epoch"] and result_two["config"] == result_one["config"]
    kept = [load_file(folder / GENERATOR_DIR / PROMPTS_FILE) for folder in (one, two)]
    assert kept[0].keys() == kept[1].keys()
    for name in kept[0]:
        torch.testing.assert_close(kept[1][name], kept[0][name], rtol=PROMPT_RTOL, atol=PROMPT_ATOL)


def test_the_bi_level_variants_refuse_to_run_sharded(tiny_decoder_dir, tmp_path):
    launched = launch(tune_args(tiny_decoder_dir, tmp_path / "run", variant="dawgen"), launcher_env())
    assert launched.returncode != 0
    assert "data-parallel for variant 'plain'" in launched.stderr + launched.stdout
    assert not (tmp_path / "run" / RESULT_FILE).exists()
