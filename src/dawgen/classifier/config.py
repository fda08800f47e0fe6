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


class PeftKind(StrEnum):
    """What stage 3 trains on the frozen classifier (``dawgen.classifier.peft_types``)."""

    PROMPT = "prompt"  # an input-level soft prompt (Lester et al.), dawgen's own, saved as PEFT prompt tuning
    PREFIX = "prefix"  # PEFT prefix tuning: key/value prefixes at every layer (P-tuning v2)
    LORA = "lora"  # PEFT LoRA: low-rank updates of the attention projections


# The optimizer and learning rate of each type where the config leaves them at None.
PEFT_DEFAULTS: dict[PeftKind, tuple[OptimizerName, float]] = {
    PeftKind.PROMPT: (OptimizerName.ADAFACTOR, 0.3),  # Lester et al.
    PeftKind.PREFIX: (OptimizerName.ADAMW, 1e-2),
    PeftKind.LORA: (OptimizerName.ADAMW, 1e-3),
}


@dataclass
class PromptTuneConfig:
    """Prompt tuning of a frozen classifier. Defaults: Lester et al. (a soft prompt, Adafactor, lr 0.3).

    ``peft`` says what trains: the soft prompt (``prompt``), PEFT prefixes (``prefix``) or LoRA
    (``lora``); ``optimizer`` and ``learning_rate`` left at ``None`` take the type's defaults
    (``PEFT_DEFAULTS``). Each type reads its own options and ignores the others' (``num_virtual_tokens``
    is the prompt's and the prefix's length; ``prompt_*`` the prompt's, ``prefix_*`` the prefix's,
    ``lora_*`` LoRA's). ``prompt_max_norm`` rescales every prompt vector longer than it back to it
    after each step. ``lora_targets`` None picks the attention's query and value projections by
    module name (``q_proj,v_proj``, ``q,v``, ``query,value``, ...). ``combine`` and ``surgery`` left at
    ``None`` mean: ``real`` without synthetic data, and ``paired`` with gradient surgery (the paper's
    method) with it; see ``resolved``.
    """

    num_virtual_tokens: int = 20
    prompt_init: PromptInit = PromptInit.VOCAB
    prompt_init_text: str | None = None
    optimizer: OptimizerName | None = None  # None: the PEFT type's default
    learning_rate: float | None = None  # None: the PEFT type's default
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
    peft: PeftKind = PeftKind.PROMPT
    prompt_max_norm: float | None = None
    prefix_projection: bool = False  # PEFT's reparametrisation MLP (off, as in P-tuning v2)
    prefix_hidden_size: int | None = None  # the MLP's hidden size; None: the model's hidden size
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] | None = None  # module names (a list or "a,b"); None: found from the model

    def __post_init__(self) -> None:
        self.prompt_init = PromptInit(self.prompt_init)
        self.optimizer = None if self.optimizer is None else OptimizerName(self.optimizer)
        self.combine = None if self.combine is None else Combine(self.combine)
        self.peft = PeftKind(self.peft)
        if isinstance(self.lora_targets, str):
            self.lora_targets = [name.strip() for name in self.lora_targets.split(",") if name.strip()]
        if self.lora_targets is not None:
            self.lora_targets = [str(name) for name in self.lora_targets]
            if not self.lora_targets:
                raise ValueError("lora_targets must name at least one module (or be None for the default)")
        positive = (
            "num_virtual_tokens", "batch_size", "syn_batch_size", "eval_batch_size", "max_steps", "eval_every",
            "max_length",
        )  # fmt: skip
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_rate", "prompt_max_norm", "lora_alpha"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lora_rank", "prefix_hidden_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
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

    @property
    def resolved_optimizer(self) -> OptimizerName:
        """The optimizer in use: the configured one, else the PEFT type's."""
        return self.optimizer or PEFT_DEFAULTS[self.peft][0]

    @property
    def resolved_learning_rate(self) -> float:
        """The learning rate in use: the configured one, else the PEFT type's."""
        return self.learning_rate if self.learning_rate is not None else PEFT_DEFAULTS[self.peft][1]

    def resolved(self, has_synthetic: bool) -> PromptTuneConfig:
        """A copy with every automatic choice made: the strategy, surgery, label smoothing for
        ``merged_ls``, and the PEFT type's optimizer and learning rate."""
        combine = self.combine or (Combine.PAIRED if has_synthetic else Combine.REAL)
        surgery = self.surgery if self.surgery is not None else combine is Combine.PAIRED
        smoothing = self.label_smoothing
        if combine is Combine.MERGED_LS and smoothing == 0:
            smoothing = DEFAULT_MERGED_LABEL_SMOOTHING
        return replace(
            self, combine=combine, surgery=surgery, label_smoothing=smoothing, optimizer=self.resolved_optimizer,
            learning_rate=self.resolved_learning_rate,
        )  # fmt: skip
