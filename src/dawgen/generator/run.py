"""Generator tuning as one call: few-shot data in, a tuned generator folder, metrics and a plot out."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dawgen.config import to_dict
from dawgen.constants import GENERATOR_DIR, METRICS_FILE, RESULT_FILE, TRAINING_PLOT
from dawgen.data.example import Example
from dawgen.data.fingerprint import inputs_fingerprint
from dawgen.generator.artifacts import TunedGenerator, load_generator, save_generator
from dawgen.generator.config import GeneratorConfig
from dawgen.generator.diagnostics import plot_generator_training
from dawgen.generator.sequences import steps_per_epoch
from dawgen.generator.train import GeneratorTrainer
from dawgen.models.loading import LoadedModel
from dawgen.models.precision import describe_precision, precision_record
from dawgen.progress import progress_bar
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_write_json


@dataclass
class GeneratorOutcome:
    """A finished generator-tuning run: its JSON result and the kept generator."""

    result: dict[str, Any]
    generator: TunedGenerator


def tune_generator(
    loaded: LoadedModel,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    *,
    config: GeneratorConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
    owns_model: bool = False,
) -> GeneratorOutcome:
    """Tune label prompts of ``loaded`` on ``train``, keep those with the best LM loss on ``dev``.

    With ``out_dir`` the run writes ``generator/`` (see ``artifacts``), ``metrics.jsonl``,
    ``training.png`` and ``result.json``, checkpoints as it goes, resumes after a crash, and returns
    the saved result when it has finished before with the same settings and data. Under a launcher of
    several processes (variant ``plain``) they share every batch and the main one writes the folder.
    ``owns_model``: ``loaded`` was loaded for this run alone (see ``GeneratorTrainer``).
    """
    config = config or GeneratorConfig()
    inputs = inputs_fingerprint(loaded.name, task, train, dev)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / RESULT_FILE).exists():
        saved = json.loads((out / RESULT_FILE).read_text())
        if saved.get("config") == to_dict(config) and saved.get("inputs") == inputs:
            return GeneratorOutcome(saved, load_generator(out / GENERATOR_DIR))
        raise ValueError(f"{out} already holds a finished run with other settings; choose another output folder")

    trainer = GeneratorTrainer(loaded, task, config, out, run_key=inputs, owns_model=owns_model)
    total = config.epochs * steps_per_epoch(trainer.builder.encode_all(train), config.per_label_batch, task.num_labels)
    started = time.perf_counter()
    with progress_bar(show_progress and trainer.processes.is_main) as bar:
        bar_task = bar.add_task(f"tune generator ({config.variant.value}) {task.name}", total=total, status="")

        def on_step(step: int, record: dict[str, Any]) -> None:
            status = f"lm {record['lm']:.3f}" if "lm" in record else f"dev loss {record['dev_loss']:.3f}"
            bar.update(bar_task, completed=step, status=status)

        generator = trainer.train(train, dev, on_step)
    result = {
        "method": f"generator-{config.variant.value}",
        "task": task.name,
        "model": loaded.name,
        "precision": describe_precision(trainer.device, trainer.objective.autocast_dtype),
        "compute": precision_record(trainer.device, trainer.objective.autocast_dtype),
        "variant": config.variant.value,
        "trainable_parameters": generator.prompts.numel(),
        "weight_net_parameters": 0 if generator.weight_net is None else sum(
            p.numel() for p in generator.weight_net.parameters()
        ),
        "config": to_dict(config),
        "inputs": inputs,
        "steps": total,
        "best_epoch": trainer.state.best_epoch,
        "best_step": trainer.state.best_step,
        "dev": trainer.state.best_dev,
        "history": trainer.state.history,
        "weight_entropy_ratio": trainer.weight_entropy_summary(),  # token weights, 1 = uniform; None for plain
        "train_seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    if out is not None and trainer.processes.is_main:
        save_generator(generator, out / GENERATOR_DIR)
        title = f"{task.name}: generator {config.variant.value} ({loaded.name})"
        plot_generator_training(out / METRICS_FILE, out / TRAINING_PLOT, title)
        atomic_write_json(out / RESULT_FILE, result)
        trainer.discard_checkpoint()
    trainer.processes.wait()  # the folder is complete when any process returns
    return GeneratorOutcome(result, generator)
