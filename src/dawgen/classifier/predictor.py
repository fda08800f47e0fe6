"""A saved stage-3 classifier put to work: its base model with the PEFT adapter (soft prompt, prefix or
LoRA) that prompt tuning saved, scoring examples. ``evaluate`` scores test sets with it; ``SavedClassifier``
is what stage 2's ``consistency_filter: classifier`` asks for label probabilities (the api and the
pipeline hand it down, so stage 2 never imports this stage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftConfig

from dawgen.classifier.adapter import ADAPTER_CONFIG_FILE, AdapterError, check_adapter, load_prompt, peft_kind
from dawgen.classifier.config import PeftKind
from dawgen.classifier.peft_types import PeftAdapter
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.constants import ADAPTER_DIR
from dawgen.data.example import Example
from dawgen.data.fingerprint import content_key
from dawgen.models.loading import LoadedModel, load_model
from dawgen.tasks.schema import TaskSpec

UNLIMITED = 1_000_000  # tokenizers without a length limit report about 1e30


def input_limit(loaded: LoadedModel) -> int:
    """The most tokens the model takes: its learned positions (``max_position_embeddings``, ``n_positions``)
    or its tokenizer's ``model_max_length``, whichever is smaller; models without either (T5) are unlimited."""
    config = getattr(loaded.model, "config", None)
    limits = [getattr(config, name, None) for name in ("max_position_embeddings", "n_positions")]
    limits.append(getattr(loaded.tokenizer, "model_max_length", None))
    usable = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < UNLIMITED]
    return min(usable, default=UNLIMITED)


@dataclass
class TunedScorer:
    """A verbalizer scorer with a saved adapter: a soft prompt to pass to every forward, or an attached
    prefix or LoRA adapter (``release`` takes it off the model again)."""

    scorer: VerbalizerScorer
    kind: PeftKind | None  # None: the bare model
    prompt: torch.Tensor | None = None
    attached: PeftAdapter | None = None

    def logits(self, examples: Sequence[Example], batch_size: int = 32) -> torch.Tensor:
        """[N, L] label-word logits of ``examples``, in their order."""
        return self.scorer.predict_logits(self.scorer.encoder.encode_all(examples), self.prompt, batch_size)

    def release(self) -> None:
        if self.attached is not None:
            self.attached.release()
            self.attached = None


def tuned_scorer(
    loaded: LoadedModel, task: TaskSpec, adapter: str | Path | None, *, max_length: int = 512,
    precision: str = "auto", device: str | torch.device = "auto",
) -> TunedScorer:  # fmt: skip
    """The scorer of ``loaded`` for ``task`` with the adapter saved in ``adapter`` (None: the bare model);
    ``max_length`` is cut to what the model takes beside the soft prompt."""
    kind = peft_kind(adapter) if adapter is not None else None
    prompt = load_prompt(adapter) if kind is PeftKind.PROMPT else None
    virtual_tokens = 0 if prompt is None else prompt.shape[0]
    max_length = min(max_length, input_limit(loaded) - virtual_tokens)
    scorer = VerbalizerScorer(loaded, task, max_length=max_length, precision=precision, device=str(device))
    if prompt is not None and prompt.shape[1] != scorer.embedding_dim:
        raise AdapterError(
            f"{adapter}: the prompt's vectors have {prompt.shape[1]} dimensions but {loaded.name} embeds tokens in "
            f"{scorer.embedding_dim}; it was tuned on another model"
        )
    prompt = None if prompt is None else prompt.to(scorer.device)
    attached = PeftAdapter.load(scorer, adapter) if kind in (PeftKind.PREFIX, PeftKind.LORA) else None
    return TunedScorer(scorer, kind, prompt, attached)


def find_adapter(folder: str | Path) -> Path:
    """The adapter folder of a stage-3 run folder (its ``adapter/``), or ``folder`` itself if it is one."""
    folder = Path(folder)
    inner = folder / ADAPTER_DIR
    return check_adapter(inner if (inner / ADAPTER_CONFIG_FILE).is_file() else folder)


class SavedClassifier:
    """A classifier saved by stage 3, as stage 2's consistency filter uses it: ``identity`` (a hash of the
    adapter's files) and ``load``, which loads the base model named in the adapter's config and returns a
    function from examples to ``[N, L]`` label probabilities (the softmax over the label words)."""

    def __init__(self, folder: str | Path, *, precision: str = "auto", batch_size: int = 32) -> None:
        self.folder = find_adapter(folder)  # a bad folder fails here, before any model is loaded
        self.identity = content_key(self.folder) or ""
        self.precision, self.batch_size = precision, batch_size

    @property
    def base_model(self) -> str:
        return str(PeftConfig.from_pretrained(str(self.folder)).base_model_name_or_path)

    def load(self, task: TaskSpec, device: torch.device) -> _Probabilities:
        tuned = tuned_scorer(load_model(self.base_model), task, self.folder, precision=self.precision, device=device)
        return _Probabilities(tuned, self.batch_size)


@dataclass
class _Probabilities:
    tuned: TunedScorer
    batch_size: int

    def __call__(self, examples: Sequence[Example]) -> torch.Tensor:
        return self.tuned.logits(examples, self.batch_size).softmax(dim=-1)
