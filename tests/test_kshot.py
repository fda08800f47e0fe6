"""k-shot splits: LM-BFF sampling, the shipped splits, folders, saving."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tests_support import DATA, needs_data

from dawgen.data import (
    DataError,
    Example,
    KShotSplit,
    find_kshot_folder,
    load_kshot_folder,
    load_split,
    read_examples,
    sample_kshot,
    save_kshot,
)
from dawgen.tasks import BUILTIN_TASKS

SEEDS = (13, 21, 42, 87, 100)
SICK = BUILTIN_TASKS["SICK"]


def toy(n_per_label: int = 40, labels: tuple[str, ...] = ("b", "a", "c")) -> list[Example]:
    return [Example(f"{label} {i}", label, f"second {i}") for i in range(n_per_label) for label in labels]


@pytest.fixture(scope="module")
def sick_pool() -> list[Example]:
    if not DATA.is_dir():
        pytest.skip(f"shared data folder not found at {DATA}")
    return load_split(SICK, DATA / "SICK/pool/train.tsv")


# ---------------------------------------------------------------- sampling


def test_sampling_is_balanced_disjoint_and_grouped() -> None:
    split = sample_kshot(toy(), k=4, seed=13)
    for part in (split.train, split.dev):
        assert Counter(e.label for e in part) == {"a": 4, "b": 4, "c": 4}
        labels = [e.label for e in part]
        assert labels == sorted(labels, key=labels.index)  # contiguous groups
    assert not set(split.train) & set(split.dev)


def test_same_seed_same_split_other_seed_other_split() -> None:
    assert sample_kshot(toy(), 4, 21) == sample_kshot(toy(), 4, 21)
    assert sample_kshot(toy(), 4, 21) != sample_kshot(toy(), 4, 42)


def test_shuffle_matches_lm_bff_global_seed() -> None:
    """Same permutation as LM-BFF's ``np.random.seed(seed); np.random.shuffle(train_lines)``."""
    examples = toy(labels=("x", "y"))
    lines = list(range(len(examples)))
    state = np.random.get_state()
    try:
        np.random.seed(87)
        np.random.shuffle(lines)
    finally:
        np.random.set_state(state)
    shuffled = [examples[i] for i in lines]
    first_seen = list(dict.fromkeys(e.label for e in shuffled))
    expected = [e for label in first_seen for e in [s for s in shuffled if s.label == label][:5]]
    assert sample_kshot(examples, 5, 87).train == expected


def test_label_order() -> None:
    split = sample_kshot(toy(), 2, 100, label_order="sorted")
    assert [e.label for e in split.train] == ["a", "a", "b", "b", "c", "c"]
    first_seen = sample_kshot(toy(), 2, 100)
    assert sorted(first_seen.train, key=lambda e: e.label) == split.train


def test_sampling_errors() -> None:
    too_few = r"too few examples for k=16 \(need 2k=32 per label, train \+ dev\): \{'c': 20\}"
    with pytest.raises(DataError, match=too_few):
        sample_kshot([*toy(40, ("a", "b")), *toy(20, ("c",))], 16, 13)
    with pytest.raises(DataError, match=r"\{'d': 0\}"):
        sample_kshot(toy(), 4, 13, labels=("a", "b", "c", "d"))
    with pytest.raises(DataError, match=r"unknown label 'c' in the examples; expected one of \['a', 'b'\]"):
        sample_kshot(toy(), 4, 13, labels=("a", "b"))
    with pytest.raises(DataError, match="k must be at least 1"):
        sample_kshot(toy(), 0, 13)


# ---------------------------------------------------------------- the shipped splits


@needs_data
@pytest.mark.parametrize("seed", SEEDS)
def test_sick_sampling_reproduces_the_shipped_splits(sick_pool: list[Example], seed: int) -> None:
    """The SICK splits were made by the LM-BFF procedure, with the label groups written in sorted order."""
    shipped = load_kshot_folder(SICK, find_kshot_folder(DATA, "SICK", 16, seed))
    assert sample_kshot(sick_pool, 16, seed, SICK.labels, label_order="sorted") == shipped
    lm_bff = sample_kshot(sick_pool, 16, seed, SICK.labels)  # first-seen group order: same rows per label
    for part, shipped_part in ((lm_bff.train, shipped.train), (lm_bff.dev, shipped.dev)):
        for label in SICK.labels:
            assert [e for e in part if e.label == label] == [e for e in shipped_part if e.label == label]


@needs_data
@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
@pytest.mark.parametrize("seed", SEEDS)
def test_shipped_kshot_folders(task: str, seed: int) -> None:
    spec = BUILTIN_TASKS[task]
    folder = find_kshot_folder(DATA, task, 16, seed)
    split = load_kshot_folder(spec, folder)
    for part, file in ((split.train, spec.kshot_files["train"]), (split.dev, spec.kshot_files["dev"])):
        assert len(part) == 16 * spec.num_labels
        assert Counter(e.label for e in part) == {label: 16 for label in spec.labels}
        assert all(e.text_b for e in part)
        assert read_examples(folder / file) == part  # detection agrees with the task's columns
    assert not set(split.train) & set(split.dev)


# ---------------------------------------------------------------- folders and saving


def test_find_kshot_folder_accepts_any_level(tmp_path: Path) -> None:
    split = tmp_path / "MNLI" / "k-shot" / "16-42"
    split.mkdir(parents=True)
    (split / "train.tsv").write_text("x")
    for root in (tmp_path, tmp_path / "MNLI", tmp_path / "MNLI" / "k-shot", split):
        assert find_kshot_folder(root, "mnli", 16, 42) == split
        assert find_kshot_folder(root, BUILTIN_TASKS["MNLI"], 16, 42) == split
    with pytest.raises(DataError, match=r"no 16-shot split for task MNLI with seed 13 \(looked for train.tsv in: "):
        find_kshot_folder(tmp_path, "MNLI", 16, 13)


def test_load_kshot_folder_missing_files(tmp_path: Path) -> None:
    mnli = BUILTIN_TASKS["MNLI"]
    with pytest.raises(DataError, match="k-shot folder not found"):
        load_kshot_folder(mnli, tmp_path / "nope")
    (tmp_path / "train.tsv").write_text("x")
    (tmp_path / "dev.tsv").write_text("x")
    missing = r"dev_matched.tsv: missing the k-shot dev file 'dev_matched.tsv'; the folder has \['dev.tsv', 'train"
    with pytest.raises(DataError, match=missing):
        load_kshot_folder(mnli, tmp_path)


@pytest.mark.parametrize("task", ["MNLI", "RTE"])
def test_save_and_load_round_trip(tmp_path: Path, task: str) -> None:
    spec = BUILTIN_TASKS[task]
    examples = [Example(f"premise {i}", label, f"hypothesis {i}") for i in range(8) for label in spec.labels]
    split = sample_kshot(examples, 2, 13, spec.labels)
    train, dev = save_kshot(split, tmp_path / "16-13", spec)
    assert (train.name, dev.name) == (spec.kshot_files["train"], spec.kshot_files["dev"])
    assert train.read_text().startswith("text_a\ttext_b\tlabel\n")
    assert load_kshot_folder(spec, tmp_path / "16-13") == split
    assert KShotSplit(read_examples(train), read_examples(dev)) == split


def test_user_task_kshot_file_names_are_used_in_a_data_root(tmp_path: Path) -> None:
    """A user task's ``kshot_files`` name the files looked for in ``<root>/<TASK>/k-shot/<k>-<seed>/``."""
    from dawgen.data.sources import demo_dir, load_fewshot
    from dawgen.tasks import get_task

    demo = demo_dir()
    task_file = tmp_path / "custom.yaml"
    text = (demo / "task.yaml").read_text().replace("name: demo-nli", "name: custom-nli")
    task_file.write_text(text + "kshot_files: {train: train_custom.tsv}\n")  # dev keeps its default name
    task = get_task(str(task_file))
    assert task.kshot_files == {"train": "train_custom.tsv", "dev": "dev.tsv"}
    split_dir = tmp_path / "root" / "custom-nli" / "k-shot" / "16-13"
    split_dir.mkdir(parents=True)
    (split_dir / "train_custom.tsv").write_text((demo / "train.tsv").read_text())
    (split_dir / "dev.tsv").write_text((demo / "dev.tsv").read_text())
    split = load_fewshot(task, tmp_path / "root", seed=13)
    assert split == load_kshot_folder(task, split_dir)
    assert len(split.train) == len(split.dev) == 32
    assert find_kshot_folder(tmp_path / "root", task, 16, 13) == split_dir
    with pytest.raises(DataError, match=r"looked for train_custom\.tsv"):
        load_fewshot(task, tmp_path / "root", seed=21)
