"""PPT-style prompt pre-training (Gu et al. 2022): pre-train the soft prompt on self-supervised pairs.

PPT pre-trains the prompt of sentence-pair tasks on a 3-class next-sentence task built from plain
text. Here every text of the pool (one line of a ``.txt`` file, or a table cell) is a document, cut
into sentences at ``.``, ``!`` or ``?`` followed by a capital or a digit; pairs ``(s1, s2)`` are:

- ``next``: s2 directly follows s1 in one document;
- ``far``: s2 is from the same document, at least ``min_gap`` sentences before or after s1;
- ``random``: s2 is from another document.

Pair types map to the task's labels through its label words: ``next`` -> the label whose word is
"Yes" (entailment, paraphrase), ``far`` -> "Maybe" (neutral), ``random`` -> "No". A 2-label task
uses ``next`` and ``random`` only (a same-document pair is neither clearly yes nor no); a 3-label
task uses all three. Tasks with other label words name the labels (``next_label``, ``far_label``,
``random_label``). Every type gets the same number of pairs. The prompt is pre-trained with the
normal prompt tuner on these pairs (dev: held-out pairs), saved as a PEFT adapter, and starts prompt
tuning on the task as a transferred prompt does (``dawgen.baselines.transfer``). With ``peft: prefix``
PEFT prefixes are pre-trained and transferred the same way (``prefix_projection`` off); LoRA stops with
an error.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from dawgen.baselines.transfer import check_startable
from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.run import TuneOutcome, prompt_tune
from dawgen.constants import ADAPTER_DIR
from dawgen.data.example import Example
from dawgen.data.readers import read_texts
from dawgen.models.loading import LoadedModel
from dawgen.tasks.schema import TaskSpec

PRETRAIN_DIR = "pretrain"  # inside a PPT run folder: the pre-training run (its adapter/ is the PPT prompt)
SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")


class PairType(StrEnum):
    NEXT = "next"  # s2 directly follows s1 in the same document
    FAR = "far"  # s2 is from the same document, at least min_gap sentences away
    RANDOM = "random"  # s2 is from another document


DEFAULT_WORDS = {PairType.NEXT: "yes", PairType.FAR: "maybe", PairType.RANDOM: "no"}


@dataclass
class PPTConfig(PromptTuneConfig):
    """Prompt tuning's settings (for the task), plus the pre-training's."""

    pool: str = ""  # unlabeled text: a .txt file (one document a line) or a table (read_texts)
    pool_column: str | None = None
    pretrain_steps: int = 200
    pairs_per_type: int = 1000  # pre-training pairs of each type (fewer if the text has fewer)
    dev_pairs_per_type: int = 32  # held out from them, to pick the best pre-trained prompt
    min_gap: int = 2  # far pairs: at least this many sentences apart
    next_label: str | None = None  # the task label of each pair type; None: found by label word
    far_label: str | None = None
    random_label: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_startable(self, "ppt")
        for name in ("pretrain_steps", "pairs_per_type", "dev_pairs_per_type", "min_gap"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")

    def pretrain_config(self) -> PromptTuneConfig:
        """Prompt tuning's settings for the pre-training run."""
        options = {field.name: getattr(self, field.name) for field in dataclasses.fields(PromptTuneConfig)}
        steps = self.pretrain_steps
        return PromptTuneConfig(**{**options, "max_steps": steps, "eval_every": min(self.eval_every, steps)})


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (cut after . ! ? before a capital or a digit)."""
    return [sentence.strip() for sentence in SENTENCE_END.split(text.strip()) if sentence.strip()]


def pair_labels(
    task: TaskSpec, next_label: str | None = None, far_label: str | None = None, random_label: str | None = None
) -> dict[PairType, str]:
    """The task label of each pair type used for ``task`` (see the module docstring)."""
    if not task.pair:
        raise ValueError(f"PPT pair pre-training needs a sentence-pair task; {task.name!r} has single sentences")
    if task.num_labels not in (2, 3):
        raise ValueError(f"PPT pair pre-training covers 2- and 3-label tasks; {task.name!r} has {task.num_labels}")
    types = [PairType.NEXT, PairType.RANDOM] if task.num_labels == 2 else list(PairType)
    by_word = {task.label_words[label].strip().lower(): label for label in task.labels}
    given = {PairType.NEXT: next_label, PairType.FAR: far_label, PairType.RANDOM: random_label}
    labels = {kind: given[kind] or by_word.get(DEFAULT_WORDS[kind]) for kind in types}
    missing = [f"{kind.value}_label" for kind, label in labels.items() if label is None]
    if missing:
        raise ValueError(
            f"cannot tell which label of {task.name!r} a PPT pair stands for from its label words "
            f"{task.label_words}; set {', '.join(missing)}"
        )
    unknown = [label for label in labels.values() if label not in task.labels]
    if unknown or len(set(labels.values())) != len(labels):
        raise ValueError(f"PPT pair labels must be distinct labels of {task.name!r} {list(task.labels)}: {labels}")
    return {kind: str(label) for kind, label in labels.items()}


def make_pairs(
    texts: Sequence[str], labels: dict[PairType, str], per_type: int, seed: int, min_gap: int = 2
) -> dict[PairType, list[Example]]:
    """Labelled pairs of every type in ``labels``, the same number of each (at most ``per_type``)."""
    rng = np.random.default_rng(seed)
    docs = [sentences for sentences in map(split_sentences, texts) if sentences]
    found: dict[PairType, list[tuple[str, str]]] = {kind: [] for kind in labels}
    for index, doc in enumerate(docs):
        for i, sentence in enumerate(doc):
            if PairType.NEXT in found and i + 1 < len(doc):
                found[PairType.NEXT].append((sentence, doc[i + 1]))
            before, after = max(0, i - min_gap + 1), max(0, len(doc) - i - min_gap)
            if PairType.FAR in found and before + after:
                pick = int(rng.integers(before + after))
                found[PairType.FAR].append((sentence, doc[pick if pick < before else i + min_gap + pick - before]))
            if PairType.RANDOM in found and len(docs) > 1:
                other = int(rng.integers(len(docs) - 1))
                other_doc = docs[other + (other >= index)]
                found[PairType.RANDOM].append((sentence, other_doc[int(rng.integers(len(other_doc)))]))
    empty = [kind.value for kind, pairs in found.items() if not pairs]
    if empty:
        raise ValueError(
            f"the text gives no {' or '.join(empty)} pairs: PPT needs several documents, some of them with "
            f"at least {min_gap + 1} sentences ({len(docs)} documents, {sum(map(len, docs))} sentences)"
        )
    count = min(per_type, *(len(pairs) for pairs in found.values()))
    return {
        kind: [Example(a, labels[kind], b) for a, b in (pairs[i] for i in rng.permutation(len(pairs))[:count])]
        for kind, pairs in found.items()
    }


def pretrain_prompt(
    loaded: LoadedModel,
    task: TaskSpec,
    texts: Sequence[str],
    config: PPTConfig,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> TuneOutcome:
    """Pre-train a soft prompt for ``task`` on pairs from ``texts``; with ``out_dir`` its adapter is
    ``out_dir/adapter`` (a PEFT prompt adapter, usable as a ``TransferConfig.source_adapter``)."""
    labels = pair_labels(task, config.next_label, config.far_label, config.random_label)
    pairs = make_pairs(texts, labels, config.pairs_per_type + config.dev_pairs_per_type, config.seed, config.min_gap)
    held_out = config.dev_pairs_per_type
    if len(pairs[PairType.NEXT]) <= held_out:
        raise ValueError(f"too little text: {len(pairs[PairType.NEXT])} pairs per type, {held_out} held out for dev")
    train = [pair for group in pairs.values() for pair in group[held_out:]]
    dev = [pair for group in pairs.values() for pair in group[:held_out]]
    details = {"pair_labels": {kind.value: label for kind, label in labels.items()}, "pairs": len(train)}
    return prompt_tune(
        loaded, task, train, dev, config=config.pretrain_config(), out_dir=out_dir, show_progress=show_progress,
        method="ppt-pretrain", details=details,
    )  # fmt: skip


def run_ppt(
    loaded: LoadedModel,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example] = (),
    config: PPTConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Pre-train a prompt on ``config.pool`` (in ``out_dir/pretrain``), then prompt-tune from it."""
    if config is None or not config.pool:
        raise ValueError("ppt needs a PPTConfig naming pool: a file of unlabeled text")
    texts = read_texts(config.pool, config.pool_column)
    out = Path(out_dir) if out_dir is not None else None
    pretrain_dir = None if out is None else out / PRETRAIN_DIR
    pretrained = pretrain_prompt(loaded, task, texts, config, pretrain_dir, show_progress)
    pretrain = {key: pretrained.result[key] for key in ("pair_labels", "pairs", "best_step", "dev")}
    if pretrain_dir is not None:
        pretrain["adapter"] = str(pretrain_dir / ADAPTER_DIR)
    outcome = prompt_tune(
        loaded, task, train, dev, test=test, config=config, out_dir=out, show_progress=show_progress,
        start_prompt=pretrained.prompt, method="ppt", details={"pretrain": pretrain},
    )  # fmt: skip
    return outcome.result
