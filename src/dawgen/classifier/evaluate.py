"""`dawgen evaluate`: a test set scored zero-shot, in-context, or with a tuned adapter (stage 3's evaluation)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from dawgen.classifier.adapter import check_adapter
from dawgen.classifier.in_context import check_demonstrations_per_label, encode_in_context
from dawgen.classifier.predictor import tuned_scorer
from dawgen.classifier.scorer import predict_with_progress
from dawgen.config import ConfigError
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


def eval_method(value: str | EvalMethod) -> EvalMethod:
    """``value`` as an ``EvalMethod``; anything else is a ``ConfigError`` naming the choices."""
    try:
        return EvalMethod(value)
    except ValueError:
        choices = ", ".join([*(m.value for m in EvalMethod), ADAPTER_ALIAS])
        raise ConfigError(f"--method: unknown method {value!r}; choose {choices}") from None


def check_method_inputs(method: EvalMethod, adapter: str | Path | None, has_train: bool) -> None:
    """What ``method`` needs, checked before any model is loaded."""
    if method is EvalMethod.PROMPT:
        if adapter is None:
            raise ConfigError("method 'prompt' (or 'adapter') needs the folder of a tuned PEFT adapter (--adapter)")
        check_adapter(adapter)
    if method is EvalMethod.IN_CONTEXT and not has_train:
        raise ConfigError("method 'in-context' needs training examples to draw demonstrations from (--data)")


def evaluate(
    loaded: LoadedModel,
    task: TaskSpec,
    test: Sequence[Example],
    *,
    method: EvalMethod = EvalMethod.ZERO_SHOT,
    adapter: str | Path | None = None,
    train: Sequence[Example] = (),
    demonstrations_per_label: int | None = None,
    seed: int = 13,
    max_length: int = 512,
    batch_size: int = 32,
    precision: str = "auto",
    device: str = "auto",
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Score ``test`` and return accuracy (and F1 where the task has it), in percent.

    In-context prompting puts ``demonstrations_per_label`` training examples of every label (None:
    all of them, the k of a k-shot split) in front of each test example, as many as fit in ``max_length``.
    """
    method = eval_method(method)
    check_method_inputs(method, adapter, bool(train))
    check_demonstrations_per_label(demonstrations_per_label)
    tuned = tuned_scorer(loaded, task, adapter if method is EvalMethod.PROMPT else None, max_length=max_length,
                         precision=precision, device=device)  # fmt: skip
    scorer, kind, max_length = tuned.scorer, tuned.kind, tuned.scorer.encoder.max_length
    try:
        if method is EvalMethod.IN_CONTEXT:
            items = encode_in_context(scorer.encoder, train, test, demonstrations_per_label, seed)
        else:
            items = scorer.encoder.encode_all(test)
        with progress_bar(show_progress) as bar:
            logits = predict_with_progress(scorer, items, tuned.prompt, bar, batch_size, f"{method.value} {task.name}")
    finally:
        tuned.release()
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
    if method is EvalMethod.IN_CONTEXT:
        result["max_length"] = max_length
        result["demonstrations_per_label"] = demonstrations_per_label
        result["demonstrations_mean"] = round(sum(item.demonstrations for item in items) / max(len(items), 1), 2)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_predictions(out / PREDICTIONS_FILE, test, logits, task.labels)
        atomic_write_json(out / RESULT_FILE, result)
    return result
