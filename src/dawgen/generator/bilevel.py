"""Each variant's objective, and the bi-level step of Algorithm 1.

One step on one batch: (1) look-ahead ``Q' = Q - alpha * grad_Q L_dawgen(Q; W)`` with the graph kept,
so ``Q'`` is a differentiable function of W (plain tensors: the frozen model is never copied);
(2) ``L_disc(Q')`` is backpropagated to W, Adam step; (3) ``L_dawgen(Q; W_new)`` with W frozen, AdamW
step on Q. Step 3 reuses step 1's forward pass under Q (it does not depend on W), so a step costs two
forward passes with a graph (the second over every label, under ``Q'``), not three; FewGen adds one
without a graph (its weight net reads every label's log-probs under Q, detached). The look-ahead runs
under the math attention kernel: the CPU flash kernel has no double backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from dawgen.generator.config import DistPairing, GeneratorConfig, Variant
from dawgen.generator.losses import (
    disc_loss,
    dist_loss_label_pairs,
    dist_loss_prompt_pairs,
    lm_loss,
    pooled_representations,
    token_disc_loss,
    token_weights,
)
from dawgen.generator.prompts import TargetScores, every_label_passes, own_label_passes, score_targets
from dawgen.generator.sequences import GenBatch
from dawgen.generator.weight_net import WeightNet


@dataclass
class LossParts:
    """``total`` = L_wgen + lambda_dist * L_dist (differentiable); the rest detached, for the logs."""

    total: torch.Tensor
    lm: torch.Tensor
    dist: torch.Tensor | None = None
    weights: torch.Tensor | None = None  # [N] token weights, mean 1


@dataclass
class BatchScores:
    """A batch's forward pass under Q: the gold prompt's log-probs and hidden states (differentiable),
    and, when the variant reads them, every label's (``every``: differentiable for ``dist_pairing =
    prompt``, computed without a graph for ``fewgen``, whose weight net reads them detached)."""

    own_logprob: torch.Tensor  # [N]
    own_hidden: torch.Tensor  # [N, d]
    every: TargetScores | None = None  # [N, L] passes, pass l under label l's prompt


class GeneratorObjective:
    """The losses of ``config.variant`` on a frozen causal LM, as functions of the label prompts [L, m, d]."""

    def __init__(self, model: Any, config: GeneratorConfig, num_labels: int, autocast_dtype: torch.dtype | None):
        self.model = model
        self.config = config
        self.num_labels = num_labels
        self.autocast_dtype = autocast_dtype

    def every_label(self, prompts: torch.Tensor, batch: GenBatch) -> TargetScores:
        """The batch's target tokens under every label's prompt (pass ``l`` = label ``l``), one forward."""
        passes = every_label_passes(batch, self.num_labels)
        return score_targets(self.model, batch, prompts, passes, self.autocast_dtype)

    def score(self, prompts: torch.Tensor, batch: GenBatch) -> BatchScores:
        """The forward pass(es) L_dawgen needs."""
        config, gold = self.config, batch.target_labels
        if config.uses_dist and config.dist_pairing is DistPairing.PROMPT:
            every = self.every_label(prompts, batch)
            rows = torch.arange(len(gold), device=gold.device)
            return BatchScores(every.logprob[rows, gold], every.hidden[rows, gold], every)
        own = score_targets(self.model, batch, prompts, own_label_passes(batch), self.autocast_dtype)
        every = None
        if config.variant is Variant.FEWGEN:
            with torch.no_grad():
                every = self.every_label(prompts.detach(), batch)
        return BatchScores(own.logprob[:, 0], own.hidden[:, 0], every)

    def loss(
        self, scores: BatchScores, batch: GenBatch, weight_net: WeightNet | None, train_weight_net: bool
    ) -> LossParts:
        """L_dawgen of the variant from ``scores`` (from ``score``); W stays in the graph only when
        ``train_weight_net``."""
        if self.config.variant is Variant.PLAIN or weight_net is None:
            loss = lm_loss(scores.own_logprob)
            return LossParts(total=loss, lm=loss.detach())
        if self.config.variant is Variant.FEWGEN:
            assert scores.every is not None
            features = token_disc_loss(scores.every.logprob.detach(), batch.target_labels)[:, None]
        else:
            features = scores.own_hidden.detach()  # W weights tokens; it is no path for Q's gradient
        raw = weight_net(features)
        raw = raw if train_weight_net else raw.detach()
        weights = token_weights(raw)
        wgen = lm_loss(scores.own_logprob, weights)
        parts = LossParts(total=wgen, lm=wgen.detach(), weights=weights.detach())
        if self.config.uses_dist:
            dist = self._dist(scores, raw, batch)
            parts.total = wgen + self.config.lambda_dist * dist
            parts.dist = dist.detach()
        return parts

    def _dist(self, scores: BatchScores, raw: torch.Tensor, batch: GenBatch) -> torch.Tensor:
        """L_dist on W-pooled representations (a sample's pooling weights come from its own-prompt pass)."""
        margin, rows = self.config.dist_margin, batch.target_rows
        if scores.every is None:
            z = pooled_representations(scores.own_hidden, raw, rows, batch.num_rows)
            return dist_loss_label_pairs(z, batch.labels, margin)
        encodings = scores.every.hidden.unbind(dim=1)  # the batch under each label's prompt
        z_by_label = torch.stack([pooled_representations(h, raw, rows, batch.num_rows) for h in encodings], dim=1)
        return dist_loss_prompt_pairs(z_by_label, batch.labels, margin)

    def disc(self, prompts: torch.Tensor, batch: GenBatch) -> torch.Tensor:
        """L_disc: the batch under every label's prompt, compared token by token (``config.disc_form``)."""
        return disc_loss(self.every_label(prompts, batch).logprob, batch.target_labels, self.config.disc_form)


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


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in tensors])))


def generator_step(
    objective: GeneratorObjective,
    prompts: torch.nn.Parameter,
    weight_net: WeightNet | None,
    prompt_optimizer: torch.optim.Optimizer,
    weight_optimizer: torch.optim.Optimizer | None,
    batch: GenBatch,
) -> tuple[LossParts, dict[str, float]]:
    """One training step (bi-level unless the variant is ``plain``); returns the real step's losses
    (``weights`` from the updated W) and the look-ahead's numbers."""
    extra: dict[str, float] = {}
    if weight_net is None or weight_optimizer is None:
        scores = objective.score(prompts, batch)
    else:
        ahead = lookahead(objective, prompts, batch, weight_net)
        params = [p for p in weight_net.parameters() if p.requires_grad]
        with sdpa_kernel(SDPBackend.MATH):
            # frees the graph on the way to W only: W reads detached inputs, so the forward under Q is kept
            grads = torch.autograd.grad(ahead.disc, params)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        weight_optimizer.step()
        weight_optimizer.zero_grad(set_to_none=True)
        extra = {"disc_lookahead": ahead.disc.item(), "weight_net_grad_norm": _norm(list(grads))}
        scores = ahead.scores
        del ahead
    parts = objective.loss(scores, batch, weight_net, train_weight_net=False)
    prompt_optimizer.zero_grad(set_to_none=True)
    parts.total.backward()
    prompt_optimizer.step()
    prompt_optimizer.zero_grad(set_to_none=True)
    return parts, extra
