"""Data-combination strategies: each visits the data in its documented order.

The training run is pinned to fp32 (``precision="fp32"``).
"""

from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest
import torch

from dawgen.classifier.combine import Combine, Source, plan_steps
from dawgen.classifier.encoding import Encoded

REAL = [Encoded([1] * (1 + i % 5), 0, i % 2) for i in range(10)]  # 5 per label, varied lengths
SYN = [Encoded([2] * (1 + i % 7), 0, int(i < 24)) for i in range(30)]  # unbalanced: 24 of label 1, 6 of label 0


def plan(strategy: Combine, **kw):
    settings = dict(batch_size=4, syn_batch_size=6, seed=3, num_labels=2)
    return plan_steps(strategy, REAL, SYN, **{**settings, **kw})


def ids(batch: list[Encoded]) -> list[int]:
    return [id(item) for item in batch]


def test_real_and_syn_use_one_source_and_cover_it_every_epoch():
    for strategy, source, data, per_epoch in ((Combine.REAL, Source.REAL, REAL, 3), (Combine.SYN, Source.SYN, SYN, 5)):
        steps = list(islice(plan(strategy), 2 * per_epoch))
        assert all(step.batches[0][0] is source and len(step.batches) == 1 for step in steps)
        for epoch in range(2):
            seen = [i for step in steps[epoch * per_epoch : (epoch + 1) * per_epoch] for i in ids(step.batches[0][1])]
            assert sorted(seen) == sorted(ids(data))


def test_merged_shuffles_both_sources_together():
    steps = list(islice(plan(Combine.MERGED), 10))  # 40 items, batches of 4: one epoch
    seen = [i for step in steps for i in ids(step.batches[0][1])]
    assert sorted(seen) == sorted(ids(REAL) + ids(SYN))
    assert any({id(x) for x in REAL} & set(ids(s.batches[0][1])) for s in steps)


@pytest.mark.parametrize("strategy", [Combine.REAL_THEN_SYN, Combine.SYN_THEN_REAL])
def test_sequential_strategies_finish_one_source_before_the_other(strategy):
    first, second = (REAL, SYN) if strategy is Combine.REAL_THEN_SYN else (SYN, REAL)
    n_first = 3 if first is REAL else 5
    n_second = 5 if first is REAL else 3
    epoch = n_first + n_second
    steps = list(islice(plan(strategy), 2 * epoch))
    for start in (0, epoch):
        head = steps[start : start + n_first]
        tail = steps[start + n_first : start + epoch]
        assert sorted(i for s in head for i in ids(s.batches[0][1])) == sorted(ids(first))
        assert sorted(i for s in tail for i in ids(s.batches[0][1])) == sorted(ids(second))
    sources = [s.batches[0][0] for s in steps[:epoch]]
    assert sources == sorted(sources, key=lambda source: source is not sources[0])


def test_paired_cycles_real_against_balanced_synthetic_batches():
    steps = list(islice(plan(Combine.PAIRED), 6))
    assert all([source for source, _ in step.batches] == [Source.REAL, Source.SYN] for step in steps)
    real_seen = [i for step in steps[:3] for i in ids(step.batches[0][1])]
    assert sorted(real_seen) == sorted(ids(REAL))  # the small real set cycles: 3 batches per pass
    for step in steps:
        counts = Counter(item.label for item in step.batches[1][1])
        assert counts == {0: 3, 1: 3}  # balanced although SYN is 24:6
    unbalanced = list(islice(plan(Combine.PAIRED, balance_synthetic=False), 5))
    assert sum(item.label for s in unbalanced for item in s.batches[1][1]) == 24


def test_plans_are_deterministic_and_seeded():
    for strategy in Combine:
        first = [[ids(b) for _, b in s.batches] for s in islice(plan(strategy), 12)]
        again = [[ids(b) for _, b in s.batches] for s in islice(plan(strategy), 12)]
        other = [[ids(b) for _, b in s.batches] for s in islice(plan(strategy, seed=4), 12)]
        assert first == again and first != other


def test_synthetic_strategies_need_synthetic_data():
    with pytest.raises(ValueError, match="needs a synthetic dataset"):
        plan_steps(Combine.PAIRED, REAL, [], batch_size=4, syn_batch_size=4, seed=0, num_labels=2)


def test_paired_step_with_surgery_never_opposes_the_real_gradient(tiny_model_dirs):
    from dawgen.classifier.config import PromptTuneConfig
    from dawgen.classifier.scorer import VerbalizerScorer
    from dawgen.classifier.train import PromptTrainer
    from dawgen.data.example import Example
    from dawgen.models.loading import load_model
    from dawgen.tasks import Family, get_task

    task = get_task("RTE")
    scorer = VerbalizerScorer(load_model(str(tiny_model_dirs[Family.DECODER])), task, precision="fp32", device="cpu")
    real = scorer.encoder.encode_all([Example("A man sleeps.", "entailment", "A man rests.")] * 4)
    syn = scorer.encoder.encode_all([Example("A man sleeps.", "not_entailment", "A man rests.")] * 4)
    config = PromptTuneConfig(num_virtual_tokens=4, batch_size=4, syn_batch_size=4, max_steps=3, eval_every=3,
                              precision="fp32", combine="paired", surgery=True)  # fmt: skip
    trainer = PromptTrainer(scorer, config)
    applied = []
    trainer.apply = applied.append
    steps = plan_steps(
        Combine.PAIRED, real, syn, batch_size=4, syn_batch_size=4, seed=0, num_labels=2, balance_synthetic=False
    )
    record = trainer.take_step(next(steps))
    d_real, _ = trainer.gradient(real)
    assert record["conflict"] and record["cosine"] < 0  # opposite labels on the same text
    assert torch.dot(applied[0].flatten(), d_real.flatten()) >= 0.999 * d_real.norm() ** 2
    assert trainer.conflict_rate == 1.0 and set(record) >= {"real_loss", "syn_loss", "cosine", "conflict"}
