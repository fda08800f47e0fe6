"""The losses of generator tuning, as pure functions of per-token tensors.

Notation: ``N`` target tokens in a batch of ``B`` rows, ``L`` labels, hidden size ``d``;
``label_logprobs[j, l] = a_{j,l} = log p(x_j | x_<j; Q_l)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dawgen.generator.config import DiscForm

BISECTION_STEPS = 40  # halvings of the bracket of the entropy-floor temperature: 2^-40 of it
DOUBLINGS = 64  # at most this many doublings of the temperature to bracket it (then the weights are uniform)


def entropy_ratio(weights: torch.Tensor) -> torch.Tensor:
    """The entropy of non-negative ``weights`` ([N]) as a distribution, over its largest value ``log N``:
    1 for uniform weights, towards 0 as they pile onto one token (1 when ``N = 1``)."""
    count = weights.numel()
    if count < 2:
        return weights.new_tensor(1.0)
    share = weights / weights.sum()
    return -(share * share.clamp_min(1e-30).log()).sum() / math.log(count)


def floor_temperature(scores: torch.Tensor, temperature: float = 1.0, min_entropy: float = 0.0) -> float:
    """The smallest temperature ``T >= temperature`` at which ``softmax(scores / T)`` has an entropy ratio
    of at least ``min_entropy`` (< 1), by bisection on the detached scores in float64: the entropy of a
    softmax grows with its temperature (``dH/dT = Var_p(scores) / T^3``) towards uniform's. Returned as
    a number, so autograd treats it as a constant."""
    if min_entropy <= 0 or scores.numel() < 2:
        return temperature
    detached = scores.detach().double()

    def reaches(t: float) -> bool:
        return float(entropy_ratio(torch.softmax(detached / t, dim=0))) >= min_entropy

    if reaches(temperature):
        return temperature
    low, high = temperature, 2 * temperature
    for _ in range(DOUBLINGS):
        if reaches(high):
            break
        low, high = high, 2 * high
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return high


def token_weights(
    scores: torch.Tensor, temperature: float = 1.0, floor: float = 0.0, min_entropy: float = 0.0
) -> torch.Tensor:
    """Weights from the weight net's scores ([N]), positive with mean 1, so a weighted loss keeps the
    unweighted loss's scale: ``N * ((1 - floor) * softmax(scores / T) + floor / N)`` over all target
    tokens of the batch.

    ``T`` is ``temperature``, raised where needed to the smallest temperature at which the softmax's
    entropy ratio (entropy / log N) reaches ``min_entropy`` (``floor_temperature``; a constant for
    autograd, so the weights stay a softmax of the scores, differentiable in them). ``floor`` mixes in
    the uniform distribution, as defensive importance sampling mixes in its nominal distribution
    (Hesterberg 1995) to bound the weights: every weight is at least ``floor`` (the mean is 1), at most
    ``(1 - floor) * N + floor``, and, the entropy being concave, the entropy ratio is at least ``floor``
    too. The defaults (1, 0, 0) are FewGen's ``N * softmax(scores)``; a large ``T`` gives uniform weights.
    """
    count = scores.numel()
    share = torch.softmax(scores / floor_temperature(scores, temperature, min_entropy), dim=0)
    if floor > 0:
        share = (1 - floor) * share + floor / count
    return count * share


def with_eos_weight(weights: torch.Tensor | None, is_eos: torch.Tensor, eos_weight: float) -> torch.Tensor | None:
    """Token weights that favour the eos tokens (``is_eos`` [N] bool): ``eos_weight - 1`` is added to each
    eos token's weight (``weights``, mean 1; None: the plain loss's, all 1), then every weight is scaled
    by the same factor so the mean is 1 again. For the plain loss an eos token then weighs
    ``eos_weight`` times any other; added after the weight normalisation, it keeps an eos token's weight at
    least ``(eos_weight - 1) * N / (N + n_eos * (eos_weight - 1))`` whatever the weight net does.
    ``eos_weight = 1`` returns ``weights`` unchanged."""
    if eos_weight == 1:
        return weights
    base = torch.ones(is_eos.shape, device=is_eos.device) if weights is None else weights
    raised = base + (eos_weight - 1) * is_eos.to(base.dtype)
    return raised * (raised.numel() / raised.sum())


def lm_loss(logprob: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``mean_j w_j * -log p(x_j)`` (L_wgen); without ``weights``, the ordinary LM loss."""
    nll = -logprob
    return nll.mean() if weights is None else (weights * nll).mean()


def token_disc_loss(label_logprobs: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """[N] ``d_j = -log softmax_l(a_{j,l})[y_j]``: how badly token ``j`` tells its label from the others."""
    return -torch.log_softmax(label_logprobs, dim=-1).gather(1, gold[:, None]).squeeze(1)


def disc_loss(label_logprobs: torch.Tensor, gold: torch.Tensor, form: DiscForm = DiscForm.CE) -> torch.Tensor:
    """L_disc: ``ce`` = ``mean_j d_j``; ``ratio`` = ``mean_j -p_y / sum_l p_l`` (softmax of the log-probs)."""
    if DiscForm(form) is DiscForm.CE:
        return token_disc_loss(label_logprobs, gold).mean()
    return -torch.softmax(label_logprobs, dim=-1).gather(1, gold[:, None]).mean()


def sequence_disc_loss(
    label_logprobs: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor, num_rows: int
) -> torch.Tensor:
    """GeDi's discriminative loss (Krause et al. 2021): ``mean_i -log softmax_l(sum_j a_{j,l})[y_i]`` over the
    samples, ``j`` running over sample ``i``'s target tokens (``rows`` [N]). With a uniform prior that is the
    Bayes posterior of the label from the class-conditional likelihoods: the dev label-discrimination
    score, as a differentiable loss."""
    sums = torch.zeros(num_rows, label_logprobs.shape[1], dtype=label_logprobs.dtype, device=label_logprobs.device)
    sums = sums.index_add(0, rows, label_logprobs)
    return torch.nn.functional.cross_entropy(sums, labels)


def pooled_representations(
    hidden: torch.Tensor, scores: torch.Tensor, rows: torch.Tensor, num_rows: int
) -> torch.Tensor:
    """[B, d] per-sample ``z_i``: the mean of sample ``i``'s token states ``hidden`` ([N, d]) weighted by
    the softmax of ``scores`` ([N]) over that sample's tokens (``rows`` [N] names each token's sample),
    L2-normalised."""
    row_max = torch.full((num_rows,), -torch.inf, dtype=scores.dtype, device=scores.device)
    row_max = row_max.scatter_reduce(0, rows, scores, reduce="amax").detach()
    exp = torch.exp(scores - row_max[rows])
    totals = torch.zeros(num_rows, dtype=exp.dtype, device=exp.device).index_add(0, rows, exp)
    weights = exp / totals[rows]
    summed = torch.zeros(num_rows, hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
    summed = summed.index_add(0, rows, weights[:, None].to(hidden.dtype) * hidden)
    return F.normalize(summed, dim=-1)


def _mean_hinge(margin: float, positive: torch.Tensor, negative: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of ``max(0, margin - positive + negative)`` over the ``valid`` triples (0 when there are none)."""
    hinge = torch.relu(margin - positive + negative)
    count = valid.sum()
    if count == 0:
        return hinge.sum() * 0.0  # keeps the graph, so callers can always differentiate
    return (hinge * valid).sum() / count


def _positive_pairs(labels: torch.Tensor) -> torch.Tensor:
    """[B, B] (i, j): same label, ``j != i``."""
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)


def dist_loss_label_pairs(z: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """L_dist over all triples (anchor i, positive j: same label, ``j != i``; negative k: another label)
    of the normalised ``z`` ([B, d]), with cosine similarity: ``max(0, margin - D(z_i, z_j) + D(z_i, z_k))``."""
    similarity = z @ z.T
    positive_pairs = _positive_pairs(labels)
    negative_pairs = labels[:, None] != labels[None, :]
    valid = positive_pairs[:, :, None] & negative_pairs[:, None, :]  # [i, j, k]
    return _mean_hinge(margin, similarity[:, :, None], similarity[:, None, :], valid)


def dist_loss_prompt_pairs(z_by_label: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """L_dist with ``dist_pairing = prompt``: ``z_by_label`` [B, L, d] holds every sample encoded under every
    label's prompt; for anchor i and positive j (same label, ``j != i``, both under their own prompt) the
    negative is j under each wrong label's prompt l."""
    rows = torch.arange(len(labels), device=labels.device)
    own = z_by_label[rows, labels]  # [B, d]
    positive = own @ own.T  # [i, j]
    negative = torch.einsum("id,jld->ijl", own, z_by_label)  # [i, j, l]
    wrong_label = torch.arange(z_by_label.shape[1], device=labels.device)[None, :] != labels[:, None]  # [i, l]
    valid = _positive_pairs(labels)[:, :, None] & wrong_label[:, None, :]
    return _mean_hinge(margin, positive[:, :, None], negative, valid)
