"""Each variant's objective, and the bi-level step of Algorithm 1.

One step on one batch: (1) look-ahead ``Q' = Q - alpha * grad_Q L_dawgen(Q; W)`` with the graph kept,
so ``Q'`` is a differentiable function of W (plain tensors: the frozen model is never copied);
(2) ``L_disc(Q')`` is backpropagated to W, Adam step; (3) ``L_dawgen(Q; W_new)`` with W frozen, AdamW
step on Q. Step 3 reuses step 1's forward pass under Q (it does not depend on W), so a step costs two
forward passes with a graph (the second over every label, under ``Q'``), not three; FewGen adds one
without a graph (its weight net reads every label's log-probs under Q, detached). The look-ahead runs
under the math attention kernel: the CPU flash kernel has no double backward.

``hypergradient = finite-difference`` replaces steps 1-2's double backward by DARTS's estimate of the
same gradient (``finite_difference_hypergradient``): a first-order look-ahead, ``v = grad L_disc(Q')``,
and one no-grad forward of the batch under ``Q + eps v`` and ``Q - eps v`` together; nothing is
differentiated twice, so any attention kernel would do. It still runs under the math kernel on CPUs:
there the flash kernel's backward was the slower (SmolLM2-135M, bf16: 0.8 s against 0.4 s for the
backward to Q); elsewhere it leaves the choice to PyTorch.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from dawgen.generator.config import DistPairing, GeneratorConfig, Hypergradient, Variant
from dawgen.generator.losses import (
    disc_loss,
    dist_loss_label_pairs,
    dist_loss_prompt_pairs,
    lm_loss,
    pooled_representations,
    sequence_disc_loss,
    token_disc_loss,
    token_weights,
    with_eos_weight,
)
from dawgen.generator.prompts import PromptLayout, TargetScores, every_label_passes, own_label_passes, score_targets
from dawgen.generator.sequences import GenBatch
from dawgen.generator.weight_net import WeightNet
from dawgen.models.distributed import SINGLE, Processes


@dataclass
class LossParts:
    """``total`` = L_wgen + lambda_dist * L_dist (differentiable); the rest detached, for the logs."""

    total: torch.Tensor
    lm: torch.Tensor
    dist: torch.Tensor | None = None
    weights: torch.Tensor | None = None  # [N] token weights, mean 1
    label_disc: torch.Tensor | None = None  # L_seq, when lambda_disc > 0


@dataclass
class BatchScores:
    """A batch's forward pass under Q: the gold prompt's log-probs and hidden states (differentiable),
    and, when the variant reads them, every label's (``every``: differentiable for ``dist_pairing =
    prompt``, computed without a graph for ``fewgen``, whose weight net reads them detached)."""

    own_logprob: torch.Tensor  # [N]
    own_hidden: torch.Tensor  # [N, d]
    every: TargetScores | None = None  # [N, L] passes, pass l under label l's prompt


class GeneratorObjective:
    """The losses of ``config.variant`` on a frozen causal LM, as functions of the label prompts
    ([L, *layout.row_shape()]; no ``layout``: input prompts [L, m, d]). ``eos_id`` (the tokenizer's eos)
    is needed when ``config.eos_weight`` is not 1."""

    def __init__(
        self, model: Any, config: GeneratorConfig, num_labels: int, autocast_dtype: torch.dtype | None,
        layout: PromptLayout | None = None, eos_id: int | None = None,
    ) -> None:  # fmt: skip
        if config.eos_weight != 1 and eos_id is None:
            raise ValueError("eos_weight needs the eos token's id: GeneratorObjective(..., eos_id=...)")
        self.model = model
        self.config = config
        self.num_labels = num_labels
        self.autocast_dtype = autocast_dtype
        self.eos_id = eos_id
        self.layout = layout

    @property
    def prompt_slots(self) -> int:
        """Positions a batch reserves for input prompts (``collate``)."""
        return self.config.num_prompt_tokens if self.layout is None else self.layout.input_slots

    def _score(
        self, batch: GenBatch, prompts: torch.Tensor, passes: torch.Tensor, dtype: torch.dtype | None
    ) -> TargetScores:
        return score_targets(self.model, batch, prompts, passes, dtype, self.layout)

    def every_label(self, prompts: torch.Tensor, batch: GenBatch) -> TargetScores:
        """The batch's target tokens under every label's prompt (pass ``l`` = label ``l``), one forward."""
        return self._score(batch, prompts, every_label_passes(batch, self.num_labels), self.autocast_dtype)

    @property
    def reads_every_label(self) -> bool:
        """Whether the losses read the batch under every label's prompt, differentiably: L_dist with
        ``dist_pairing = prompt``, or the prompts' own discriminative term (``lambda_disc``)."""
        config = self.config
        return (config.uses_dist and config.dist_pairing is DistPairing.PROMPT) or config.lambda_disc > 0

    def score(self, prompts: torch.Tensor, batch: GenBatch) -> BatchScores:
        """The forward pass(es) L_dawgen needs."""
        config = self.config
        if self.reads_every_label:
            return _own_of_every(self.every_label(prompts, batch), batch)
        own = self._score(batch, prompts, own_label_passes(batch), self.autocast_dtype)
        every = None
        if config.variant is Variant.FEWGEN:
            with torch.no_grad():
                every = self.every_label(prompts.detach(), batch)
        return BatchScores(own.logprob[:, 0], own.hidden[:, 0], every)

    def score_pair(self, first: torch.Tensor, second: torch.Tensor, batch: GenBatch) -> tuple[BatchScores, BatchScores]:
        """``score`` under two sets of prompts, in one forward of the batch repeated, in float32 whatever
        the autocast: bf16's rounding (~4e-3) swamps a perturbation of norm 0.01 (SmolLM2-135M under bf16
        autocast, r = 0.01: cosine 0.68 with ``exact`` from bf16 passes, 0.999 from float32 ones). Only
        what L_dawgen reads differentiably: FewGen's every-label pass is left out (W's features come from Q)."""
        own = every_label_passes(batch, self.num_labels) if self.reads_every_label else own_label_passes(batch)
        width = own.shape[1]
        both = self._score(batch, torch.cat([first, second]), torch.cat([own, own + len(first)], 1), None)
        halves = []
        for half in (slice(0, width), slice(width, 2 * width)):
            scores = TargetScores(both.logprob[:, half], both.hidden[:, half])
            halves.append(_own_of_every(scores, batch) if self.reads_every_label else _own_only(scores))
        return halves[0], halves[1]

    def features(self, scores: BatchScores, batch: GenBatch) -> torch.Tensor:
        """The weight net's input, detached: W weights tokens; it is no path for Q's gradient."""
        if self.config.variant is Variant.FEWGEN:
            assert scores.every is not None
            return token_disc_loss(scores.every.logprob.detach(), batch.target_labels)[:, None]
        return scores.own_hidden.detach()

    def loss(
        self,
        scores: BatchScores,
        batch: GenBatch,
        weight_net: WeightNet | None,
        train_weight_net: bool,
        features: torch.Tensor | None = None,
    ) -> LossParts:
        """L_dawgen of the variant from ``scores`` (from ``score``); W stays in the graph only when
        ``train_weight_net``. W reads ``features`` (default: ``self.features(scores, batch)``)."""
        if self.config.variant is Variant.PLAIN or weight_net is None:
            loss = lm_loss(scores.own_logprob, self._with_eos_weight(None, batch))
            return self._with_label_disc(LossParts(total=loss, lm=loss.detach()), scores, batch)
        raw = weight_net(self.features(scores, batch) if features is None else features)
        raw = raw if train_weight_net else raw.detach()
        config = self.config
        weights = token_weights(raw, config.weight_temperature, config.weight_floor, config.weight_min_entropy)
        weights = self._with_eos_weight(weights, batch)
        wgen = lm_loss(scores.own_logprob, weights)
        parts = LossParts(total=wgen, lm=wgen.detach(), weights=weights.detach())
        if self.config.uses_dist:
            dist = self._dist(scores, raw, batch)
            parts.total = wgen + self.config.lambda_dist * dist
            parts.dist = dist.detach()
        return self._with_label_disc(parts, scores, batch)

    def _with_label_disc(self, parts: LossParts, scores: BatchScores, batch: GenBatch) -> LossParts:
        """``parts`` plus ``lambda_disc * L_seq`` (GeDi's term), when it is on."""
        if self.config.lambda_disc == 0:
            return parts
        assert scores.every is not None
        seq = sequence_disc_loss(scores.every.logprob, batch.target_rows, batch.labels, batch.num_rows)
        parts.total = parts.total + self.config.lambda_disc * seq
        parts.label_disc = seq.detach()
        return parts

    def _with_eos_weight(self, weights: torch.Tensor | None, batch: GenBatch) -> torch.Tensor | None:
        """``weights`` with ``config.eos_weight`` applied to the batch's eos targets (``losses.with_eos_weight``)."""
        if self.config.eos_weight == 1:
            return weights
        return with_eos_weight(weights, batch.target_ids == self.eos_id, self.config.eos_weight)

    def _dist(self, scores: BatchScores, raw: torch.Tensor, batch: GenBatch) -> torch.Tensor:
        """L_dist on W-pooled representations (a sample's pooling weights come from its own-prompt pass)."""
        margin, rows = self.config.dist_margin, batch.target_rows
        if self.config.dist_pairing is DistPairing.LABEL:
            z = pooled_representations(scores.own_hidden, raw, rows, batch.num_rows)
            return dist_loss_label_pairs(z, batch.labels, margin)
        assert scores.every is not None
        encodings = scores.every.hidden.unbind(dim=1)  # the batch under each label's prompt
        z_by_label = torch.stack([pooled_representations(h, raw, rows, batch.num_rows) for h in encodings], dim=1)
        return dist_loss_prompt_pairs(z_by_label, batch.labels, margin)

    def disc(self, prompts: torch.Tensor, batch: GenBatch) -> torch.Tensor:
        """L_disc: the batch under every label's prompt, compared token by token (``config.disc_form``)."""
        return disc_loss(self.every_label(prompts, batch).logprob, batch.target_labels, self.config.disc_form)


def _own_of_every(every: TargetScores, batch: GenBatch) -> BatchScores:
    gold = batch.target_labels
    rows = torch.arange(len(gold), device=gold.device)
    return BatchScores(every.logprob[rows, gold], every.hidden[rows, gold], every)


def _own_only(own: TargetScores) -> BatchScores:
    return BatchScores(own.logprob[:, 0], own.hidden[:, 0])


@dataclass
class Lookahead:
    """Steps 1-2 of a bi-level step: ``L_disc(Q')`` (a function of W), and the forward pass under Q."""

    disc: torch.Tensor
    scores: BatchScores
    parts: LossParts


def lookahead(
    objective: GeneratorObjective, prompts: torch.Tensor, batch: GenBatch, weight_net: WeightNet
) -> Lookahead:
    """``L_disc(Q - alpha * grad_Q L_dawgen(Q; W))``, differentiable with respect to W's parameters."""
    with sdpa_kernel(SDPBackend.MATH):
        scores = objective.score(prompts, batch)
        parts = objective.loss(scores, batch, weight_net, train_weight_net=True)
        (grad,) = torch.autograd.grad(parts.total, prompts, create_graph=True)
        ahead = prompts - objective.config.lookahead_lr * grad
        return Lookahead(objective.disc(ahead, batch), scores, parts)


def _trainable(weight_net: WeightNet) -> list[torch.nn.Parameter]:
    return [p for p in weight_net.parameters() if p.requires_grad]


def _fd_attention(device: torch.device) -> AbstractContextManager:
    """The attention kernels of the finite-difference step (see the module's docstring)."""
    return sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else nullcontext()


def finite_difference_hypergradient(
    objective: GeneratorObjective, prompts: torch.Tensor, batch: GenBatch, weight_net: WeightNet
) -> tuple[list[torch.Tensor], Lookahead]:
    """W's gradient of ``L_disc(Q')`` by DARTS's central difference (Liu et al. 2019, eq. 7-8), for the
    trainable parameters of ``weight_net`` in order; and the look-ahead (``scores``' graph under Q kept
    for step 3, ``parts`` under the current W, detached from it).

    What ``exact`` differentiates: ``L(Q, W)`` = L_dawgen with W reading features ``f`` taken under Q and
    detached, so W enters only through its scores ``W(f)`` and ``Q' = Q - alpha * grad_Q L(Q, W)``;
    L_disc reads W only through Q' (no direct term). By the chain rule, with ``v = grad L_disc(Q')``,
    ``grad_W L_disc(Q') = -alpha * grad^2_{W,Q} L(Q, W) v``, and the mixed term is the derivative along v
    of ``grad_W L``: ``(grad_W L(Q + eps v, W) - grad_W L(Q - eps v, W)) / (2 eps) + O(eps^2)``,
    ``eps = fd_radius / ||v||``. ``f`` stays the one under Q in both passes: re-reading it at ``Q +/- eps v``
    would add a term (f's own change along v) that ``exact``'s detach leaves out. Cost: one first-order
    backward to Q, L_disc's forward and backward under Q', one no-grad forward under both ``Q +/- eps v``,
    and a backward through W alone; no ``create_graph``.
    """
    with _fd_attention(prompts.device):
        return _finite_difference(objective, prompts, batch, weight_net)


def _finite_difference(
    objective: GeneratorObjective, prompts: torch.Tensor, batch: GenBatch, weight_net: WeightNet
) -> tuple[list[torch.Tensor], Lookahead]:
    config = objective.config
    params = _trainable(weight_net)
    scores = objective.score(prompts, batch)
    features = objective.features(scores, batch)
    parts = objective.loss(scores, batch, weight_net, train_weight_net=False, features=features)
    (grad,) = torch.autograd.grad(parts.total, prompts, retain_graph=True)  # step 3 backpropagates it again
    ahead = (prompts.detach() - config.lookahead_lr * grad).requires_grad_()
    disc = objective.disc(ahead, batch)
    (v,) = torch.autograd.grad(disc, ahead)
    norm = float(torch.linalg.vector_norm(v))
    look = Lookahead(disc.detach(), scores, parts)
    if norm == 0:
        return [torch.zeros_like(p) for p in params], look
    eps = config.fd_radius / norm
    base = prompts.detach()
    with torch.no_grad():
        plus, minus = objective.score_pair(base + eps * v, base - eps * v, batch)
    difference = (
        objective.loss(plus, batch, weight_net, train_weight_net=True, features=features).total
        - objective.loss(minus, batch, weight_net, train_weight_net=True, features=features).total
    )
    grads = torch.autograd.grad(difference, params)  # grad_W L(Q+) - grad_W L(Q-), one backward through W
    scale = -config.lookahead_lr / (2 * eps)
    return [scale * g for g in grads], look


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])))


def generator_step(
    objective: GeneratorObjective,
    prompts: torch.nn.Parameter,
    weight_net: WeightNet | None,
    prompt_optimizer: torch.optim.Optimizer,
    weight_optimizer: torch.optim.Optimizer | None,
    batch: GenBatch,
    processes: Processes = SINGLE,
) -> tuple[LossParts, dict[str, float]]:
    """One training step (bi-level unless the variant is ``plain``); returns the real step's losses
    (``weights`` from the updated W) and the look-ahead's numbers.

    With several ``processes`` (``plain`` only, see ``check_data_parallel``) ``batch`` is this process's
    share of the global batch: its token-mean loss is weighted by its share of the batch's target tokens
    and the prompts' gradients are summed, which is the gradient of the global batch's token mean."""
    extra: dict[str, float] = {}
    if weight_net is None or weight_optimizer is None:
        scores = objective.score(prompts, batch)
    else:
        params = _trainable(weight_net)
        if objective.config.hypergradient is Hypergradient.EXACT:
            ahead = lookahead(objective, prompts, batch, weight_net)
            with sdpa_kernel(SDPBackend.MATH):
                # frees the graph on the way to W only: W reads detached inputs, so the forward under Q is kept
                grads = list(torch.autograd.grad(ahead.disc, params))
        else:
            grads, ahead = finite_difference_hypergradient(objective, prompts, batch, weight_net)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        weight_optimizer.step()
        weight_optimizer.zero_grad(set_to_none=True)
        extra = {"disc_lookahead": ahead.disc.item(), "weight_net_grad_norm": _norm(grads)}
        scores = ahead.scores
        del ahead
    parts = objective.loss(scores, batch, weight_net, train_weight_net=False)
    prompt_optimizer.zero_grad(set_to_none=True)
    if processes.world == 1:
        parts.total.backward()
    else:
        share = len(batch.target_ids) / processes.total(torch.tensor(float(len(batch.target_ids))))
        (share * parts.total).backward()
        processes.sum_gradients([prompts])
        parts.lm = torch.tensor(processes.total(share * parts.lm))  # the global batch's LM loss, for the logs
    prompt_optimizer.step()
    prompt_optimizer.zero_grad(set_to_none=True)
    return parts, extra


def check_data_parallel(config: GeneratorConfig, processes: Processes, batch_rows: int) -> None:
    """Data-parallel stage 1 is exact for ``plain`` without ``lambda_disc`` only: its loss is a mean over
    target tokens, which shards sum back to. The bi-level variants normalise the token weights over the
    whole batch and pair its rows in L_dist, and L_seq is a mean over rows: sharded, each would be another
    objective (and the look-ahead would read a shard's gradient, not the batch's)."""
    if processes.world == 1:
        return
    if config.variant is not Variant.PLAIN or config.lambda_disc > 0:
        raise ValueError(
            f"stage 1 runs data-parallel for variant 'plain' without lambda_disc only (got variant "
            f"{config.variant.value!r}, lambda_disc {config.lambda_disc}): the bi-level variants' token weights "
            f"and L_dist are computed over the whole batch; run them as one process"
        )
    if batch_rows < processes.world:
        raise ValueError(
            f"a batch of {batch_rows} rows (per_label_batch x labels) cannot be shared by {processes.world} "
            f"processes: raise per_label_batch or launch fewer processes"
        )
