"""Slow: prompt tuning the real SmolLM2-135M for a few steps (run with `pytest -m slow`)."""

from __future__ import annotations

import pytest

from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.data.sources import demo_dir, demo_task, load_fewshot


@pytest.mark.slow
def test_prompt_tuning_smollm2_lowers_the_loss(smollm2):
    task = demo_task()
    split = load_fewshot(task, demo_dir())
    scorer = VerbalizerScorer(smollm2, task, precision="fp32", device="cpu")
    items = scorer.encoder.encode_all(split.train)[:16]
    trainer = PromptTrainer(scorer, PromptTuneConfig(num_virtual_tokens=8, batch_size=8, max_steps=8, eval_every=8))
    before = trainer.evaluate(items)["loss"]
    trainer.train(items, items)
    after = trainer.evaluate(items)["loss"]
    assert after < before, (before, after)
