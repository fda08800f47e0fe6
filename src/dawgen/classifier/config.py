"""Settings of prompt tuning (Stage 3), with the defaults of method.md."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from dawgen.classifier.combine import Combine
from dawgen.models.soft_prompt import PromptInit

DEFAULT_MERGED_LABEL_SMOOTHING = 0.1


class OptimizerName(StrEnum):
    ADAFACTOR = "adafactor"
    ADAMW = "adamw"


@dataclass
class PromptTuneConfig:
    """Prompt tuning of a frozen classifier. Defaults: Lester et al. (Adafactor, lr 0.3).

    ``combine`` and ``surgery`` left at ``None`` mean: ``real`` without synthetic data, and
    ``paired`` with gradient surgery (the paper's method) with it; see ``resolved``.
    """

    num_virtual_tokens: int = 20
    prompt_init: PromptInit = PromptInit.VOCAB
    prompt_init_text: str | None = None
    optimizer: OptimizerName = OptimizerName.ADAFACTOR
    learning_rate: float = 0.3
    weight_decay: float = 1e-5
    max_grad_norm: float = 1.0
    label_smoothing: float = 0.0
    batch_size: int = 8
    eval_batch_size: int = 32
    max_steps: int = 200
    eval_every: int = 25
    max_length: int = 256
    precision: str = "auto"
    device: str = "auto"
    seed: int = 13
    combine: Combine | None = None
    surgery: bool | None = None
    eps: float = 1.0
    syn_batch_size: int = 8
    balance_synthetic: bool = True

    def __post_init__(self) -> None:
        self.prompt_init = PromptInit(self.prompt_init)
        self.optimizer = OptimizerName(self.optimizer)
        self.combine = None if self.combine is None else Combine(self.combine)
        positive = (
            "num_virtual_tokens", "batch_size", "syn_batch_size", "eval_batch_size", "max_steps", "eval_every",
            "max_length",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be positive, got {self.max_grad_norm}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.prompt_init is PromptInit.TEXT and not self.prompt_init_text:
            raise ValueError("prompt_init 'text' needs prompt_init_text")
        if self.eps < 0:
            raise ValueError(f"eps must be non-negative, got {self.eps}")
        if self.surgery and self.combine not in (None, Combine.PAIRED):
            raise ValueError(f"gradient surgery needs combine 'paired', not {self.combine.value!r}")

    def resolved(self, has_synthetic: bool) -> PromptTuneConfig:
        """A copy with every automatic choice made: the strategy, surgery, and label smoothing
        for ``merged_ls``."""
        combine = self.combine or (Combine.PAIRED if has_synthetic else Combine.REAL)
        surgery = self.surgery if self.surgery is not None else combine is Combine.PAIRED
        smoothing = self.label_smoothing
        if combine is Combine.MERGED_LS and smoothing == 0:
            smoothing = DEFAULT_MERGED_LABEL_SMOOTHING
        return replace(self, combine=combine, surgery=surgery, label_smoothing=smoothing)
