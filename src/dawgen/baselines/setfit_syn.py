"""SetFit trained on the real k-shot pairs plus a synthetic set: ``setfit+syn``.

The SetFit baseline (``dawgen.baselines.setfit``: the same offline all-MiniLM-L6-v2 body and the same
settings) with the rows of a synthetic set added to its training examples: all of them (verbatim copies
dropped, as prompt tuning drops them), or ``synthetic_per_label`` rows of every label drawn with the seed
(label-balanced: the same count for every label, fewer when a label runs short). In a run,
``setfit+<plain|fewgen|dawgen>+syn`` trains on the synthetic set of that generator, made by stages 1 and 2
of the run (``setfit+syn`` = ``setfit+dawgen+syn``); ``synthetic_file`` takes an external set in place of
it (e.g. FewGen's public ``gen-train.json``; in a run config ``{task}``, ``{seed}`` and ``{k}`` are filled
in), and then no generator is tuned for the method. The result's ``synthetic`` says which set was used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dawgen.baselines.setfit import SetFitConfig, run_setfit
from dawgen.data.example import DataError, Example
from dawgen.data.synthetic import load_synthetic
from dawgen.models.loading import LoadedModel
from dawgen.tasks.schema import TaskSpec

METHOD = "setfit+syn"


@dataclass
class SetFitSynConfig(SetFitConfig):
    """SetFit's settings, and which synthetic rows join the real ones.

    ``synthetic_per_label``: rows of every label drawn from the synthetic set (None: all of it).
    ``synthetic_file``: an external synthetic set (any file or folder ``load_synthetic`` reads) used in
    place of the run's.
    """

    synthetic_per_label: int | None = None
    synthetic_file: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.synthetic_per_label is not None and self.synthetic_per_label < 1:
            raise ValueError(f"synthetic_per_label must be at least 1, got {self.synthetic_per_label}")


def sample_per_label(
    examples: Sequence[Example], labels: Sequence[str], per_label: int | None, seed: int
) -> list[Example]:
    """``per_label`` examples of every label drawn with ``seed`` (the same count for every label: fewer when
    one runs short), in their order in ``examples``; all of them when ``per_label`` is None."""
    if per_label is None:
        return list(examples)
    buckets: dict[str, list[int]] = {label: [] for label in labels}
    for index, example in enumerate(examples):
        buckets[example.label].append(index)
    empty = [label for label, rows in buckets.items() if not rows]
    if empty:
        raise DataError(f"the synthetic set has no row of label(s) {empty} to draw synthetic_per_label rows from")
    count = min(per_label, *(len(rows) for rows in buckets.values()))
    rng = np.random.default_rng(seed)
    chosen = sorted(rows[i] for rows in buckets.values() for i in rng.permutation(len(rows))[:count])
    return [examples[i] for i in chosen]


def run_setfit_syn(
    loaded: LoadedModel | None,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example] = (),
    config: SetFitSynConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
    *,
    synthetic: str | Path | None = None,
) -> dict[str, Any]:
    """SetFit on ``train`` plus the synthetic set ``config.synthetic_file`` (if set) or ``synthetic`` (the
    run's); scores ``dev`` and ``test`` as ``run_setfit`` does. The result's ``synthetic`` names the set, how
    many of its rows were used (per label) and how they were chosen."""
    config = config or SetFitSynConfig()
    source = config.synthetic_file or synthetic
    if source is None:
        raise ValueError(
            f"{METHOD} needs a synthetic set: run it in `dawgen run` as setfit+<plain|fewgen|dawgen>+syn, "
            "or set synthetic_file"
        )
    syn = load_synthetic(task, source)
    picked = sample_per_label(syn.examples, task.labels, config.synthetic_per_label, config.seed)
    counts = Counter(example.label for example in picked)
    info = {
        "path": str(Path(source).resolve()) if config.synthetic_file else str(source),
        "origin": "synthetic_file" if config.synthetic_file else "run",
        "rows": len(syn.examples),
        "dropped_copies": syn.dropped_copies,
        "synthetic_per_label": config.synthetic_per_label,
        "used": len(picked),
        "used_per_label": {label: counts[label] for label in task.labels},
        "real": len(train),
    }
    return run_setfit(loaded, task, [*train, *picked], dev, test, config, out_dir, show_progress, method=METHOD,
                      extra={"synthetic": info})  # fmt: skip
