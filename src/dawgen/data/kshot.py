"""LM-BFF k-shot splits: finding, loading, sampling and saving them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dawgen.data.example import DataError, Example
from dawgen.data.readers import load_split, write_examples_tsv

if TYPE_CHECKING:
    from dawgen.tasks.schema import TaskSpec

SPLITS = ("train", "dev")
DEFAULT_FILES = {"train": "train.tsv", "dev": "dev.tsv"}
LabelOrder = Literal["first_seen", "sorted"]


@dataclass(frozen=True)
class KShotSplit:
    """A few-shot training set and its equally small development set."""

    train: list[Example]
    dev: list[Example]


def _files(task: TaskSpec | str | None) -> dict[str, str]:
    """The k-shot file names of ``task`` (``train.tsv``/``dev.tsv`` unless the task says otherwise)."""
    return dict(getattr(task, "kshot_files", DEFAULT_FILES))


def find_kshot_folder(data_root: str | Path, task: TaskSpec | str, k: int = 16, seed: int = 13) -> Path:
    """The folder of one k-shot split: ``<root>/<TASK>/k-shot/<k>-<seed>``.

    ``data_root`` may also be the task folder, its ``k-shot`` folder, or the split folder itself.
    """
    root = Path(data_root)
    name = task if isinstance(task, str) else task.name
    train_file = _files(task)["train"]
    split = f"{k}-{seed}"
    candidates = [
        root,
        root / split,
        root / "k-shot" / split,
        *(root / task_dir / "k-shot" / split for task_dir in dict.fromkeys([name, name.upper()])),
    ]
    for folder in candidates:
        if (folder / train_file).is_file():
            return folder
    tried = ", ".join(str(folder) for folder in candidates)
    raise DataError(f"no {k}-shot split for task {name} with seed {seed} (looked for {train_file} in: {tried})")


def load_kshot_folder(task: TaskSpec, folder: str | Path) -> KShotSplit:
    """Read the train and dev files of a k-shot folder (names from ``task.kshot_files``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("k-shot folder not found", path=folder)
    paths = {split: folder / _files(task)[split] for split in SPLITS}
    for split, path in paths.items():
        if not path.is_file():
            present = sorted(p.name for p in folder.iterdir())
            raise DataError(f"missing the k-shot {split} file {path.name!r}; the folder has {present}", path=path)
    return KShotSplit(train=load_split(task, paths["train"]), dev=load_split(task, paths["dev"]))


def sample_kshot(
    examples: Sequence[Example],
    k: int,
    seed: int,
    labels: Sequence[str] | None = None,
    *,
    label_order: LabelOrder = "first_seen",
) -> KShotSplit:
    """Sample a balanced k-shot split exactly as LM-BFF's ``tools/generate_k_shot_data.py`` does.

    The examples are shuffled with ``np.random.seed(seed)`` semantics (the same permutation as
    shuffling the file's data lines) and bucketed by label; train takes the first ``k`` of each
    label and dev the next ``k``, grouped by label. ``label_order`` "first_seen" orders the groups
    by first appearance after the shuffle (LM-BFF); "sorted" orders them by label name. With
    ``labels`` every example must carry one of them.
    """
    import numpy as np  # here, not at the top: the CLI imports this module and starts faster without numpy

    if k < 1:
        raise DataError(f"k must be at least 1, got {k}")
    shuffled = list(examples)
    np.random.RandomState(seed).shuffle(shuffled)
    buckets: dict[str, list[Example]] = {label: [] for label in labels or ()}
    seen: list[str] = []
    for example in shuffled:
        if labels is not None and example.label not in labels:
            raise DataError(f"unknown label {example.label!r} in the examples; expected one of {list(labels)}")
        if example.label not in seen:
            seen.append(example.label)
        buckets.setdefault(example.label, []).append(example)
    short = {label: len(items) for label, items in buckets.items() if len(items) < 2 * k}
    if short:
        raise DataError(f"too few examples for k={k} (need 2k={2 * k} per label, train + dev): {short}")
    order = sorted(buckets) if label_order == "sorted" else seen
    return KShotSplit(
        train=[example for label in order for example in buckets[label][:k]],
        dev=[example for label in order for example in buckets[label][k : 2 * k]],
    )


def save_kshot(split: KShotSplit, folder: str | Path, task: TaskSpec | None = None) -> tuple[Path, Path]:
    """Write ``train`` and ``dev`` TSVs (header ``text_a[\\ttext_b]\\tlabel``) into ``folder``, atomically."""
    folder = Path(folder)
    files = _files(task)
    return (
        write_examples_tsv(folder / files["train"], split.train),
        write_examples_tsv(folder / files["dev"], split.dev),
    )
