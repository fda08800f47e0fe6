"""PFT: prompt-based fine-tuning (LM-BFF), and PFT + soft prompt (the paper's Table 1).

Examples are wrapped in the task's template and scored by the verbalizer exactly as in prompt tuning
(``VerbalizerScorer``); the loss is the cross-entropy over the label words. Unlike prompt tuning,
every weight of the model trains (AdamW, lr 1e-5, LM-BFF). With ``soft_prompt`` a soft prompt is
inserted as in prompt tuning and trains alongside, at its own learning rate (a prompt needs far
larger steps than pretrained weights; 1e-3 with AdamW is dawgen's choice). Both run prompt tuning's
loop (``PromptTrainer`` with a ``Trainable`` that includes the backbone), on a copy of the model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dawgen.baselines.ft import FTConfig, training_copy
from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.run import train_classifier
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import Trainable
from dawgen.config import to_dict
from dawgen.data.example import Example
from dawgen.models.loading import LoadedModel
from dawgen.models.soft_prompt import PromptInit
from dawgen.tasks.schema import TaskSpec


@dataclass
class PFTConfig(FTConfig):
    """FT's settings (``learning_rate`` is the backbone's), plus the optional soft prompt."""

    soft_prompt: bool = False
    num_virtual_tokens: int = 20
    prompt_init: PromptInit = PromptInit.VOCAB
    prompt_learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        self.prompt_init = PromptInit(self.prompt_init)
        if self.prompt_learning_rate <= 0:
            raise ValueError(f"prompt_learning_rate must be positive, got {self.prompt_learning_rate}")
        super().__post_init__()

    def tune_config(self) -> PromptTuneConfig:
        return dataclasses.replace(
            super().tune_config(),
            num_virtual_tokens=self.num_virtual_tokens,
            prompt_init=self.prompt_init,
            learning_rate=self.prompt_learning_rate,
        )

    @property
    def method(self) -> str:
        return "pft+prompt" if self.soft_prompt else "pft"


def run_pft(
    loaded: LoadedModel,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example] = (),
    config: PFTConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Prompt-based fine-tuning of a copy of ``loaded`` (with a soft prompt if ``config.soft_prompt``).

    With ``out_dir``: ``metrics.jsonl`` and ``result.json``; no adapter, since the prompt is only
    meaningful with the fine-tuned weights. The caller's model is left untouched.
    """
    config = config or PFTConfig()
    torch.manual_seed(config.seed)  # dropout
    tune = config.tune_config()
    scorer = VerbalizerScorer(
        training_copy(loaded), task, max_length=tune.max_length, precision=tune.precision, device=tune.device
    )
    trainable = Trainable(prompt=config.soft_prompt, backbone_learning_rate=config.learning_rate)
    return train_classifier(
        scorer, train, dev, test=test, config=tune, out_dir=out_dir, show_progress=show_progress,
        trainable=trainable, method=config.method, settings=to_dict(config),
    ).result  # fmt: skip


def run_pft_prompt(
    loaded: LoadedModel,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example] = (),
    config: PFTConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """PFT + soft prompt: ``run_pft`` with ``soft_prompt`` switched on."""
    config = dataclasses.replace(config or PFTConfig(), soft_prompt=True)
    return run_pft(loaded, task, train, dev, test, config, out_dir, show_progress)
