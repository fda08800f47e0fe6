"""The prompt-tuning loop: per-batch prompt gradients, dev-based selection, resumable checkpoints.

The same loop trains the backbone's weights too where ``Trainable`` says so: prompt-based fine-tuning
(LM-BFF, with or without a soft prompt) and fine-tuning with a classification head (``dawgen.baselines``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers.optimization import Adafactor

from dawgen.classifier.combine import Combine, Step, plan_steps
from dawgen.classifier.config import OptimizerName, PromptTuneConfig
from dawgen.classifier.encoding import Encoded
from dawgen.classifier.scorer import Scorer
from dawgen.config import settings_fingerprint
from dawgen.constants import CHECKPOINT_DIR, METRICS_FILE
from dawgen.evaluation.metrics import classification_metrics
from dawgen.models.soft_prompt import initial_prompt
from dawgen.surgery import combine
from dawgen.utils.io import append_jsonl, atomic_dir, atomic_write_text, truncate_jsonl

StepCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainState:
    """Everything needed to continue a run: the step reached and the best prompt so far."""

    step: int = 0
    best_step: int = 0
    best_score: tuple[float, float] = (-1.0, 0.0)  # (dev accuracy, -dev loss), compared as a tuple
    best_dev: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # the evaluations
    paired_steps: int = 0
    conflicts: int = 0


@dataclass(frozen=True)
class Trainable:
    """What a ``PromptTrainer`` updates. The default is prompt tuning (backbone frozen).

    ``backbone_learning_rate`` also trains every weight of the scorer's model, in place, at that
    learning rate (the prompt keeps the config's); ``prompt=False`` leaves the soft prompt out.
    """

    prompt: bool = True
    backbone_learning_rate: float | None = None  # None: the backbone stays frozen

    def __post_init__(self) -> None:
        if not self.prompt and self.backbone_learning_rate is None:
            raise ValueError("nothing to train: neither the prompt nor the backbone")
        if self.backbone_learning_rate is not None and self.backbone_learning_rate <= 0:
            raise ValueError(f"backbone_learning_rate must be positive, got {self.backbone_learning_rate}")

    @property
    def backbone(self) -> bool:
        return self.backbone_learning_rate is not None


PROMPT_ONLY = Trainable()  # prompt tuning: the soft prompt trains, the backbone stays frozen


def make_optimizer(params: Iterable[Any], config: PromptTuneConfig) -> torch.optim.Optimizer:
    """The configured optimizer over ``params`` (tensors, or parameter groups with their own ``lr``)."""
    if config.optimizer is OptimizerName.ADAFACTOR:
        return Adafactor(
            params,
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
            scale_parameter=False,
            relative_step=False,
            warmup_init=False,
        )
    return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


class PromptTrainer:
    """Tunes one soft prompt on a frozen classifier (or, as ``trainable`` says, the classifier too).

    ``gradient`` returns the prompt gradient of one batch without touching the optimizer, so
    training schemes that combine several batches per step (real + synthetic, gradient surgery)
    build on it; ``apply`` clips and takes the optimizer step. ``start_prompt`` ([n, d]) replaces the
    configured initialisation. A trained backbone is kept best-on-dev in memory (a CPU copy), loaded
    back when training ends, and never checkpointed: such a run restarts from scratch after a crash.
    """

    def __init__(
        self,
        scorer: Scorer,
        config: PromptTuneConfig,
        run_dir: str | Path | None = None,
        run_key: str = "",
        *,
        trainable: Trainable = PROMPT_ONLY,
        start_prompt: torch.Tensor | None = None,
    ) -> None:
        if trainable.backbone and config.combine is Combine.PAIRED:
            raise ValueError("paired steps combine prompt gradients only; train the backbone with another strategy")
        self.scorer = scorer
        self.config = config
        self.trainable = trainable
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run_key = run_key  # what else a checkpoint must match to be resumed (e.g. the data)
        self.prompt: torch.nn.Parameter | None = None
        self.best_prompt: torch.Tensor | None = None
        self.best_backbone: dict[str, torch.Tensor] | None = None
        groups: list[dict[str, Any]] = []
        if trainable.prompt:
            start = self._start_prompt() if start_prompt is None else start_prompt
            expected = (config.num_virtual_tokens, scorer.embedding_dim)
            if tuple(start.shape) != expected:
                raise ValueError(f"start prompt has shape {tuple(start.shape)}; this run needs {expected}")
            self.prompt = torch.nn.Parameter(start.detach().float().clone().to(scorer.device))
            self.best_prompt = self.prompt.detach().clone()
            groups.append({"params": [self.prompt]})
        if trainable.backbone:
            scorer.model.requires_grad_(True)
            groups.append({"params": list(scorer.model.parameters()), "lr": trainable.backbone_learning_rate})
        self.parameters = [param for group in groups for param in group["params"]]
        self.optimizer = make_optimizer(groups, config)
        self.state = TrainState()

    def _start_prompt(self) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed)
        return initial_prompt(
            self.scorer.model,
            self.scorer.encoder.tokenizer,
            self.config.num_virtual_tokens,
            self.config.prompt_init,
            generator,
            self.config.prompt_init_text,
        )

    @property
    def num_virtual_tokens(self) -> int:
        return 0 if self.prompt is None else self.config.num_virtual_tokens

    @property
    def num_trainable(self) -> int:
        """How many numbers the optimizer updates (prompt and, if trained, backbone)."""
        return sum(param.numel() for param in self.parameters)

    # -- one step -----------------------------------------------------------------------------
    def loss(self, items: Sequence[Encoded]) -> torch.Tensor:
        batch = self.scorer.collate(items, self.num_virtual_tokens)
        logits = self.scorer.label_logits(batch, self.prompt)
        return torch.nn.functional.cross_entropy(logits, batch.labels, label_smoothing=self.config.label_smoothing)

    def gradient(self, items: Sequence[Encoded]) -> tuple[torch.Tensor, float]:
        """The gradient of the batch loss with respect to the prompt, and the loss."""
        if self.prompt is None:
            raise ValueError("this trainer has no soft prompt to take a gradient for")
        loss = self.loss(items)
        (grad,) = torch.autograd.grad(loss, self.prompt)
        return grad, loss.item()

    def apply(self, grad: torch.Tensor) -> None:
        """Clip ``grad`` and take one optimizer step with it."""
        assert self.prompt is not None
        self.prompt.grad = grad
        self._optimizer_step()

    def _optimizer_step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, items: Sequence[Encoded], prompt: torch.Tensor | None = None) -> dict[str, float]:
        if prompt is None and self.prompt is not None:
            prompt = self.prompt.detach()
        self.scorer.model.eval()
        logits = self.scorer.predict_logits(items, prompt, self.config.eval_batch_size)
        return classification_metrics(logits, [item.label for item in items], self.scorer.task)

    def _record_eval(self, dev: Sequence[Encoded], train_loss: float) -> dict[str, float]:
        metrics = {f"dev_{k}": v for k, v in self.evaluate(dev).items()}
        score = (metrics["dev_accuracy"], -metrics["dev_loss"])
        if score > tuple(self.state.best_score):
            self.state.best_score, self.state.best_step = score, self.state.step
            self.state.best_dev = metrics
            if self.prompt is not None:
                self.best_prompt = self.prompt.detach().clone()
            if self.trainable.backbone:
                state = self.scorer.model.state_dict()
                self.best_backbone = {name: value.detach().to("cpu", copy=True) for name, value in state.items()}
        return {"kind": "eval", "step": self.state.step, "train_loss": train_loss, **metrics}

    # -- the loop -----------------------------------------------------------------------------
    def take_step(self, step: Step) -> dict[str, Any]:
        """One optimizer step as the plan says; returns the step's diagnostics.

        A ``paired`` step takes one gradient per source (two forward/backward passes, nothing
        more) and combines them, projecting the synthetic one on conflict if surgery is on.
        """
        if len(step.batches) == 1:
            ((source, batch),) = step.batches
            loss = self.loss(batch)
            loss.backward()
            self._optimizer_step()
            return {"source": source.value, "train_loss": loss.item()}
        (_, real), (_, synthetic) = step.batches
        d_real, real_loss = self.gradient(real)
        d_syn, syn_loss = self.gradient(synthetic)
        result = combine(d_real, d_syn, self.config.eps, bool(self.config.surgery))
        self.apply(result.direction)
        self.state.paired_steps += 1
        self.state.conflicts += int(result.conflict)
        return {
            "source": "paired", "train_loss": real_loss, "real_loss": real_loss, "syn_loss": syn_loss,
            "conflict": result.conflict, "cosine": result.cosine,
        }  # fmt: skip

    def train(
        self,
        plan: Iterable[Step] | Sequence[Encoded],
        dev: Sequence[Encoded],
        on_step: StepCallback | None = None,
    ) -> torch.Tensor | None:
        """Follow ``plan`` (or, given encoded examples, batches of them) for ``max_steps``,
        resuming from the run folder's checkpoint if there is one; evaluate on ``dev`` every
        ``eval_every`` steps and return the best prompt (None without one). A trained backbone
        ends with its best weights."""
        if isinstance(plan, Sequence):
            plan = plan_steps(
                Combine.REAL, plan, batch_size=self.config.batch_size, syn_batch_size=self.config.syn_batch_size,
                seed=self.config.seed, num_labels=self.scorer.task.num_labels,
            )  # fmt: skip
        self._resume()
        steps = islice(plan, self.state.step, None)  # the plan is deterministic: skip what is done
        running, count = 0.0, 0
        while self.state.step < self.config.max_steps:
            self.scorer.model.train(self.trainable.backbone)  # dropout only where the weights train
            record = self.take_step(next(steps))
            self.state.step += 1
            running, count = running + record["train_loss"], count + 1
            record = {"kind": "step", "step": self.state.step, **record}
            self._log(record)
            if self.state.step % self.config.eval_every == 0 or self.state.step == self.config.max_steps:
                record = self._record_eval(dev, running / count)
                running, count = 0.0, 0
                self.state.history.append(record)
                self._log(record)
                self._checkpoint()
            if on_step is not None:
                on_step(self.state.step, record)
        self.scorer.model.eval()
        if self.best_backbone is not None:
            self.scorer.model.load_state_dict(self.best_backbone)
        return self.best_prompt

    @property
    def conflict_rate(self) -> float | None:
        """Share of paired steps whose gradients conflicted (None when no step was paired)."""
        return self.state.conflicts / self.state.paired_steps if self.state.paired_steps else None

    # -- run folder ---------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        return settings_fingerprint(self.config, self.run_key)

    def _log(self, record: dict[str, float]) -> None:
        if self.run_dir is not None:
            append_jsonl(self.run_dir / METRICS_FILE, record)

    def _checkpoint(self) -> None:
        if self.run_dir is None or self.prompt is None or self.best_prompt is None or self.trainable.backbone:
            return
        with atomic_dir(self.run_dir / CHECKPOINT_DIR) as tmp:
            save_file(
                {"prompt": self.prompt.detach().cpu(), "best_prompt": self.best_prompt.cpu()},
                tmp / "prompt.safetensors",
            )
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            state = {**vars(self.state), "fingerprint": self._fingerprint()}
            atomic_write_text(tmp / "state.json", json.dumps(state, indent=1))

    def _resume(self) -> None:
        if self.run_dir is None:
            return
        folder = self.run_dir / CHECKPOINT_DIR
        if self.prompt is None or self.trainable.backbone or not (folder / "state.json").exists():
            truncate_jsonl(self.run_dir / METRICS_FILE, 0)  # a run started afresh: drop an old log
            return
        saved = json.loads((folder / "state.json").read_text())
        if saved.pop("fingerprint") != self._fingerprint():
            raise ValueError(f"{folder} holds a checkpoint of a run with other settings; use another output folder")
        tensors = load_file(folder / "prompt.safetensors")
        assert self.prompt is not None
        with torch.no_grad():
            self.prompt.copy_(tensors["prompt"])
        self.best_prompt = tensors["best_prompt"].to(self.prompt.device)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        saved["best_score"] = tuple(saved["best_score"])
        self.state = TrainState(**saved)
        # metrics written after the checkpoint belong to steps that will be run again
        truncate_jsonl(self.run_dir / METRICS_FILE, self.state.step)

    def discard_checkpoint(self) -> None:
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir / CHECKPOINT_DIR, ignore_errors=True)
