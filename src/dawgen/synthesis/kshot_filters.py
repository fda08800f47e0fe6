"""The filters of stage 2 that learn from the k-shot training split: against wrong labels and shortcuts.

- ``consistency_filter: judge``: a judge (``judge.Judge``: logistic regression on the MiniLM pair
  features ``[u, v, |u-v|, u*v]``) fitted on the k-shot training split alone keeps a sample only if it
  gives the sample's own label a probability of ``judge_confidence`` or more. ``classifier``: a saved
  stage-3 classifier gives the probabilities instead. Stage 2 never imports stage 3: the caller
  (``dawgen.api``, the pipeline) passes a ``ClassifierSource`` (``dawgen.classifier.predictor.SavedClassifier``).
- ``relatedness_floor: kshot``: a pair whose sentences' MiniLM cosine is below the ``relatedness_quantile``
  of the cosines of its label's k-shot training pairs is dropped as ``unrelated`` (a second sentence
  that ignores the first is a shortcut to a label).

The pool's gold labels are never read (the few-shot setting). The encoder is loaded once per run; the
samples of a batch that passed the earlier filters are encoded together, and each verdict is recorded
beside the reason (``relatedness``, ``judge_probability``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch

from dawgen.data.example import Example
from dawgen.data.fingerprint import inputs_fingerprint
from dawgen.synthesis.config import ConsistencyFilter, GenerationConfig, Reject, RelatednessFloor
from dawgen.synthesis.embeddings import SentenceEncoder
from dawgen.synthesis.judge import JUDGE_FEATURES, Judge, features_of, pair_embeddings
from dawgen.tasks.schema import TaskSpec

LabelPredictor = Callable[[Sequence[Example]], torch.Tensor]  # [N, L] label probabilities, in the task's order


class ClassifierSource(Protocol):
    """A saved stage-3 classifier as stage 2 sees it: what identifies its content, and how to load it."""

    identity: str  # a content hash of the saved classifier: part of the run's settings

    def load(self, task: TaskSpec, device: torch.device) -> LabelPredictor: ...


def cosines(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """[N] cosine of each row pair of unit-length embeddings."""
    return (first * second).sum(dim=-1)


def relatedness_thresholds(
    cosine: torch.Tensor, labels: Sequence[str], names: Sequence[str], quantile: float
) -> dict[str, float]:
    """Per label of ``names``: the ``quantile`` (linear interpolation) of ``cosine`` over the pairs of that label."""
    thresholds = {}
    for name in names:
        rows = [i for i, label in enumerate(labels) if label == name]
        if not rows:
            raise ValueError(f"the k-shot training split has no pair of label {name!r} to set its relatedness floor")
        thresholds[name] = float(torch.quantile(cosine[rows].double(), quantile))
    return thresholds


def check_kshot_inputs(
    config: GenerationConfig, task: TaskSpec, train: Sequence[Example] | None, classifier: ClassifierSource | None
) -> None:
    """What the chosen filters need, checked before any model is loaded."""
    if config.needs_kshot_train:
        what = _kshot_users(config)
        if not train:
            raise ValueError(f"{what}: learns from the k-shot training split; give it (--few-shot: a k-shot folder or "
                             "data root)")  # fmt: skip
        missing = sorted(set(task.labels) - {e.label for e in train})
        if missing:
            raise ValueError(f"{what}: the k-shot training split has no example of label(s) {missing}")
    if config.relatedness_floor is RelatednessFloor.KSHOT and not task.pair:
        raise ValueError(f"relatedness_floor compares the two sentences of a pair; task {task.name!r} has one")
    if config.consistency_filter is ConsistencyFilter.CLASSIFIER and classifier is None:
        raise ValueError(
            "consistency_filter 'classifier' needs the classifier loaded by the caller (dawgen.api and the pipeline "
            "load consistency_classifier)"
        )


def _kshot_users(config: GenerationConfig) -> str:
    """The filters that learn from the k-shot training split, named as in the config."""
    names = []
    if config.consistency_filter is ConsistencyFilter.JUDGE:
        names.append("consistency_filter 'judge'")
    if config.relatedness_floor is RelatednessFloor.KSHOT:
        names.append("relatedness_floor 'kshot'")
    return " and ".join(names)


def kshot_settings(
    config: GenerationConfig, task: TaskSpec, train: Sequence[Example] | None, classifier: ClassifierSource | None
) -> dict[str, str]:
    """What the filters learn from, for the run's settings (empty when no filter learns from anything)."""
    settings = {}
    if config.needs_kshot_train and train:
        settings["kshot_train"] = inputs_fingerprint("", task, train)
    if config.consistency_filter is ConsistencyFilter.CLASSIFIER and classifier is not None:
        settings["classifier"] = classifier.identity
    return settings


class KShotFilters:
    """The judge (or classifier) and the relatedness floor of one run, applied batch by batch."""

    def __init__(
        self, config: GenerationConfig, task: TaskSpec, train: Sequence[Example] = (), *,
        encoder: Any = None, predictor: LabelPredictor | None = None,
    ) -> None:  # fmt: skip
        """``encoder`` (``SentenceEncoder``-like) is needed by the judge and the relatedness floor;
        ``predictor`` by ``consistency_filter: classifier``."""
        self.config, self.labels, self.train_size = config, list(task.labels), len(train)
        self.encoder, self.predictor = encoder, predictor
        self.judge: Judge | None = None
        self.thresholds: dict[str, float] | None = None
        judged = config.consistency_filter is ConsistencyFilter.JUDGE
        floor = config.relatedness_floor is RelatednessFloor.KSHOT
        if (judged or floor) and encoder is None:
            raise ValueError("the judge and the relatedness floor need a sentence encoder")
        if config.consistency_filter is ConsistencyFilter.CLASSIFIER and predictor is None:
            raise ValueError("consistency_filter 'classifier' needs a predictor")
        if judged or floor:
            first, second = pair_embeddings(encoder, train)
            train_labels = [e.label for e in train]
            if judged:
                self.judge = Judge(self.labels).fit(features_of(first, second), train_labels)
            if floor:
                self.thresholds = relatedness_thresholds(
                    cosines(first, second), train_labels, self.labels, config.relatedness_quantile
                )

    @classmethod
    def build(
        cls, config: GenerationConfig, task: TaskSpec, train: Sequence[Example] | None,
        classifier: ClassifierSource | None, device: torch.device,
    ) -> KShotFilters | None:  # fmt: skip
        """The run's filters, with the MiniLM encoder and the classifier loaded once (None: none is on)."""
        by_classifier = config.consistency_filter is ConsistencyFilter.CLASSIFIER
        if not (config.needs_kshot_train or by_classifier):
            return None
        check_kshot_inputs(config, task, train, classifier)
        encoder = SentenceEncoder(device=str(device)) if config.needs_kshot_train else None
        predictor = classifier.load(task, device) if by_classifier and classifier is not None else None
        return cls(config, task, train or (), encoder=encoder, predictor=predictor)

    def describe(self) -> dict[str, Any]:
        """The filters' settings and what they learnt, for the summary."""
        info: dict[str, Any] = {"kshot_train": self.train_size}
        if self.judge is not None:
            info["judge"] = {"features": JUDGE_FEATURES, "trained_on": self.train_size,
                             "confidence": self.config.judge_confidence}  # fmt: skip
        if self.predictor is not None:
            info["classifier"] = {"folder": self.config.consistency_classifier,
                                  "confidence": self.config.judge_confidence}  # fmt: skip
        if self.thresholds is not None:
            info["relatedness"] = {
                "quantile": self.config.relatedness_quantile,
                "thresholds": {label: round(value, 4) for label, value in self.thresholds.items()},
            }
        return info

    def apply(self, records: Sequence[dict[str, Any]]) -> None:
        """Judge the records that passed every filter so far, in place: ``reject`` set to ``unrelated`` or
        ``judge_rejected`` where they fail, ``relatedness`` and ``judge_probability`` recorded."""
        pending = [record for record in records if record.get("reject") is None]
        if not pending:
            return
        examples = [Example(r["text_a"], r["label"], r.get("text_b")) for r in pending]
        first = second = torch.zeros(0)
        if self.encoder is not None:
            first, second = pair_embeddings(self.encoder, examples)
        if self.thresholds is not None:
            for record, cosine in zip(pending, cosines(first, second).tolist(), strict=True):
                record["relatedness"] = round(cosine, 4)
                if cosine < self.thresholds[record["label"]]:
                    record["reject"] = Reject.UNRELATED.value
        if self.judge is None and self.predictor is None:
            return
        kept = [k for k, record in enumerate(pending) if record["reject"] is None]
        if not kept:
            return
        probabilities = self._probabilities(examples, first, second, kept)
        own = torch.tensor([self.labels.index(pending[k]["label"]) for k in kept])
        for k, probability in zip(kept, probabilities[torch.arange(len(kept)), own].tolist(), strict=True):
            pending[k]["judge_probability"] = round(probability, 4)
            if probability < self.config.judge_confidence:
                pending[k]["reject"] = Reject.JUDGE_REJECTED.value

    def _probabilities(
        self, examples: list[Example], first: torch.Tensor, second: torch.Tensor, rows: list[int]
    ) -> torch.Tensor:
        """[len(rows), L] label probabilities of ``examples[rows]``, from the judge or the classifier."""
        if self.judge is not None:
            return self.judge.probabilities(features_of(first[rows], second[rows]))
        assert self.predictor is not None
        probabilities = self.predictor([examples[k] for k in rows]).float().cpu()
        if probabilities.shape != (len(rows), len(self.labels)):
            raise ValueError(
                f"the classifier gave label probabilities of shape {tuple(probabilities.shape)} for {len(rows)} "
                f"samples of {len(self.labels)} labels"
            )
        return probabilities
