"""``dawgen.cli`` as one of the processes a launcher starts, with hooks for tests/test_classifier_distributed.py.

``torchrun --nproc_per_node 2 tests/launched_cli.py prompt-tune ...`` runs the CLI in every process. Set in the
environment: ``DAWGEN_TEST_DUMP=DIR`` makes each process write, as ``DIR/rank<R>.json``, the step its training
started from (0, or the resumed checkpoint's) and, as ``DIR/rank<R>.safetensors``, the tensors it trained as
they are when training ends; ``DAWGEN_TEST_CRASH_AFTER=N`` makes every process exit with code 3 (like a crash)
right after the checkpoint of step N is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.distributed as dist
from safetensors.torch import save_file

from dawgen.classifier.train import PromptTrainer
from dawgen.cli import app

CRASH_CODE = 3
resume, checkpoint, train = PromptTrainer._resume, PromptTrainer._checkpoint, PromptTrainer.train
dump = Path(os.environ["DAWGEN_TEST_DUMP"]) if "DAWGEN_TEST_DUMP" in os.environ else None
crash_after = int(os.environ.get("DAWGEN_TEST_CRASH_AFTER", "0"))


def resume_and_tell(self: PromptTrainer) -> None:
    resume(self)
    if dump is not None:
        (dump / f"rank{self.processes.rank}.json").write_text(json.dumps({"started_at": self.state.step}))


def checkpoint_then_crash(self: PromptTrainer) -> None:
    checkpoint(self)
    if crash_after and self.state.step == crash_after:
        dist.barrier()  # the main process has written the checkpoint
        os._exit(CRASH_CODE)


def train_and_dump(self: PromptTrainer, *args, **kwargs):
    best = train(self, *args, **kwargs)
    if dump is not None:
        tensors = {f"tuned.{i}": param.detach().cpu().contiguous() for i, param in enumerate(self.tuned)}
        save_file(tensors, dump / f"rank{self.processes.rank}.safetensors")
    return best


if __name__ == "__main__":
    PromptTrainer._resume, PromptTrainer._checkpoint, PromptTrainer.train = (
        resume_and_tell, checkpoint_then_crash, train_and_dump,
    )  # fmt: skip
    app()
