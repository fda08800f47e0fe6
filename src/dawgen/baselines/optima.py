"""OPTIMA (Guo, Li and Yu, Findings of EMNLP 2022): a source prompt pre-trained with domain adaptation.

Like SPoT (``dawgen.baselines.transfer``), the soft prompt is first tuned on a labelled source task
(MNLI) and then prompt-tuned on the target task's k-shot split. OPTIMA's pre-training also reads the
target task's pool as **unlabeled** inputs (its pairs, never its labels) and regularises every step
(the paper's Algorithm 1; ``docs/optima.md`` has every detail and simplification):

- a perturbation ``delta`` of each source example's token embeddings, inside an L2 ball of radius
  ``epsilon``, found by ``adv_steps`` steps of normalised projected gradient ascent on
  ``KL(f(x_s) || f(x_s + delta)) + adv_weight * l_adv``, where ``l_adv = -log P(source | x_s + delta)``
  under a linear domain discriminator on the answer position's last hidden state: the perturbation
  seeks the prediction's most sensitive direction *towards the target domain* (Eq. 3-9);
- the prompt's loss ``CE(x_s) + kl_weight * KL(f(x_s) || f(x_s + delta*))`` (Eq. 10; the clean
  prediction is a fixed target), so the decision boundary turns smooth where the domains meet;
- the discriminator's loss ``-log P(source | x_s + delta*) - log P(source | x_s) - log P(target | x_t)``
  (Eq. 4) on detached features: no domain gradient reaches the prompt.

Model selection in pre-training is on the source task's dev split, as in the paper. The pre-trained
prompt is saved as a PEFT prompt adapter (``<run>/pretrain/adapter``) and starts the k-shot tuning.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dawgen.baselines.transfer import load_source_prompt
from dawgen.classifier.batching import Batch, epoch_batches
from dawgen.classifier.combine import Step
from dawgen.classifier.config import PeftKind, PromptTuneConfig
from dawgen.classifier.encoding import Encoded
from dawgen.classifier.run import TuneOutcome, prompt_tune, train_classifier
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PROMPT_ONLY, PromptTrainer, Trainable
from dawgen.config import to_dict
from dawgen.constants import ADAPTER_DIR
from dawgen.data.example import Example
from dawgen.data.fingerprint import inputs_fingerprint
from dawgen.data.readers import read_unlabelled
from dawgen.data.sources import HUB_PREFIX, load_fewshot
from dawgen.models.loading import LoadedModel
from dawgen.synthesis.pool import find_pool_file
from dawgen.tasks.registry import get_task
from dawgen.tasks.schema import TaskSpec

PRETRAIN_DIR = "pretrain"  # inside an OPTIMA run folder: the pre-training run (its adapter/ is the source prompt)
SOURCE, TARGET = 1, 0  # the domain discriminator's classes (the paper's z)
DISCRIMINATOR = "discriminator."  # checkpoint keys of the discriminator's tensors


@dataclass
class OptimaConfig(PromptTuneConfig):
    """Prompt tuning's settings (for the k-shot stage), plus the pre-training's. Defaults: the authors'
    code (``adv_lr``, ``adv_steps``, ``init_scale``, the discriminator's learning rate) and the paper
    (the loss weights); the source budget is ``configs/mnli-source.yaml``'s (128 per label, 100 steps of 8)."""

    source_data: str = ""  # the labelled source task: a training file (k per label sampled) or a k-shot folder
    source_task: str = "MNLI"
    source_k: int = 128  # source examples per label (dev: the next source_k per label)
    source_seed: int = 13  # the source sample's seed, the same for every run seed
    source_adapter: str = ""  # optional: start pre-training from this prompt adapter (default: prompt_init)
    require_same_base: bool = True
    pool: str = ""  # the target task's pool, read without labels: a file, or a data root with <TASK>/pool/
    pretrain_steps: int = 100
    pretrain_batch_size: int = 8  # source and target examples per pre-training step (each)
    epsilon: float = 1.0  # the L2 radius of each example's perturbation
    adv_lr: float = 0.1  # the ascent's step length (eta_delta; the step is the normalised gradient times it)
    adv_steps: int = 1  # ascent steps (K)
    init_scale: float = 1.0  # delta_0: uniform(-1, 1) * init_scale / sqrt(tokens * dim), then projected
    kl_weight: float = 1.0
    adv_weight: float = 1.0  # the weight of l_adv in the ascent's objective
    entropy_weight: float = 0.0  # the authors' code adds the perturbed prediction's entropy (1.0); the paper not
    disc_learning_rate: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.peft is not PeftKind.PROMPT:
            raise ValueError(f"optima perturbs token embeddings next to a soft prompt; set peft to prompt, not "
                             f"{self.peft.value!r}")  # fmt: skip
        for name, what in (("source_data", "the labelled source task's data"), ("pool", "the target task's pool")):
            if not getattr(self, name):
                raise ValueError(f"optima needs {name}: {what}")
        if self.pool.startswith(HUB_PREFIX):
            raise ValueError("optima reads the target pool from a file or a data root, not from the hub")
        for name in ("source_k", "pretrain_steps", "pretrain_batch_size", "adv_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("epsilon", "adv_lr", "disc_learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("init_scale", "kl_weight", "adv_weight", "entropy_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")

    def pretrain_config(self) -> OptimaConfig:
        """These settings for the pre-training run: its steps, batch size and an evaluation at its end."""
        steps = self.pretrain_steps
        return dataclasses.replace(
            self, max_steps=steps, batch_size=self.pretrain_batch_size, eval_every=min(self.eval_every, steps)
        )


# -- the perturbation (Eq. 3-9) ----------------------------------------------------------------
def text_mask(batch: Batch) -> torch.Tensor:
    """[B, T, 1]: 1 at the positions a perturbation may move (the tokens: not padding, not prompt slots)."""
    return (batch.attention_mask.bool() & ~batch.prompt_slots).unsqueeze(-1).float()


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Each example's ``delta`` ([B, T, d]) back into the L2 ball of radius ``epsilon`` (Eq. 7)."""
    norms = delta.flatten(1).norm(dim=1).clamp(min=1e-12)
    return delta * (epsilon / norms).clamp(max=1.0).view(-1, 1, 1)


def initial_perturbation(batch: Batch, dim: int, config: OptimaConfig, generator: torch.Generator) -> torch.Tensor:
    """delta_0: uniform(-1, 1) on the token positions, scaled by ``init_scale / sqrt(tokens * dim)`` per
    example (the authors' code), projected into the ball."""
    mask = text_mask(batch).cpu()
    noise = (torch.rand(*mask.shape[:2], dim, generator=generator) * 2 - 1) * mask
    scale = config.init_scale / (mask.flatten(1).sum(1).clamp(min=1) * dim).sqrt()
    return project(noise * scale.view(-1, 1, 1), config.epsilon).to(batch.input_ids.device)


def prediction_change(clean_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``KL(f(x) || f(x + delta))`` over the label words, batch mean; ``clean_logits`` is a fixed target."""
    target = F.log_softmax(clean_logits.detach(), dim=-1)
    return F.kl_div(F.log_softmax(logits, dim=-1), target, log_target=True, reduction="batchmean")


def domain_loss(discriminator: torch.nn.Module, hidden: torch.Tensor, domain: int) -> torch.Tensor:
    """``-log P(domain | hidden)`` under the discriminator, batch mean (``l_adv`` with ``SOURCE``)."""
    labels = torch.full((len(hidden),), domain, dtype=torch.long, device=hidden.device)
    return F.cross_entropy(discriminator(hidden), labels)


def ascent_objective(
    scorer: VerbalizerScorer,
    discriminator: torch.nn.Module,
    batch: Batch,
    prompt: torch.Tensor,
    clean_logits: torch.Tensor,
    delta: torch.Tensor,
    adv_weight: float,
) -> torch.Tensor:
    """What the perturbation maximises (Eq. 6): ``KL(f(x) || f(x + delta)) + adv_weight * l_adv(x + delta)``."""
    logits, hidden = scorer.answer_outputs(batch, prompt, delta)
    return prediction_change(clean_logits, logits) + adv_weight * domain_loss(discriminator, hidden, SOURCE)


def adversarial_perturbation(
    scorer: VerbalizerScorer,
    discriminator: torch.nn.Module,
    batch: Batch,
    prompt: torch.Tensor,
    clean_logits: torch.Tensor,
    config: OptimaConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """delta* ([B, T, d], detached): ``adv_steps`` steps of ``delta <- proj(delta + adv_lr * g / ||g||)`` with
    ``g`` the gradient of ``ascent_objective``, per example (Eq. 8-9; Algorithm 1, lines 5-13)."""
    mask = text_mask(batch)
    delta = initial_perturbation(batch, scorer.embedding_dim, config, generator)
    for _ in range(config.adv_steps):
        delta.requires_grad_(True)
        objective = ascent_objective(scorer, discriminator, batch, prompt, clean_logits, delta, config.adv_weight)
        (grad,) = torch.autograd.grad(objective, delta)
        grad = grad * mask
        norms = grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1)
        delta = project(delta.detach() + config.adv_lr * grad / norms, config.epsilon)
    return delta.detach()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """The mean entropy of the predictions."""
    return -(F.softmax(logits, dim=-1) * F.log_softmax(logits, dim=-1)).sum(-1).mean()


# -- the pre-training step (Algorithm 1) -------------------------------------------------------
@dataclass(frozen=True)
class TargetInputs:
    """The target task's unlabeled inputs, encoded with its template by ``scorer``, and their fingerprint."""

    scorer: VerbalizerScorer
    items: list[Encoded]
    fingerprint: str


@dataclass
class OptimaTerms:
    """One step's losses: the prompt's (``loss`` = ``ce + kl_weight * kl + entropy_weight * entropy``) and
    the discriminator's (``disc``), with their parts and the perturbation's mean norm."""

    loss: torch.Tensor
    disc: torch.Tensor
    ce: float
    kl: float
    adv: float
    delta_norm: float


class OptimaTrainer(PromptTrainer):
    """Prompt tuning on the source task with OPTIMA's step: a ``PromptTrainer`` (dev selection, checkpoints,
    resume) whose every step also draws a target batch and trains the domain discriminator, a second
    parameter group of the prompt's optimizer (its own learning rate), checkpointed with the prompt."""

    def __init__(
        self,
        scorer: VerbalizerScorer,
        config: OptimaConfig,
        run_dir: str | Path | None = None,
        run_key: str = "",
        *,
        target: TargetInputs,
        trainable: Trainable = PROMPT_ONLY,
        start_prompt: torch.Tensor | None = None,
    ) -> None:
        if trainable != PROMPT_ONLY:
            raise ValueError("OPTIMA trains the soft prompt alone")
        if not target.items:
            raise ValueError("OPTIMA needs target inputs: the target pool is empty")
        super().__init__(scorer, config, run_dir, run_key + target.fingerprint, start_prompt=start_prompt)
        self.target = target
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.discriminator = torch.nn.Linear(scorer.model.config.hidden_size, 2).to(scorer.device)
        self.optimizer.add_param_group({"params": list(self.discriminator.parameters()),
                                        "lr": config.disc_learning_rate})  # fmt: skip
        self._targets: Iterator[list[Encoded]] | None = None

    def _target_batch(self) -> list[Encoded]:
        """The target batch of this step: an endless shuffled stream, resumed at the step reached."""
        if self._targets is None:
            stream = epoch_batches(self.target.items, self.config.batch_size, self.config.seed)
            self._targets = islice(stream, self.state.step, None)
        return next(self._targets)

    def terms(self, source: Sequence[Encoded], target: Sequence[Encoded], generator: torch.Generator) -> OptimaTerms:
        """The losses of one step on a source and a target batch (``generator`` draws delta_0)."""
        config, prompt = self.config, self.prompt
        assert isinstance(config, OptimaConfig) and prompt is not None
        batch = self.scorer.collate(source, self.num_virtual_tokens)
        logits, hidden = self.scorer.answer_outputs(batch, prompt)
        ce = F.cross_entropy(logits, batch.labels, label_smoothing=config.label_smoothing)
        with torch.no_grad():  # the target inputs train the discriminator only
            target_batch = self.target.scorer.collate(target, self.num_virtual_tokens)
            _, target_hidden = self.target.scorer.answer_outputs(target_batch, prompt)
        delta = adversarial_perturbation(self.scorer, self.discriminator, batch, prompt, logits, config, generator)
        perturbed, perturbed_hidden = self.scorer.answer_outputs(batch, prompt, delta)
        kl = prediction_change(logits, perturbed)
        loss = ce + config.kl_weight * kl + config.entropy_weight * entropy(perturbed)
        adv = domain_loss(self.discriminator, perturbed_hidden.detach(), SOURCE)
        disc = adv + domain_loss(self.discriminator, hidden.detach(), SOURCE)
        disc = disc + domain_loss(self.discriminator, target_hidden, TARGET)
        norm = delta.flatten(1).norm(dim=1).mean().item()
        return OptimaTerms(loss, disc, ce.item(), kl.item(), adv.item(), norm)

    def take_step(self, step: Step) -> dict[str, Any]:
        ((source, batch),) = step.batches
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.state.step)
        terms = self.terms(batch, self._target_batch(), generator)
        (terms.loss + terms.disc).backward()  # the discriminator's loss reaches only its own weights
        torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), self.config.max_grad_norm)
        self._optimizer_step()
        return {
            "source": source.value, "train_loss": terms.loss.item(), "ce": terms.ce, "kl": terms.kl,
            "adv": terms.adv, "disc_loss": terms.disc.item(), "delta_norm": terms.delta_norm,
        }  # fmt: skip

    def _tensors(self) -> dict[str, torch.Tensor]:
        state = self.discriminator.state_dict()
        return {**super()._tensors(), **{DISCRIMINATOR + k: v.detach().cpu().contiguous() for k, v in state.items()}}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        super()._restore(tensors)
        names = self.discriminator.state_dict()
        self.discriminator.load_state_dict({name: tensors[DISCRIMINATOR + name] for name in names})


# -- the baseline ------------------------------------------------------------------------------
def target_inputs(
    loaded: LoadedModel, task: TaskSpec, unlabelled: Sequence[Example], config: OptimaConfig
) -> TargetInputs:
    """The target task's unlabeled inputs, encoded without their labels in the task's own template."""
    scorer = VerbalizerScorer(loaded, task, max_length=config.max_length, precision=config.precision,
                              device=config.device)  # fmt: skip
    fingerprint = inputs_fingerprint("", task, unlabelled, extra="unlabelled")
    return TargetInputs(scorer, scorer.encoder.encode_unlabelled(unlabelled), fingerprint)


def pretrain_optima(
    loaded: LoadedModel,
    source_task: TaskSpec,
    source: tuple[Sequence[Example], Sequence[Example]],
    target: TargetInputs,
    config: OptimaConfig,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> TuneOutcome:
    """Pre-train a prompt on the source task's (train, dev) with OPTIMA's step against ``target``; with
    ``out_dir`` its adapter is ``out_dir/adapter`` (a ``TransferConfig.source_adapter``)."""
    pretrain = config.pretrain_config()
    start = None
    if config.source_adapter:
        start = load_source_prompt(config.source_adapter, loaded, config.num_virtual_tokens, config.require_same_base)
    scorer = VerbalizerScorer(loaded, source_task, max_length=config.max_length, precision=config.precision,
                              device=config.device)  # fmt: skip
    train, dev = source
    details = {"source_task": source_task.name, "source_examples": len(train), "target_inputs": len(target.items)}

    def make_trainer(*args: Any, **kwargs: Any) -> OptimaTrainer:
        return OptimaTrainer(*args, target=target, **kwargs)

    return train_classifier(
        scorer, train, dev, config=pretrain, out_dir=out_dir, show_progress=show_progress, start_prompt=start,
        method="optima-pretrain", settings={**to_dict(pretrain), "target": target.fingerprint}, details=details,
        make_trainer=make_trainer,
    )  # fmt: skip


def run_optima(
    loaded: LoadedModel,
    task: TaskSpec,
    train: Sequence[Example],
    dev: Sequence[Example],
    test: Sequence[Example] = (),
    config: OptimaConfig | None = None,
    out_dir: str | Path | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Pre-train a prompt on ``config.source_data`` with the target pool's unlabeled inputs (in
    ``out_dir/pretrain``), then prompt-tune it on the k-shot ``train`` (dev-selected, tested on ``test``)."""
    if config is None:
        raise ValueError("optima needs an OptimaConfig naming source_data and pool")
    source_task = get_task(config.source_task)
    source = load_fewshot(source_task, config.source_data, seed=config.source_seed, k=config.source_k)
    pool = find_pool_file(task, config.pool)
    target = target_inputs(loaded, task, read_unlabelled(task, pool), config)
    out = Path(out_dir) if out_dir is not None else None
    pretrain_dir = None if out is None else out / PRETRAIN_DIR
    pretrained = pretrain_optima(loaded, source_task, (source.train, source.dev), target, config, pretrain_dir,
                                 show_progress)  # fmt: skip
    summary = {key: pretrained.result[key] for key in ("source_task", "source_examples", "best_step", "dev")}
    summary.update(pool=pool, target_inputs=len(target.items))
    if pretrain_dir is not None:
        summary["adapter"] = str(pretrain_dir / ADAPTER_DIR)
    outcome = prompt_tune(
        loaded, task, train, dev, test=test, config=config, out_dir=out, show_progress=show_progress,
        start_prompt=pretrained.prompt, method="optima", details={"pretrain": summary},
    )  # fmt: skip
    return outcome.result
