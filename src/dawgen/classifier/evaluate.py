"""`dawgen evaluate`: a test set scored zero-shot, in-context, or with a tuned adapter (stage 3's evaluation)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from dawgen.classifier.adapter import load_prompt, peft_kind
from dawgen.classifier.config import PeftKind
from dawgen.classifier.in_context import encode_in_context
from dawgen.classifier.peft_types import PeftAdapter
from dawgen.classifier.scorer import VerbalizerScorer, predict_with_progress
from dawgen.constants import PREDICTIONS_FILE, RESULT_FILE
from dawgen.data.example import Example
from dawgen.evaluation.metrics import classification_metrics
from dawgen.evaluation.predict import write_predictions
from dawgen.models.loading import LoadedModel
from dawgen.models.precision import describe_precision, precision_record
from dawgen.progress import progress_bar
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_write_json


class EvalMethod(StrEnum):
    ZERO_SHOT = "zero-shot"  # the template and verbalizer alone
    IN_CONTEXT = "in-context"  # labelled training examples in front of each test example
    PROMPT = "prompt"  # a tuned PEFT adapter folder: a soft prompt, prefixes or LoRA (also called "adapter")

    @classmethod
    def _missing_(cls, value: object) -> EvalMethod | None:
        return cls.PROMPT if value == ADAPTER_ALIAS else None


ADAPTER_ALIAS = "adapter"  # another name of EvalMethod.PROMPT: the folder may hold any of the three types


def evaluate(
    loaded: LoadedModel,
    task: TaskSpec,
    test: Sequence[Example],
    *,
    method: EvalMethod = EvalMethod.ZERO_SHOT,
    adapter: str | Path | None = None,
    train: Sequence[Example] = (),
    demonstrations_per_label: int = 1,
    seed: int = 13,
    max_length: int = 512,
    batch_size: int = 32,
    precision: str = "auto",
    device: str = "auto",
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score ``test`` and return accuracy (and F1 where the task has it), in percent."""
    method = EvalMethod(method)
    if method is EvalMethod.PROMPT and adapter is None:
        raise ValueError("method 'prompt' (or 'adapter') needs the folder of a tuned PEFT adapter")
    if method is EvalMethod.IN_CONTEXT and not train:
        raise ValueError("method 'in-context' needs training examples to draw demonstrations from")
    scorer = VerbalizerScorer(loaded, task, max_length=max_length, precision=precision, device=device)
    kind = peft_kind(adapter) if method is EvalMethod.PROMPT and adapter is not None else None
    prompt = load_prompt(adapter).to(scorer.device) if kind is PeftKind.PROMPT else None
    if method is EvalMethod.IN_CONTEXT:
        items = encode_in_context(scorer.encoder, train, test, demonstrations_per_label, seed)
    else:
        items = scorer.encoder.encode_all(test)
    attached = None
    if kind in (PeftKind.PREFIX, PeftKind.LORA):
        attached = PeftAdapter.load(scorer, adapter)
    try:
        with progress_bar(show_progress) as bar:
            logits = predict_with_progress(scorer, items, prompt, bar, batch_size, f"{method.value} {task.name}")
    finally:
        if attached is not None:
            attached.release()
    result = {
        "method": method.value,
        "task": task.name,
        "model": loaded.name,
        "family": loaded.family.value,
        "precision": describe_precision(scorer.device, scorer.autocast_dtype),
        "compute": precision_record(scorer.device, scorer.autocast_dtype),
        "seed": seed,
        "adapter": None if adapter is None else str(adapter),
        "peft": None if kind is None else kind.value,
        "test_size": len(test),
        "test": classification_metrics(logits, [item.label for item in items], task),
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_predictions(out / PREDICTIONS_FILE, test, logits, task.labels)
        atomic_write_json(out / RESULT_FILE, result)
    return result
