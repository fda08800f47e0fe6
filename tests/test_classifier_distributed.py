"""Data-parallel stage 3: two CPU processes (gloo) against one, with the same global batches.

The two-process run is launched twice (``tests/launched_cli.py``): with ``torchrun``, crashing right after
the checkpoint of step 2, then resumed with ``accelerate launch``. It must follow the loss curve of one plain
process, end with bit-identical tensors on both processes, and write the run folder once.

Pinned to fp32. Tolerance: every loss, dev and test loss and gradient cosine within ``RTOL`` = 1e-5 relative
(plus ``ATOL`` = 1e-6), the best prompt within 1e-4 relative plus 1e-5; conflicts, accuracies and the best step
equal. Measured: losses within 3e-7 relative, cosines within 2e-6, the prompt within 1e-6 absolute (a sum over
two shards rounds otherwise than a mean over the whole batch, and sharded predictions pad otherwise).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tests_support import RTE_PAIRS, free_port, invoke

import dawgen
from dawgen.classifier.adapter import load_tuned
from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.constants import ADAPTER_DIR, CHECKPOINT_DIR, METRICS_FILE, RESULT_FILE
from dawgen.data.sources import demo_dir
from dawgen.models import distributed
from dawgen.models.distributed import SINGLE, Processes
from dawgen.models.loading import load_model
from dawgen.tasks import get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEMO = demo_dir()
WORKER = Path(__file__).with_name("launched_cli.py")
RTOL, ATOL, PROMPT_RTOL, PROMPT_ATOL = 1e-5, 1e-6, 1e-4, 1e-5
CRASH_AFTER = 2
# 32 real examples in batches of 31: the shards of a 31-row batch are uneven (16 and 15 rows), and one of
# the two processes has no row of a 1-row batch; the synthetic batches are label-balanced, 3 + 3 rows
SETTINGS = ["--steps", "4", "--eval-every", "2", "--virtual-tokens", "2", "--batch-size", "31", "--syn-batch-size",
            "6", "--precision", "fp32", "--device", "cpu"]  # fmt: skip


def torchrun() -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]


def accelerate_launch() -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port())]  # fmt: skip


@dataclass
class Runs:
    one: Path  # the single-process run folder
    two: Path  # the two-process run folder
    dump: Path  # what every process of the two-process run wrote (tests/launched_cli.py)
    crashed: subprocess.CompletedProcess
    after_crash: dict  # the checkpoint's step, the metrics lines and each process's start, after the crash
    resumed: subprocess.CompletedProcess


def launch(launcher: list[str], flags: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*launcher, str(WORKER), *flags], env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def runs(tiny_decoder_dir, tmp_path_factory) -> Runs:
    root = tmp_path_factory.mktemp("distributed")
    synthetic = root / "syn.jsonl"
    pairs = (("A cat rests.", "entailment"), ("A dog barks.", "not_entailment"))
    rows = [{"text_a": f"A cat sleeps on mat {i}.", "text_b": b, "label": y} for i in range(4) for b, y in pairs]
    synthetic.write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = ["prompt-tune", "--task", str(DEMO / "task.yaml"), "--data", str(DEMO), "--test", str(DEMO / "test.tsv"),
              "--model", str(tiny_decoder_dir), "--synthetic", str(synthetic), *SETTINGS]  # fmt: skip
    one, two, dump = root / "one", root / "two", root / "dump"
    invoke(*common, "--out", str(one))
    dump.mkdir()
    source = str(Path(dawgen.__file__).parents[1])  # the processes run this checkout's dawgen
    path = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    env["DAWGEN_TEST_DUMP"] = str(dump)
    crashed = launch(torchrun(), [*common, "--out", str(two)], {**env, "DAWGEN_TEST_CRASH_AFTER": str(CRASH_AFTER)})
    after_crash = {
        "checkpoint_step": json.loads((two / CHECKPOINT_DIR / "state.json").read_text())["step"],
        "metrics": (two / METRICS_FILE).read_text().splitlines(),
        "started_at": [json.loads((dump / f"rank{rank}.json").read_text())["started_at"] for rank in (0, 1)],
    }
    resumed = launch(accelerate_launch(), [*common, "--out", str(two)], env)
    return Runs(one, two, dump, crashed, after_crash, resumed)


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / METRICS_FILE).read_text().splitlines()]


def assert_close_records(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float):
            assert math.isclose(got[key], value, rel_tol=RTOL, abs_tol=ATOL), (key, got[key], value)
        else:
            assert got[key] == value, (key, got[key], value)


def test_a_crash_keeps_the_checkpoint_and_the_rerun_resumes_from_it(runs):
    assert runs.crashed.returncode != 0, runs.crashed.stderr[-3000:]
    assert runs.resumed.returncode == 0, runs.resumed.stderr[-3000:]
    assert runs.after_crash["checkpoint_step"] == CRASH_AFTER
    # steps 1 and 2 and the evaluation of step 2, each written once (by the main process)
    assert [json.loads(line)["step"] for line in runs.after_crash["metrics"]] == [1, 2, 2]
    assert runs.after_crash["started_at"] == [0, 0]
    resumed_from = [json.loads((runs.dump / f"rank{rank}.json").read_text())["started_at"] for rank in (0, 1)]
    assert resumed_from == [CRASH_AFTER, CRASH_AFTER]
    assert (runs.two / RESULT_FILE).exists() and not (runs.two / CHECKPOINT_DIR).exists()


def test_two_processes_follow_the_loss_curve_of_one(runs):
    assert runs.resumed.returncode == 0, runs.resumed.stderr[-3000:]
    one, two = records(runs.one), records(runs.two)
    assert [(r["kind"], r["step"]) for r in two] == [(r["kind"], r["step"]) for r in one]
    assert {r["conflict"] for r in one if r["kind"] == "step"} == {False, True}  # surgery projected some steps
    for got, want in zip(two, one, strict=True):
        assert_close_records(got, want)
    result_one, result_two = (json.loads((folder / RESULT_FILE).read_text()) for folder in (runs.one, runs.two))
    for key in ("best_step", "conflict_rate", "config", "inputs", "trainable_parameters"):
        assert result_two[key] == result_one[key], key
    assert_close_records(result_two["dev"], result_one["dev"])
    assert_close_records(result_two["test"], result_one["test"])
    best_one, best_two = (load_tuned(folder / ADAPTER_DIR) for folder in (runs.one, runs.two))
    torch.testing.assert_close(best_two, best_one, rtol=PROMPT_RTOL, atol=PROMPT_ATOL)


def test_every_process_ends_with_the_same_tensors(runs):
    assert runs.resumed.returncode == 0, runs.resumed.stderr[-3000:]
    rank0, rank1 = (load_file(runs.dump / f"rank{rank}.safetensors") for rank in (0, 1))
    assert rank0.keys() == rank1.keys() == {"tuned.0"}
    assert all(torch.equal(rank0[name], rank1[name]) for name in rank0)


@pytest.mark.parametrize("world", [2, 3])
def test_shares_of_a_batch_sum_to_the_gradient_of_its_mean_loss(tiny_decoder_dir, world):
    task = get_task("RTE")
    scorer = VerbalizerScorer(load_model(str(tiny_decoder_dir)), task, max_length=64, precision="fp32", device="cpu")
    config = PromptTuneConfig(num_virtual_tokens=2, precision="fp32", device="cpu", label_smoothing=0.1)
    trainer = PromptTrainer(scorer, config)
    assert trainer.processes is SINGLE
    items = scorer.encoder.encode_all(RTE_PAIRS)
    for batch in (items[:1], items[:3], items):  # fewer rows than processes, uneven shards, even ones
        (want,) = torch.autograd.grad(trainer.loss(batch), trainer.tuned)
        got = torch.zeros_like(want)
        for rank in range(world):
            trainer.processes = Processes(rank, world)
            losses = list(trainer._part_losses(batch))  # one per sub-batch of this process's share
            assert (not losses) == (rank >= len(batch))
            for loss in losses:
                got += torch.autograd.grad(loss, trainer.tuned)[0]
        torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-7)


def test_a_plain_process_is_alone_and_sends_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert Processes.of(torch.device("cpu")) is SINGLE and SINGLE.is_main
    assert SINGLE.shard([1, 2, 3]) == [1, 2, 3] and Processes(1, 2).shard([1, 2, 3]) == [2]
    values = torch.arange(3.0)
    SINGLE.sum_([values])
    assert torch.equal(values, torch.arange(3.0)) and SINGLE.total(values.sum()) == 3.0
    assert torch.equal(SINGLE.predict(lambda part: torch.tensor(part), [4, 5]), torch.tensor([4, 5]))


def test_sums_are_sent_in_buckets_of_bounded_size(monkeypatch):
    monkeypatch.setattr(distributed, "BUCKET_NUMEL", 5)
    tensors = [torch.zeros(n) for n in (3, 2, 7, 1, 4)]
    sizes = [[t.numel() for t in bucket] for bucket in distributed._buckets(tensors)]
    assert sizes == [[3, 2], [7], [1, 4]]
