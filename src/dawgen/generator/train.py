"""The generator-tuning loop: label-balanced epochs, dev evaluation per epoch, best-by-dev,
resumable checkpoints (same result as an uninterrupted run)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dawgen.config import settings_fingerprint
from dawgen.constants import CHECKPOINT_DIR, METRICS_FILE
from dawgen.data.example import Example
from dawgen.generator.artifacts import TunedGenerator
from dawgen.generator.bilevel import GeneratorObjective, check_data_parallel, generator_step
from dawgen.generator.config import GeneratorConfig, Hypergradient, PromptDepth
from dawgen.generator.diagnostics import dev_metrics, weight_stats
from dawgen.generator.prompts import LabelPrompts, label_texts
from dawgen.generator.sequences import GenSequence, SequenceBuilder, balanced_epoch, collate, steps_per_epoch
from dawgen.generator.weight_net import make_weight_net
from dawgen.models.distributed import Processes
from dawgen.models.loading import LoadedModel
from dawgen.models.precision import resolve_precision, store_frozen_linears
from dawgen.models.processes import process_device
from dawgen.tasks.schema import Family, TaskSpec
from dawgen.utils.io import append_jsonl, atomic_dir, atomic_write_text, truncate_jsonl

StepCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class TrainState:
    """Everything needed to continue a run besides tensors: the step reached and the best epoch so far."""

    step: int = 0
    best_step: int = 0
    best_epoch: int = 0
    best_dev: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # the dev evaluations
    epoch_lm: list[float] = field(default_factory=list)  # the LM losses of the epoch's steps so far
    epoch_weight_entropy: list[float] = field(default_factory=list)  # the epoch's weight_entropy_ratio so far
    weight_entropy_sum: float = 0.0  # weight_entropy_ratio summed over every step so far


class GeneratorTrainer:
    """Tunes label prompts (and the weight net) of a frozen causal LM on few-shot data."""

    def __init__(
        self,
        loaded: LoadedModel,
        task: TaskSpec,
        config: GeneratorConfig,
        run_dir: str | Path | None = None,
        run_key: str = "",
        owns_model: bool = False,
    ) -> None:
        """``owns_model``: the model was loaded for this trainer alone, so its frozen linear layers may be
        stored in the autocast dtype (``store_frozen_linears``: less memory, the same numbers); it is then
        fit for autocast use only."""
        if loaded.family is not Family.DECODER:
            raise ValueError(f"the generator must be a causal LM; {loaded.name} is a {loaded.family.value} model")
        self.loaded, self.task, self.config = loaded, task, config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run_key = run_key  # what else a checkpoint must match to be resumed (e.g. the data)
        self.device = process_device(config.device)  # under a launcher: the device it gave this process
        self.processes = Processes.of(self.device)
        check_data_parallel(config, self.processes, config.per_label_batch * task.num_labels)
        self.model = loaded.model.to(self.device).eval()
        self.tokenizer = loaded.tokenizer
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        deep = config.prompt_depth is PromptDepth.DEEP
        self.builder = SequenceBuilder(
            task, self.tokenizer, config.first_sentence_tokens, config.max_length, start_token=deep
        )
        self.prompts = LabelPrompts.from_texts(
            self.model, self.tokenizer, label_texts(task), config.num_prompt_tokens, config.prompt_depth,
            self.builder.connector,
        )  # fmt: skip
        self.prompts.to(self.device)
        self.objective = GeneratorObjective(
            self.model, config, task.num_labels, resolve_precision(config.precision, self.device), self.prompts.layout,
            eos_id=self.tokenizer.eos_token_id,
        )  # fmt: skip
        if owns_model and config.hypergradient is Hypergradient.EXACT:  # finite-difference's pair runs in fp32
            store_frozen_linears(self.model, self.objective.autocast_dtype)
        head = self.model.get_output_embeddings()
        net = make_weight_net(config, getattr(head, "in_features", loaded.embedding_dim))
        self.weight_net = None if net is None else net.to(self.device)
        self.prompt_optimizer = torch.optim.AdamW(
            self.prompts.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.weight_optimizer = None
        if self.weight_net is not None:
            self.weight_optimizer = torch.optim.Adam(
                self.weight_net.parameters(), lr=config.weight_net_lr, weight_decay=config.weight_net_weight_decay
            )
        self.best_prompts = self.prompts.weight.detach().clone()
        self.best_weight_net = self._weight_net_state()
        self.state = TrainState()

    def _weight_net_state(self) -> dict[str, torch.Tensor]:
        net = self.weight_net
        return {} if net is None else {k: v.detach().clone() for k, v in net.state_dict().items()}

    # -- steps and evaluation -----------------------------------------------------------------
    def take_step(self, sequences: Sequence[GenSequence]) -> dict[str, Any]:
        """One training step on a batch; returns its diagnostics."""
        mine = self.processes.shard(sequences)  # all of them, alone
        batch = collate(mine, self.objective.prompt_slots, self.pad_id).to(self.device)
        started = time.perf_counter()
        parts, extra = generator_step(
            self.objective, self.prompts.weight, self.weight_net, self.prompt_optimizer, self.weight_optimizer, batch,
            self.processes,
        )  # fmt: skip
        record: dict[str, Any] = {"lm": parts.lm.item(), "dist": None if parts.dist is None else parts.dist.item()}
        if parts.label_disc is not None:
            record["label_disc"] = parts.label_disc.item()
        record.update(extra)
        if parts.weights is not None:
            record.update(weight_stats(parts.weights, batch, self.tokenizer, self.config.top_tokens))
        record["seconds"] = round(time.perf_counter() - started, 4)
        return record

    def evaluate(self, sequences: Sequence[GenSequence], prompts: torch.Tensor | None = None) -> dict[str, float]:
        """Dev LM loss and label discrimination of ``prompts`` (default: the current ones)."""
        prompts = self.prompts.weight.detach() if prompts is None else prompts.to(self.device)
        return dev_metrics(self.objective, prompts, sequences, self.pad_id, self.config.eval_batch_size)

    def _record_eval(
        self, dev: Sequence[GenSequence], epoch: int, train_lm: float | None, train_entropy: float | None = None
    ) -> dict[str, Any]:
        metrics = self.evaluate(dev)
        if not self.state.history or metrics["dev_loss"] < self.state.best_dev["dev_loss"]:
            self.state.best_step, self.state.best_epoch, self.state.best_dev = self.state.step, epoch, metrics
            self.best_prompts = self.prompts.weight.detach().clone()
            self.best_weight_net = self._weight_net_state()
        record = {"kind": "eval", "step": self.state.step, "epoch": epoch, "train_lm": train_lm, **metrics}
        record["train_weight_entropy_ratio"] = train_entropy  # the epoch's mean; None for plain and epoch 0
        self.state.history.append(record)
        self._log(record)
        return record

    # -- the loop -----------------------------------------------------------------------------
    def train(
        self, train: Sequence[Example], dev: Sequence[Example], on_step: StepCallback | None = None
    ) -> TunedGenerator:
        """Run ``config.epochs`` label-balanced epochs over ``train`` (resuming from the run folder's
        checkpoint if there is one), evaluate on ``dev`` before training and after every epoch, and
        return the generator with the best dev LM loss."""
        if not dev:
            raise ValueError("generator tuning keeps the prompts with the best dev loss: it needs a dev split")
        train_seqs, dev_seqs = self.builder.encode_all(train), self.builder.encode_all(dev)
        per_label, num_labels = self.config.per_label_batch, self.task.num_labels
        epoch_steps = steps_per_epoch(train_seqs, per_label, num_labels)
        total = self.config.epochs * epoch_steps
        self._resume()
        if not self.state.history:
            self._record_eval(dev_seqs, 0, None)
        while self.state.step < total:
            epoch, index = divmod(self.state.step, epoch_steps)
            indices = balanced_epoch(train_seqs, per_label, num_labels, self.config.seed, epoch)[index]
            record = self.take_step([train_seqs[i] for i in indices])
            self.state.step += 1
            self.state.epoch_lm.append(record["lm"])
            if "weight_entropy_ratio" in record:
                self.state.epoch_weight_entropy.append(record["weight_entropy_ratio"])
                self.state.weight_entropy_sum += record["weight_entropy_ratio"]
            record = {"kind": "step", "step": self.state.step, "epoch": epoch + 1, **record}
            self._log(record)
            if self.state.step % epoch_steps == 0:
                train_lm = sum(self.state.epoch_lm) / len(self.state.epoch_lm)
                entropies = self.state.epoch_weight_entropy
                train_entropy = sum(entropies) / len(entropies) if entropies else None
                self.state.epoch_lm, self.state.epoch_weight_entropy = [], []
                record = self._record_eval(dev_seqs, epoch + 1, train_lm, train_entropy)
                self._checkpoint()
            elif self.config.checkpoint_every and self.state.step % self.config.checkpoint_every == 0:
                self._checkpoint()
            if on_step is not None:
                on_step(self.state.step, record)
        return self.best_generator()

    def weight_entropy_summary(self) -> dict[str, float | None] | None:
        """The token weights' ``weight_entropy_ratio`` (1 = uniform) averaged over every step so far, over
        the last finished epoch's steps and over the kept epoch's (None before its first step); None
        without a weight net or before the first step."""
        if self.weight_net is None or self.state.step == 0:
            return None
        by_epoch = {r["epoch"]: r.get("train_weight_entropy_ratio") for r in self.state.history}
        return {
            "all_steps": self.state.weight_entropy_sum / self.state.step,
            "last_epoch": self.state.history[-1].get("train_weight_entropy_ratio"),
            "kept_epoch": by_epoch.get(self.state.best_epoch),
        }

    def best_generator(self) -> TunedGenerator:
        """The kept prompts and weight net, with the run's settings."""
        net = None
        if self.weight_net is not None:
            net = make_weight_net(self.config, self.weight_net.in_features)
            net.load_state_dict(self.best_weight_net)
        return TunedGenerator(
            prompts=self.best_prompts.cpu(), weight_net=net, config=self.config, base_model=self.loaded.name,
            layout=self.prompts.layout,
            task=self.task.name, labels=self.task.labels, connector=self.task.generator.connector,
            pair=self.task.pair,
            info={"best_epoch": self.state.best_epoch, "best_step": self.state.best_step, **self.state.best_dev},
        )  # fmt: skip

    # -- run folder ---------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        return settings_fingerprint(self.config, self.run_key)

    def _log(self, record: dict[str, Any]) -> None:
        if self.run_dir is not None and self.processes.is_main:
            append_jsonl(self.run_dir / METRICS_FILE, record)

    def _checkpoint(self) -> None:
        if self.run_dir is None or not self.processes.is_main:
            return
        tensors = {"prompts": self.prompts.weight.detach(), "best_prompts": self.best_prompts}
        if self.weight_net is not None:
            tensors |= {f"weight_net.{k}": v for k, v in self.weight_net.state_dict().items()}
            tensors |= {f"best_weight_net.{k}": v for k, v in self.best_weight_net.items()}
        optimizers = {"prompts": self.prompt_optimizer.state_dict()}
        if self.weight_optimizer is not None:
            optimizers["weight_net"] = self.weight_optimizer.state_dict()
        with atomic_dir(self.run_dir / CHECKPOINT_DIR) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / "generator.safetensors")
            torch.save(optimizers, tmp / "optimizers.pt")
            state = {**vars(self.state), "fingerprint": self._fingerprint()}
            atomic_write_text(tmp / "state.json", json.dumps(state, indent=1))

    def _resume(self) -> None:
        folder = None if self.run_dir is None else self.run_dir / CHECKPOINT_DIR
        if folder is None or not (folder / "state.json").exists():
            if self.run_dir is not None and self.processes.is_main:  # a run killed before its first checkpoint
                (self.run_dir / METRICS_FILE).unlink(missing_ok=True)
            return
        saved = json.loads((folder / "state.json").read_text())
        if saved.pop("fingerprint") != self._fingerprint():
            raise ValueError(f"{folder} holds a checkpoint of a run with other settings; use another output folder")
        tensors = load_file(folder / "generator.safetensors", device=str(self.device))
        optimizers = torch.load(folder / "optimizers.pt", weights_only=True, map_location=self.device)
        with torch.no_grad():
            self.prompts.weight.copy_(tensors["prompts"])
        self.best_prompts = tensors["best_prompts"]
        self.prompt_optimizer.load_state_dict(optimizers["prompts"])
        if self.weight_net is not None and self.weight_optimizer is not None:
            self.weight_net.load_state_dict(_prefixed(tensors, "weight_net."))
            self.best_weight_net = _prefixed(tensors, "best_weight_net.")
            self.weight_optimizer.load_state_dict(optimizers["weight_net"])
        self.state = TrainState(**saved)
        if self.processes.is_main:  # metrics written after the checkpoint belong to steps that will run again
            truncate_jsonl(self.run_dir / METRICS_FILE, self.state.step)

    def discard_checkpoint(self) -> None:
        if self.run_dir is not None and self.processes.is_main:
            shutil.rmtree(self.run_dir / CHECKPOINT_DIR, ignore_errors=True)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
