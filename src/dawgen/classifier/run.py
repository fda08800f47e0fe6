"""Prompt tuning as one call: data in, tuned PEFT adapter and metrics out (the paper's PT baseline)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dawgen.classifier.adapter import load_tuned, save_prompt
from dawgen.classifier.combine import Combine, plan_steps
from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.scorer import Scorer, VerbalizerScorer, predict_with_progress
from dawgen.classifier.train import PROMPT_ONLY, PromptTrainer, Trainable
from dawgen.config import to_dict
from dawgen.constants import ADAPTER_DIR, METRICS_FILE, RESULT_FILE, TRAINING_PLOT
from dawgen.data.example import Example
from dawgen.data.fingerprint import inputs_fingerprint
from dawgen.data.synthetic import SyntheticSet
from dawgen.evaluation.metrics import classification_metrics
from dawgen.evaluation.plots import plot_training
from dawgen.models.loading import LoadedModel
from dawgen.models.precision import describe_precision, precision_record, store_frozen_linears
from dawgen.progress import progress_bar
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_write_json


@dataclass
class TuneOutcome:
    """A finished run: its JSON result and the best prompt ([n, d], float32), or the best prefix's key/values
    as PEFT saves them ([n, layers * 2 * kv width]); None when it trained neither (LoRA, a backbone)."""

    result: dict[str, Any]
    prompt: torch.Tensor | None


def prompt_tune(
    loaded: LoadedModel,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    *,
    synthetic: SyntheticSet | None = None,
    test: Sequence[Example] = (),
    config: PromptTuneConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
    start_prompt: torch.Tensor | None = None,
    method: str | None = None,
    details: dict[str, Any] | None = None,
    owns_model: bool = False,
) -> TuneOutcome:
    """Tune a soft prompt, prefix or LoRA adapter (``config.peft``) on ``train`` (and ``synthetic``,
    combined as ``config.combine`` says), keep the best on ``dev``, report ``test``.

    With ``out_dir``, the run writes ``adapter/`` (PEFT), ``metrics.jsonl`` and ``result.json``,
    checkpoints as it goes, resumes after a crash, and returns the saved result when finished. Under a
    launcher of several processes (``torchrun``, ``accelerate launch``) they train data-parallel, each on
    its own device, and the main one writes the folder (``dawgen.models.distributed``).
    ``start_prompt`` replaces the configured initialisation (e.g. another task's prompt or prefix);
    ``method`` names the run in its result and ``details`` adds entries to it. ``owns_model``: ``loaded``
    was loaded for this run alone (see ``train_classifier``).
    """
    config = config or PromptTuneConfig()
    scorer = VerbalizerScorer(
        loaded, task, max_length=config.max_length, precision=config.precision, device=config.device
    )
    return train_classifier(
        scorer, train, dev, synthetic=synthetic, test=test, config=config, out_dir=out_dir,
        show_progress=show_progress, start_prompt=start_prompt, method=method, details=details,
        owns_model=owns_model,
    )  # fmt: skip


def _prompt_digest(prompt: torch.Tensor) -> str:
    return hashlib.sha256(prompt.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def train_classifier(
    scorer: Scorer,
    train: Sequence[Example],
    dev: Sequence[Example],
    *,
    config: PromptTuneConfig,
    synthetic: SyntheticSet | None = None,
    test: Sequence[Example] = (),
    out_dir: str | Path | None = None,
    show_progress: bool = True,
    trainable: Trainable = PROMPT_ONLY,
    start_prompt: torch.Tensor | None = None,
    method: str | None = None,
    settings: dict[str, Any] | None = None,
    details: dict[str, Any] | None = None,
    make_trainer: Callable[..., PromptTrainer] = PromptTrainer,
    owns_model: bool = False,
) -> TuneOutcome:
    """``prompt_tune`` for any scorer and set of trainable weights (see ``Trainable``): the one run
    behind prompt tuning and the baselines that train the backbone.

    ``settings`` is what the result reports as ``config`` and a finished run must match (default:
    ``config``). The PEFT adapter is written only for an adapter tuned on a frozen backbone.
    ``make_trainer`` builds the trainer, called as ``PromptTrainer`` is (a subclass with its own step:
    ``dawgen.baselines.optima``). ``owns_model``: the scorer's model was loaded for this run alone, so,
    where the backbone stays frozen, its frozen linear layers are stored in the autocast dtype once the
    adapter is attached (``store_frozen_linears``: the same numbers, less memory and no cast per forward);
    the model then serves only forwards under that autocast.
    """
    syn_examples = synthetic.examples if synthetic is not None else []
    config = config.resolved(has_synthetic=bool(syn_examples))
    settings = to_dict(config) if settings is None else settings
    default_method = "prompt-tuning" if config.combine is Combine.REAL else f"prompt-tuning+{config.combine.value}"
    identity = {"method": method, "trainable": None if trainable == PROMPT_ONLY else vars(trainable)}
    identity["start_prompt"] = None if start_prompt is None else _prompt_digest(start_prompt)
    extra = json.dumps(identity, sort_keys=True) if any(identity.values()) else ""
    task = scorer.task
    inputs = inputs_fingerprint(scorer.model_name, task, train, dev, syn_examples, extra=extra)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / RESULT_FILE).exists():
        saved = json.loads((out / RESULT_FILE).read_text())
        if saved.get("config") == settings and saved.get("inputs") == inputs:
            adapter = out / ADAPTER_DIR
            return TuneOutcome(saved, load_tuned(adapter) if adapter.exists() else None)
        raise ValueError(f"{out} already holds a finished run with other settings; choose another output folder")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    train_items, dev_items = scorer.encoder.encode_all(train), scorer.encoder.encode_all(dev)
    plan = plan_steps(
        config.combine, train_items, scorer.encoder.encode_all(syn_examples), batch_size=config.batch_size,
        syn_batch_size=config.syn_batch_size, seed=config.seed, num_labels=task.num_labels,
        balance_synthetic=config.balance_synthetic,
    )  # fmt: skip
    trainer = make_trainer(scorer, config, out, run_key=inputs, trainable=trainable, start_prompt=start_prompt)
    if owns_model and not trainable.backbone:
        store_frozen_linears(scorer.model, scorer.autocast_dtype)
    processes = trainer.processes
    method = method or default_method
    started = time.perf_counter()
    # a prefix or LoRA adapter is attached until the end; one process shows the progress
    with trainer, progress_bar(show_progress and processes.is_main) as bar:
        bar_task = bar.add_task(f"{method} {task.name}", total=config.max_steps, status="")
        bar.update(bar_task, completed=trainer.state.step)

        def on_step(step: int, record: dict[str, float]) -> None:
            status = f"loss {record['train_loss']:.3f}"
            if trainer.conflict_rate is not None:
                status += f" conflicts {trainer.conflict_rate:.0%}"
            if "dev_accuracy" in record:
                status += f" dev {record['dev_accuracy']:.1f}"
            bar.update(bar_task, completed=step, status=status)

        best = trainer.train(plan, dev_items, on_step)
        train_seconds = time.perf_counter() - started
        test_metrics = {}
        if test:
            test_items = scorer.encoder.encode_all(test)
            batch_size = config.eval_batch_size
            predict = lambda part: predict_with_progress(scorer, part, best, bar, batch_size, "test")  # noqa: E731
            logits = processes.predict(predict, test_items)
            test_metrics = classification_metrics(logits, [item.label for item in test_items], task)
        tuned = best if trainer.adapter is None else trainer.adapter.saved_tensor()
        if out is not None and trainer.adapter is not None and processes.is_main:
            trainer.adapter.save(out / ADAPTER_DIR, scorer.model_name)

    result = {
        "method": method,
        "task": task.name,
        "model": scorer.model_name,
        "family": scorer.family.value,
        "precision": describe_precision(scorer.device, scorer.autocast_dtype),
        "compute": precision_record(scorer.device, scorer.autocast_dtype),
        "trainable_parameters": trainer.num_trainable,
        "peft": config.peft.value if trainable.prompt else None,
        "combine": config.combine.value,
        "surgery": config.surgery,
        "synthetic": None
        if synthetic is None
        else {
            "size": len(syn_examples),
            "per_label": synthetic.per_label,
            "dropped_copies": synthetic.dropped_copies,
        },
        "conflict_rate": trainer.conflict_rate,
        **(details or {}),
        "config": settings,
        "inputs": inputs,
        "best_step": trainer.state.best_step,
        "dev": trainer.state.best_dev,
        "test": test_metrics,
        "train_seconds": round(train_seconds, 1),
    }
    if out is not None and processes.is_main:
        if best is not None and not trainable.backbone:
            save_prompt(best, scorer.family, scorer.model_name, out / ADAPTER_DIR)
        title = f"{task.name}: {result['method']} ({Path(scorer.model_name).name})"
        plot_training(out / METRICS_FILE, out / TRAINING_PLOT, title)
        atomic_write_json(out / RESULT_FILE, result)
        trainer.discard_checkpoint()
    processes.wait()  # the folder is complete when any process returns
    return TuneOutcome(result, tuned)
