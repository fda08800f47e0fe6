"""The gold-data oracle: a "synthetic" set drawn from the task's pool **with its gold labels**.

The ``oracle+<strategy>[+surgery]`` methods of a run train exactly like ``<generator>+<strategy>[+surgery]``
but on labelled pool rows in place of a generator's samples: what a perfect generator would give in the
same budget (the same count per label, batching and steps). It is the one place where dawgen reads the
pool's gold labels for training; everything else treats the pool as unlabelled first sentences.

Every pool row whose normalised text pair (Unicode NFKC, case-folded, whitespace collapsed) is a row of
any k-shot split of the task (every seed, train and dev) is removed, so the oracle never trains on a
few-shot example or on the dev rows that select its prompt. The rest is deduplicated on the same key,
rid of verbatim copies (second sentence = first, which ``load_synthetic`` would drop) and sampled
label-balanced with the seed: ``per_label`` rows of every label, or, when a label has fewer left, that
smaller count for every label (the summary says so).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dawgen.data.example import DataError, Example
from dawgen.data.kshot import load_kshot_folder
from dawgen.data.readers import write_examples_jsonl
from dawgen.data.sources import HUB_PREFIX
from dawgen.data.synthetic import is_verbatim_copy
from dawgen.utils.io import atomic_write_json

if TYPE_CHECKING:
    from dawgen.tasks.schema import TaskSpec

ORACLE = "oracle"  # the method prefix: oracle+<strategy>[+surgery]
ORACLE_LABEL = "oracle (gold pool labels)"
ORACLE_LEGEND = (
    f"The {ORACLE} rows ({ORACLE}+paired+surgery, {ORACLE}+merged, ...), {ORACLE_LABEL}: trained on rows of the "
    "task's pool with their gold labels in place of a generator's samples (no k-shot row of any seed), the "
    "ceiling of a perfect generator in the same budget."
)
SAMPLING_VERSION = 1  # of ``sample_oracle``: part of the oracle stage's key in a run folder
LABELLED_POOL_SUFFIXES = (".json", ".jsonl", ".tsv", ".csv")  # not .txt: a list of sentences has no labels


@dataclass
class OracleConfig:
    """The ``oracle`` section of a run config.

    ``pool``: the labelled pool the oracle samples from, read with its gold labels: a file (``.json``,
    ``.jsonl``, ``.tsv``, ``.csv``), ``hf:NAME[:CONFIG[:SPLIT]]`` (split ``train`` by default) or a data
    root holding ``<TASK>/pool/train.*``; ``{task}`` becomes the task's name. None: the run's pool (the
    first-sentence pool of generation, e.g. ``<data>/<TASK>/pool/train.json``, SICK's ``pool/train.tsv``).
    """

    pool: str | None = None


@dataclass(frozen=True)
class OracleSet:
    """The sampled oracle examples and a summary of what was kept and removed."""

    examples: list[Example]
    summary: dict[str, Any]


def normalise(text: str | None) -> str:
    """``text`` as the oracle compares it: NFKC, case-folded, runs of whitespace as one space."""
    return " ".join(unicodedata.normalize("NFKC", text or "").casefold().split())


def pair_key(example: Example) -> tuple[str, str]:
    """The normalised text pair of ``example`` (the label plays no part)."""
    return normalise(example.text_a), normalise(example.text_b)


def find_labelled_pool(task: TaskSpec, spec: str | Path) -> str:
    """The labelled pool file of ``task``: ``spec`` itself if it is a file or ``hf:`` dataset; in a folder,
    ``<TASK>/pool/train.*`` or ``pool/train.*`` (``.json``, ``.jsonl``, ``.tsv``, ``.csv``)."""
    text, path = str(spec), Path(spec)
    if text.startswith(HUB_PREFIX) or path.is_file():
        if path.suffix.lower() == ".txt":
            raise DataError(f"the {ORACLE_LABEL} needs a pool with gold labels, not a list of sentences", path=path)
        return text
    if not path.is_dir():
        raise DataError("no such pool file or folder", path=path)
    folders = [path / name / "pool" for name in dict.fromkeys([task.name, task.name.upper()])] + [path / "pool"]
    for candidate in (folder / f"train{suffix}" for folder in folders for suffix in LABELLED_POOL_SUFFIXES):
        if candidate.is_file():
            return str(candidate)
    raise DataError(f"no labelled pool found (looked for {task.name}/pool/train.* and pool/train.*)", path=path)


def kshot_folders(task: TaskSpec, data: str | Path) -> list[Path]:
    """Every k-shot folder of ``task`` under ``data``: the folders of ``<data>/<TASK>/k-shot/`` (all k and
    seeds), those of ``<data>/k-shot/`` or ``<data>/`` when ``data`` is the task's folder, or ``data`` itself
    when it is one k-shot folder. A file or ``hf:`` dataset has none."""
    root = Path(data)
    if str(data).startswith(HUB_PREFIX) or not root.is_dir():
        return []
    train_file = task.kshot_files["train"]
    if (root / train_file).is_file():
        return [root]
    parents = [root / name / "k-shot" for name in dict.fromkeys([task.name, task.name.upper()])]
    parents += [root / "k-shot", root]
    found: dict[Path, None] = {}
    for parent in parents:
        if parent.is_dir():
            found.update(dict.fromkeys(f for f in sorted(parent.iterdir()) if (f / train_file).is_file()))
    return list(found)


def kshot_rows(task: TaskSpec, folders: Iterable[Path]) -> list[Example]:
    """The train and dev rows of every k-shot folder in ``folders``."""
    rows: list[Example] = []
    for folder in folders:
        split = load_kshot_folder(task, folder)
        rows += split.train + split.dev
    return rows


def sample_oracle(
    task: TaskSpec, pool: Sequence[Example], exclude: Sequence[Example], per_label: int, seed: int
) -> OracleSet:
    """``per_label`` gold-labelled pool rows of every label of ``task`` (fewer, the same for every label,
    when a label runs short), none of whose text pairs is in ``exclude`` (the k-shot rows), drawn with
    ``seed``. Raises ``DataError`` when a label has no row left."""
    if per_label < 1:
        raise DataError(f"per_label must be at least 1, got {per_label}")
    excluded = {pair_key(e) for e in exclude}
    seen: set[tuple[str, str]] = set()
    buckets: dict[str, list[Example]] = {label: [] for label in task.labels}
    removed = {"kshot_rows": 0, "duplicates": 0, "verbatim_copies": 0}
    for example in pool:
        key = pair_key(example)
        if key in excluded:
            removed["kshot_rows"] += 1
        elif key in seen:
            removed["duplicates"] += 1
        elif is_verbatim_copy(example):
            removed["verbatim_copies"] += 1
        else:
            seen.add(key)
            buckets.setdefault(example.label, []).append(example)
    empty = [label for label, rows in buckets.items() if not rows]
    if empty:
        raise DataError(f"the pool has no row of label(s) {empty} left once the k-shot rows are removed")
    count = min(per_label, *(len(rows) for rows in buckets.values()))
    rng = np.random.default_rng(seed)
    examples = [rows[i] for rows in buckets.values() for i in rng.permutation(len(rows))[:count]]
    summary = {
        "source": ORACLE_LABEL,
        "seed": seed,
        "pool_rows": len(pool),
        "kshot_rows": len(exclude),
        "kshot_pairs": len(excluded),
        "removed": removed,
        "available_per_label": {label: len(rows) for label, rows in buckets.items()},
        "target_per_label": per_label,
        "per_label": {label: count for label in buckets},
        "short": count < per_label,
        "written": len(examples),
    }
    return OracleSet(examples, summary)


def write_oracle_set(oracle: OracleSet, path: Path, summary_file: Path, **extra: Any) -> None:
    """The examples as JSON Lines at ``path``, then the summary (with ``extra``) at ``summary_file``, both
    atomically; the summary is written last, so its presence means the set is complete."""
    write_examples_jsonl(path, oracle.examples)
    atomic_write_json(summary_file, {**oracle.summary, **extra})
