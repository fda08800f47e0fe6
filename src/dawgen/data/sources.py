"""Where few-shot and test data come from: k-shot folders, data roots, files, the hub, the demo."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dawgen.data.example import DataError, Example
from dawgen.data.hub import load_hub_dataset
from dawgen.data.kshot import KShotSplit, find_kshot_folder, load_kshot_folder, sample_kshot
from dawgen.data.readers import load_split
from dawgen.tasks.registry import load_task_file
from dawgen.tasks.schema import TaskSpec

HUB_PREFIX = "hf:"
DEMO_TASK_FILE = "task.yaml"


def demo_dir() -> Path:
    """The demo dataset shipped inside the package (train/dev 16 per label, test 150, a pool)."""
    return Path(str(resources.files("dawgen") / "resources" / "demo"))


def demo_task() -> TaskSpec:
    return load_task_file(demo_dir() / DEMO_TASK_FILE)


def _hub_examples(task: TaskSpec, spec: str, default_split: str) -> list[Example]:
    """``hf:NAME[:CONFIG[:SPLIT]]``, e.g. ``hf:nyu-mll/glue:rte:train``."""
    parts = spec[len(HUB_PREFIX) :].split(":")
    name, config = parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)
    split = parts[2] if len(parts) > 2 else default_split
    return load_hub_dataset(name, split, config=config, label_names=list(task.labels))


def load_fewshot(task: TaskSpec, data: str | Path, *, seed: int = 13, k: int = 16) -> KShotSplit:
    """The train/dev split of a run.

    ``data`` is an LM-BFF k-shot folder (``train.tsv`` + ``dev.tsv``), a data root holding
    ``<TASK>/k-shot/<k>-<seed>/``, a full training file or ``hf:`` dataset (then K per label are
    sampled with ``seed``, LM-BFF style: dev = the next K per label).
    """
    text = str(data)
    if text.startswith(HUB_PREFIX):
        return sample_kshot(_hub_examples(task, text, "train"), k, seed, labels=task.labels)
    path = Path(data)
    if path.is_file():
        return sample_kshot(load_split(task, path), k, seed, labels=task.labels)
    if not path.is_dir():
        raise DataError("no such file or folder", path=path)
    if (path / task.kshot_files["train"]).exists():
        return load_kshot_folder(task, path)
    return load_kshot_folder(task, find_kshot_folder(path, task, k, seed))


def load_labelled(task: TaskSpec, spec: str | Path, *, split: str = "train") -> list[Example]:
    """Labelled examples of ``task``: a file in any supported format, or ``hf:NAME[:CONFIG[:SPLIT]]``
    (``split`` when the spec names none)."""
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        return _hub_examples(task, text, split)
    return load_split(task, Path(spec))


def load_test(task: TaskSpec, spec: str | Path) -> list[Example]:
    """An evaluation set: a file in any supported format, or ``hf:NAME[:CONFIG[:SPLIT]]`` (split validation)."""
    return load_labelled(task, spec, split="validation")
