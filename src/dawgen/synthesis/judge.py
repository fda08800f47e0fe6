"""Label consistency: does a synthetic pair carry the label it was generated for?

A *judge* answers, trained on labelled real pairs that the few-shot learner never sees (e.g. a task's
pool with its gold labels): multinomial logistic regression on the MiniLM pair features
``[u, v, |u - v|, u * v]`` (InferSent's). Its accuracy on a held-out real set says how far to trust it;
its agreement with the synthetic labels measures the synthetic set's label consistency. Agreement near
what the judge gets on real data means the labels are as readable as real ones; agreement near
chance, with a judge well above chance on real data, means the generator's labels are noise.
This diagnostic may read gold pool labels; the same kind of judge fitted on the k-shot training split
alone is stage 2's ``consistency_filter: judge`` (``kshot_filters``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dawgen.data.example import Example
from dawgen.data.sources import load_fewshot, load_test
from dawgen.data.synthetic import load_synthetic
from dawgen.models.precision import precision_record
from dawgen.synthesis.embeddings import SentenceEncoder
from dawgen.tasks.registry import get_task
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_write_json

JUDGE_FEATURES = "MiniLM [u, v, |u-v|, u*v] + logistic regression"


def pair_embeddings(encoder: SentenceEncoder, examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, d] embeddings of the first and of the second sentences (zeros where there is none), each
    side encoded in one call."""
    first = encoder.encode([e.text_a for e in examples])
    second = torch.zeros_like(first)
    paired = [i for i, e in enumerate(examples) if e.text_b is not None]
    if paired:
        second[paired] = encoder.encode([examples[i].text_b for i in paired])
    return first, second


def features_of(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """[N, 4d] pair features ``[u, v, |u - v|, u * v]`` of the two sentences' embeddings."""
    return torch.cat([first, second, (first - second).abs(), first * second], dim=1)


def pair_features(encoder: SentenceEncoder, examples: Sequence[Example]) -> torch.Tensor:
    """[N, 4d] features of sentence pairs (single sentences: [u, 0, |u|, 0])."""
    return features_of(*pair_embeddings(encoder, examples))


class Judge:
    """Logistic regression over fixed features, fitted full-batch with L-BFGS (deterministic)."""

    def __init__(self, labels: Sequence[str], l2: float = 1e-3, max_iter: int = 200) -> None:
        if len(labels) < 2:
            raise ValueError(f"a judge needs at least two labels, got {list(labels)}")
        self.labels, self.l2, self.max_iter = list(labels), l2, max_iter
        self.linear: torch.nn.Linear | None = None

    def fit(self, features: torch.Tensor, labels: Sequence[str]) -> Judge:
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise ValueError(f"the judge's training labels {unknown} are not among {self.labels}")
        targets = torch.tensor([self.labels.index(label) for label in labels])
        generator = torch.Generator().manual_seed(0)
        linear = torch.nn.Linear(features.shape[1], len(self.labels))
        with torch.no_grad():
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * 0.01)
            linear.bias.zero_()
        optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=self.max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(linear(features), targets)
            loss = loss + self.l2 * linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.linear = linear
        return self

    @torch.no_grad()
    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """[N, L] probability of every label (in ``labels`` order)."""
        if self.linear is None:
            raise RuntimeError("fit the judge before predicting")
        return self.linear(features).softmax(dim=1)

    def predict(self, features: torch.Tensor) -> list[str]:
        return [self.labels[i] for i in self.probabilities(features).argmax(dim=1).tolist()]


def agreement(judge: Judge, features: torch.Tensor, examples: Sequence[Example]) -> dict[str, Any]:
    """How often the judge's label equals the examples' own (in %), overall, per label (its recall) and
    balanced (the mean over the labels present: chance is 100 / labels whatever the mix)."""
    predicted = judge.predict(features)
    per_label = {}
    for label in judge.labels:
        said = Counter(p for p, e in zip(predicted, examples, strict=True) if e.label == label)
        total = sum(said.values())
        per_label[label] = {
            "examples": total,
            "agreement": round(100 * said[label] / total, 2) if total else None,
            "judged_as": {other: said[other] for other in judge.labels},
        }
    recalls = [row["agreement"] for row in per_label.values() if row["agreement"] is not None]
    hits = sum(p == e.label for p, e in zip(predicted, examples, strict=True))
    return {
        "examples": len(examples),
        "agreement": round(100 * hits / len(examples), 2) if examples else None,
        "balanced_agreement": round(sum(recalls) / len(recalls), 2) if recalls else None,
        "per_label": per_label,
    }


def held_out_accuracy(
    labels: Sequence[str], features: torch.Tensor, rows: Sequence[Example], held: torch.Tensor,
    held_out: Sequence[Example],
) -> dict[str, Any]:  # fmt: skip
    """Accuracy on ``held_out`` of a judge fitted on ``rows`` (for synthetic rows: train on synthetic, test on real)."""
    result = agreement(Judge(labels).fit(features, [e.label for e in rows]), held, held_out)
    return {"trained_on": len(rows), "accuracy": result["agreement"], "balanced_accuracy": result["balanced_agreement"]}


def label_consistency(
    synthetic: dict[str, Sequence[Example]], reference: Sequence[Example], held_out: Sequence[Example],
    labels: Sequence[str], encoder: SentenceEncoder | None = None, few_shot: Sequence[Example] = (),
) -> dict[str, Any]:  # fmt: skip
    """Fit a judge on ``reference``, score it on ``held_out`` real pairs and on each named synthetic set.

    Independently of any prompt-tuned classifier, also the usefulness of each set as training data:
    the held-out accuracy of the same kind of judge fitted on the set alone (``trained_on_it``), beside
    one fitted on the ``few_shot`` real pairs, when given."""
    encoder = encoder or SentenceEncoder()
    judge = Judge(labels).fit(pair_features(encoder, reference), [e.label for e in reference])
    held = pair_features(encoder, held_out)
    report: dict[str, Any] = {
        "judge": JUDGE_FEATURES,
        "reference": len(reference),
        "real_held_out": agreement(judge, held, held_out),
        "synthetic": {},
    }
    if getattr(encoder, "device", None) is not None:
        report["compute"] = precision_record(encoder.device, None)  # the MiniLM features, in fp32
    if few_shot:
        report["few_shot_trained"] = held_out_accuracy(labels, pair_features(encoder, few_shot), few_shot, held,
                                                       held_out)  # fmt: skip
    for name, rows in synthetic.items():
        features = pair_features(encoder, rows)
        report["synthetic"][name] = agreement(judge, features, rows)
        report["synthetic"][name]["trained_on_it"] = held_out_accuracy(labels, features, rows, held, held_out)
    return report


def judge_synthetic(
    synthetic: Sequence[str | Path], *, reference: str | Path, held_out: str | Path, task: str | TaskSpec,
    out: str | Path | None = None, sample: int | None = None, few_shot: str | Path | None = None, seed: int = 13,
    k: int = 16,
) -> dict[str, Any]:  # fmt: skip
    """:func:`label_consistency` of synthetic files (verbatim copies kept, as generated) with a judge fitted
    on the labelled ``reference`` file and checked on ``held_out`` (files or ``hf:NAME``); ``sample``
    caps the reference rows (a draw with ``seed``); ``few_shot`` (a k-shot folder or data root, with
    ``seed`` and ``k``) adds the judge fitted on the few-shot training split. Written to ``out`` when given."""
    spec = get_task(task)
    rows = load_test(spec, reference)
    if sample is not None and sample < len(rows):
        rows = random.Random(seed).sample(rows, sample)
    sets = {str(path): load_synthetic(spec, path, drop_copies=False).examples for path in synthetic}
    train = load_fewshot(spec, few_shot, seed=seed, k=k).train if few_shot is not None else []
    report = {"task": spec.name, "reference_file": str(reference), "held_out_file": str(held_out)}
    report |= label_consistency(sets, rows, load_test(spec, held_out), spec.labels, few_shot=train)
    if out is not None:
        atomic_write_json(out, report)
    return report
