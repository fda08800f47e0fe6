"""The prompt-tuning loop: per-batch gradients, dev-based selection, resumable checkpoints.

What trains is the config's PEFT type (``peft``): the soft prompt, or a PEFT prefix or LoRA adapter
(``dawgen.classifier.peft_types``). The same loop trains the backbone's weights too where ``Trainable``
says so: prompt-based fine-tuning (LM-BFF, with or without a soft prompt) and fine-tuning with a
classification head (``dawgen.baselines``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers.optimization import Adafactor

from dawgen.classifier.batching import split_by_length
from dawgen.classifier.combine import Combine, Step, plan_steps
from dawgen.classifier.config import OptimizerName, PeftKind, PromptTuneConfig
from dawgen.classifier.encoding import Encoded
from dawgen.classifier.peft_types import PeftAdapter
from dawgen.classifier.scorer import Scorer
from dawgen.config import settings_fingerprint
from dawgen.constants import CHECKPOINT_DIR, METRICS_FILE
from dawgen.evaluation.metrics import classification_metrics
from dawgen.models.distributed import Processes
from dawgen.models.soft_prompt import initial_prompt
from dawgen.surgery import Gradient, combine
from dawgen.utils.io import append_jsonl, atomic_dir, atomic_write_text, truncate_jsonl

StepCallback = Callable[[int, dict[str, Any]], None]
# What one more forward/backward pass costs on a CPU, in padded tokens: a batch is cut into sub-batches of
# similar length where that saves more padding (``split_by_length``; SmolLM2-135M at 1 thread takes about
# 5 ms per token and 30 ms per pass of Python overhead, so this is conservative)
SPLIT_OVERHEAD_TOKENS = 64
CURRENT, BEST, RNG_STATE = "current/", "best/", "rng_state"  # checkpoint keys of an adapter's tensors


@dataclass
class TrainState:
    """Everything needed to continue a run (with the trained tensors): the step reached, the best so far."""

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

    ``prompt`` trains the config's PEFT type (the soft prompt, prefixes or LoRA); ``prompt=False``
    leaves it out. ``backbone_learning_rate`` also trains every weight of the scorer's model, in place,
    at that learning rate (the prompt keeps the config's); only a soft prompt trains beside it.
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
    if config.resolved_optimizer is OptimizerName.ADAFACTOR:
        return Adafactor(
            params,
            lr=config.resolved_learning_rate,
            weight_decay=config.weight_decay,
            scale_parameter=False,
            relative_step=False,
            warmup_init=False,
        )
    return torch.optim.AdamW(params, lr=config.resolved_learning_rate, weight_decay=config.weight_decay)


class PromptTrainer:
    """Tunes one soft prompt, prefix or LoRA adapter (``config.peft``) on a frozen classifier (or, as
    ``trainable`` says, the classifier too).

    ``gradient`` returns the gradient of one batch with respect to the trained tensors without touching
    the optimizer, so training schemes that combine several batches per step (real + synthetic,
    gradient surgery) build on it; ``apply`` clips and takes the optimizer step. ``start_prompt``
    replaces the configured initialisation: a prompt's [n, d] vectors, or a prefix's [n, layers * 2 *
    kv width] key/values. A prefix or LoRA adapter is attached to the scorer's model until ``release``
    (or the end of a ``with`` block); when training ends it holds its best-on-dev values. A trained
    backbone is kept best-on-dev in memory (a CPU copy), loaded back when training ends, and never
    checkpointed: such a run restarts from scratch after a crash. Under a launcher of several processes,
    each takes its share of every batch and the gradients are summed (``dawgen.models.distributed``);
    only the main process writes the run folder.
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
        if trainable.backbone and trainable.prompt and config.peft is not PeftKind.PROMPT:
            raise ValueError(f"only a soft prompt trains beside the backbone, not peft {config.peft.value!r}")
        self.scorer = scorer
        self.config = config
        self.processes = Processes.of(scorer.device)
        self.trainable = trainable
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run_key = run_key  # what else a checkpoint must match to be resumed (e.g. the data)
        self.prompt: torch.nn.Parameter | None = None
        self.best_prompt: torch.Tensor | None = None
        self.best_backbone: dict[str, torch.Tensor] | None = None
        self.adapter: PeftAdapter | None = None  # a prefix or LoRA adapter on the scorer's model
        self.best_adapter: dict[str, torch.Tensor] = {}
        self.tuned: list[torch.nn.Parameter] = []  # the tensors gradients are taken for
        groups: list[dict[str, Any]] = []
        if trainable.prompt and config.peft is PeftKind.PROMPT:
            start = self._start_prompt() if start_prompt is None else start_prompt
            expected = (config.num_virtual_tokens, scorer.embedding_dim)
            if tuple(start.shape) != expected:
                raise ValueError(f"start prompt has shape {tuple(start.shape)}; this run needs {expected}")
            self.prompt = torch.nn.Parameter(start.detach().float().clone().to(scorer.device))
            self.best_prompt = self.prompt.detach().clone()
            self.tuned = [self.prompt]
        elif trainable.prompt:
            self.adapter = PeftAdapter.create(scorer, config)
            if start_prompt is not None:
                try:
                    self.adapter.start_from(start_prompt.to(scorer.device))
                except ValueError:
                    self.adapter.release()
                    raise
            self.best_adapter = self.adapter.state()
            self.tuned = [param for _, param in self.adapter.named_parameters()]
        if self.tuned:
            groups.append({"params": self.tuned})
        if trainable.backbone:
            scorer.model.requires_grad_(True)
            groups.append({"params": list(scorer.model.parameters()), "lr": trainable.backbone_learning_rate})
        self.parameters = [param for group in groups for param in group["params"]]
        self.optimizer = make_optimizer(groups, config)
        self.state = TrainState()
        # cut padded batches into sub-batches of similar length (their gradients summed): on a CPU, where a
        # pass costs per token, and not where the backbone trains (its dropout would draw other masks)
        self.split_batches = scorer.device.type == "cpu" and not trainable.backbone

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

    def release(self) -> None:
        """Detach a prefix or LoRA adapter from the scorer's model (a no-op for a soft prompt)."""
        if self.adapter is not None:
            self.adapter.release()

    def __enter__(self) -> PromptTrainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

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

    def _parts(self, batch: Sequence[Encoded]) -> list[list[Encoded]]:
        """This process's rows of the global ``batch``, as the sub-batches its passes take (none without rows)."""
        mine = self.processes.shard(batch)
        if not mine or not self.split_batches:
            return [mine] if mine else []
        lengths = [len(item.input_ids) + self.num_virtual_tokens for item in mine]
        return [[mine[i] for i in part] for part in split_by_length(lengths, SPLIT_OVERHEAD_TOKENS)]

    def _part_losses(self, batch: Sequence[Encoded]) -> Iterator[torch.Tensor]:
        """This process's share of the mean loss over the global ``batch``, one term per sub-batch: its
        mean weighted by its share of the batch (the whole mean alone). They sum to that share."""
        for part in self._parts(batch):
            loss = self.loss(part)
            yield loss if len(part) == len(batch) else loss * (len(part) / len(batch))

    def _backward(self, batch: Sequence[Encoded]) -> torch.Tensor | None:
        """Accumulate this process's share of the batch loss's gradient into ``.grad``; that share of the
        loss (None without rows)."""
        total = None
        for loss in self._part_losses(batch):
            loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        return total

    def gradient(self, items: Sequence[Encoded]) -> tuple[Gradient, float]:
        """The gradient of the batch loss, and the loss: one tensor for a soft prompt, a list (one per
        trained tensor, in ``tuned`` order) for a prefix or LoRA adapter. With several processes, those of
        the whole batch, summed over their shares, on every process."""
        if not self.tuned:
            raise ValueError("this trainer has no prompt or adapter to take a gradient for")
        grads: list[torch.Tensor | None] = [None] * len(self.tuned)
        total = None
        for loss in self._part_losses(items):
            part = torch.autograd.grad(loss, self.tuned, allow_unused=True)
            grads = [g if s is None else s if g is None else s + g for s, g in zip(grads, part, strict=True)]
            total = loss.detach() if total is None else total + loss.detach()
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.tuned, strict=True)]
        self.processes.sum_(grads)
        return (grads[0] if self.prompt is not None else grads), self.processes.total(total)

    def apply(self, grad: Gradient) -> None:
        """Clip ``grad`` (shaped as ``gradient`` returns it) and take one optimizer step with it."""
        grads = [grad] if isinstance(grad, torch.Tensor) else list(grad)
        for param, value in zip(self.tuned, grads, strict=True):
            param.grad = value
        self._optimizer_step()

    def _optimizer_step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.parameters, self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        max_norm = self.config.prompt_max_norm
        if self.prompt is not None and max_norm is not None:  # rescale the vectors longer than max_norm
            with torch.no_grad():
                norms = self.prompt.norm(dim=-1, keepdim=True)
                self.prompt.mul_((max_norm / norms.clamp(min=1e-12)).clamp(max=1.0))

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, items: Sequence[Encoded], prompt: torch.Tensor | None = None) -> dict[str, float]:
        if prompt is None and self.prompt is not None:
            prompt = self.prompt.detach()
        self.scorer.model.eval()
        batch_size = self.config.eval_batch_size
        logits = self.processes.predict(lambda part: self.scorer.predict_logits(part, prompt, batch_size), items)
        return classification_metrics(logits, [item.label for item in items], self.scorer.task)

    def _record_eval(self, dev: Sequence[Encoded], train_loss: float) -> dict[str, float]:
        metrics = {f"dev_{k}": v for k, v in self.evaluate(dev).items()}
        score = (metrics["dev_accuracy"], -metrics["dev_loss"])
        if score > tuple(self.state.best_score):
            self.state.best_score, self.state.best_step = score, self.state.step
            self.state.best_dev = metrics
            if self.prompt is not None:
                self.best_prompt = self.prompt.detach().clone()
            if self.adapter is not None:
                self.best_adapter = self.adapter.state()
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
            loss = self._backward(batch)
            self.processes.sum_gradients(self.parameters)
            self._optimizer_step()
            return {"source": source.value, "train_loss": self.processes.total(loss)}
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
        ``eval_every`` steps and return the best prompt (None without one). A prefix or LoRA adapter
        and a trained backbone end with their best values."""
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
            if self.adapter is not None:
                self.adapter.set_training(True)
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
        if self.adapter is not None:
            self.adapter.load_state(self.best_adapter)
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
        if self.run_dir is not None and self.processes.is_main:
            append_jsonl(self.run_dir / METRICS_FILE, record)

    def _tensors(self) -> dict[str, torch.Tensor]:
        """The trained tensors and the best ones, as the checkpoint stores them (CPU, contiguous)."""
        if self.prompt is not None and self.best_prompt is not None:
            return {"prompt": self.prompt.detach().cpu(), "best_prompt": self.best_prompt.cpu()}
        assert self.adapter is not None
        tensors = {f"{CURRENT}{name}": param.detach() for name, param in self.adapter.named_parameters()}
        tensors.update({f"{BEST}{name}": value for name, value in self.best_adapter.items()})
        tensors[RNG_STATE] = torch.get_rng_state()  # LoRA dropout draws from it
        return {name: value.cpu().contiguous() for name, value in tensors.items()}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        device = self.scorer.device
        if self.prompt is not None:
            with torch.no_grad():
                self.prompt.copy_(tensors["prompt"])
            self.best_prompt = tensors["best_prompt"].to(device)
            return
        assert self.adapter is not None
        names = [name for name, _ in self.adapter.named_parameters()]
        self.adapter.load_state({name: tensors[f"{CURRENT}{name}"] for name in names})
        self.best_adapter = {name: tensors[f"{BEST}{name}"].to(device) for name in names}
        torch.set_rng_state(tensors[RNG_STATE])

    def _checkpoint(self) -> None:
        if self.run_dir is None or not self.tuned or self.trainable.backbone or not self.processes.is_main:
            return
        with atomic_dir(self.run_dir / CHECKPOINT_DIR) as tmp:
            save_file(self._tensors(), tmp / "prompt.safetensors")
            torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
            state = {**vars(self.state), "fingerprint": self._fingerprint()}
            atomic_write_text(tmp / "state.json", json.dumps(state, indent=1))

    def _resume(self) -> None:
        """Continue from the run folder's checkpoint, if any (every process reads it; the main one trims the log)."""
        if self.run_dir is None:
            return
        folder, step = self.run_dir / CHECKPOINT_DIR, 0
        if self.tuned and not self.trainable.backbone and (folder / "state.json").exists():
            saved = json.loads((folder / "state.json").read_text())
            if saved.pop("fingerprint") != self._fingerprint():
                raise ValueError(f"{folder} holds a checkpoint of a run with other settings; use another output folder")
            self._restore(load_file(folder / "prompt.safetensors"))
            self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
            saved["best_score"] = tuple(saved["best_score"])
            self.state = TrainState(**saved)
            step = self.state.step
        if self.processes.is_main:  # a fresh run drops an old log; steps after the checkpoint will run again
            truncate_jsonl(self.run_dir / METRICS_FILE, step)

    def discard_checkpoint(self) -> None:
        if self.run_dir is not None and self.processes.is_main:
            shutil.rmtree(self.run_dir / CHECKPOINT_DIR, ignore_errors=True)
