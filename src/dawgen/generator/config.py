"""Settings of generator tuning (Stage 1), with the defaults of method.md."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from dawgen.models.precision import PRECISIONS

# Token weights: 0.3 of them uniform. Measured (results/generator_faithfulness_smollm2.md, DawGen, deep prompts,
# RTE seed 13): the weights' entropy stayed at 0.51 of uniform against 0.11 with FewGen's softmax (0), at the
# same dev label discrimination (59.4%) and no_eos rate (6.0% against 6.8%).
DEFAULT_WEIGHT_FLOOR = 0.3


class Variant(StrEnum):
    """The paper's generator rows: one code path, one switch."""

    PLAIN = "plain"  # unweighted LM loss on the label prompts; no weight net, no L_dist, no bi-level step
    FEWGEN = "fewgen"  # FewGen: the weight net reads each token's discriminative loss (1 -> 100 -> 1)
    DAWGEN = "dawgen"  # DawGen: the weight net reads hidden states (d -> 100 -> 1), plus L_dist


class DiscForm(StrEnum):
    """How L_disc compares a token's log-probabilities under the label prompts."""

    CE = "ce"  # mean_j -log softmax_l(a_{j,l})[y]
    RATIO = "ratio"  # mean_j -p_y / sum_l p_l (the paper's printed form)


class Hypergradient(StrEnum):
    """How the bi-level step gets W's gradient through the look-ahead (``bilevel.py``)."""

    EXACT = "exact"  # double backward through the differentiable look-ahead (create_graph)
    FINITE_DIFFERENCE = "finite-difference"  # DARTS: the mixed derivative from two no-grad passes at Q +/- eps v


class PromptDepth(StrEnum):
    """Where a label prompt enters the frozen LM (``prompts.PromptLayout``)."""

    INPUT = "input"  # m vectors fed as input embeddings before the context (the original choice)
    DEEP = "deep"  # m key/value positions at every layer (FewGen), plus per-label connector (infix) embeddings


class DistPairing(StrEnum):
    """Which representation is the negative of an (anchor, positive) pair in L_dist."""

    LABEL = "label"  # another sample of another label, under its own prompt
    PROMPT = "prompt"  # the positive sample itself, encoded under a wrong label's prompt


@dataclass
class GeneratorConfig:
    """Generator tuning of a frozen causal LM. Defaults: method.md (FewGen's values where it says so).

    ``prompt_depth`` says where the label prompts enter the LM: ``input`` embeddings or ``deep`` key/value
    prefixes at every layer (with per-label connector embeddings); ``num_prompt_tokens`` is their length.
    The batch holds ``per_label_batch`` examples of every label. ``learning_rate`` / ``weight_decay``
    drive AdamW on the label prompts, ``weight_net_lr`` / ``weight_net_weight_decay`` Adam on the
    weight net, ``lookahead_lr`` (alpha) the differentiable look-ahead step. ``hypergradient`` picks
    how W's gradient through the look-ahead is computed; ``fd_radius`` (r, DARTS's 0.01) is the norm of
    the finite-difference perturbation ``eps * v`` (``eps = r / ||v||``), used by ``finite-difference`` only.

    Token weights of the weighted variants (``losses.token_weights``; ``plain`` has none):
    ``N * ((1 - weight_floor) * softmax(scores / T) + weight_floor / N)`` over the batch's N target tokens,
    mean 1. ``T`` = ``weight_temperature`` (> 1 flattens the weights), raised where needed to the smallest
    temperature at which their entropy / log N reaches ``weight_min_entropy`` (an entropy floor, found by
    bisection on the detached scores); ``weight_floor`` (in [0, 1]) mixes in uniform weights, so every token
    keeps at least ``weight_floor`` of the mean weight and the entropy ratio is at least ``weight_floor``.
    ``weight_floor`` defaults to 0.3 (``DEFAULT_WEIGHT_FLOOR``, measured); ``weight_floor: 0`` with the other
    two at their defaults (1, 0) is FewGen's and the paper's softmax. ``eos_weight`` (>= 1; 1: off) favours
    the eos token in L_wgen and the plain LM loss, not in L_disc: ``eos_weight - 1`` is added to every eos
    token's weight after the normalisation (so the weight net cannot starve it), then all weights are
    rescaled to mean 1; in the plain loss an eos token then weighs ``eos_weight`` times any other
    (``losses.with_eos_weight``).
    ``lambda_disc`` > 0 adds ``lambda_disc * L_seq`` to the label prompts' own objective in every variant:
    GeDi's generative-discriminative training, ``L_seq`` the cross-entropy of the label's Bayes posterior
    from the per-label likelihoods of each sample (``losses.sequence_disc_loss``); it costs a forward of
    the batch under every label's prompt. 0 (default) is the paper's objective.
    """

    variant: Variant = Variant.DAWGEN
    prompt_depth: PromptDepth = PromptDepth.INPUT
    num_prompt_tokens: int = 20
    first_sentence_tokens: int = 100
    max_length: int = 160  # tokens of the whole sequence, soft prompt not counted
    per_label_batch: int = 2
    epochs: int = 20
    learning_rate: float = 5e-3
    weight_decay: float = 0.0
    weight_net_lr: float = 1e-2
    weight_net_weight_decay: float = 1e-4
    weight_net_hidden: int = 100
    lookahead_lr: float = 2e-2
    hypergradient: Hypergradient = Hypergradient.EXACT
    fd_radius: float = 1e-2
    disc_form: DiscForm = DiscForm.CE
    dist_pairing: DistPairing = DistPairing.LABEL
    lambda_dist: float = 1.0
    dist_margin: float = 1.0
    eval_batch_size: int = 16
    checkpoint_every: int = 0  # steps between checkpoints inside an epoch; 0: at the end of every epoch only
    top_tokens: int = 5  # top-weighted tokens of one sample logged per step
    precision: str = "auto"
    device: str = "auto"
    seed: int = 13
    # token-weight normalisation against collapse onto a few tokens, and the eos token's weight (see above)
    weight_temperature: float = 1.0
    weight_floor: float = DEFAULT_WEIGHT_FLOOR
    weight_min_entropy: float = 0.0
    eos_weight: float = 1.0
    # the label prompts' own discriminative term (GeDi), beside the LM loss; 0: the paper's objective
    lambda_disc: float = 0.0

    def __post_init__(self) -> None:
        self.variant = Variant(self.variant)
        self.prompt_depth = PromptDepth(self.prompt_depth)
        self.disc_form = DiscForm(self.disc_form)
        self.dist_pairing = DistPairing(self.dist_pairing)
        self.hypergradient = Hypergradient(self.hypergradient)
        at_least_one = (
            "num_prompt_tokens", "first_sentence_tokens", "per_label_batch", "epochs", "eval_batch_size",
            "weight_net_hidden",
        )  # fmt: skip
        for name in at_least_one:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 (a token of context and the eos), got {self.max_length}")
        for name in ("learning_rate", "weight_net_lr", "lookahead_lr", "fd_radius"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        non_negative = ("weight_decay", "weight_net_weight_decay", "lambda_dist", "dist_margin", "checkpoint_every",
                        "lambda_disc")  # fmt: skip
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}")
        if self.top_tokens < 0:
            raise ValueError(f"top_tokens must be non-negative, got {self.top_tokens}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        self._check_token_weights()

    def _check_token_weights(self) -> None:
        if self.weight_temperature <= 0:
            raise ValueError(f"weight_temperature must be positive, got {self.weight_temperature}")
        if not 0 <= self.weight_floor <= 1:
            raise ValueError(f"weight_floor must be in [0, 1] (a share of uniform weights), got {self.weight_floor}")
        if not 0 <= self.weight_min_entropy < 1:
            bound = self.weight_min_entropy
            raise ValueError(f"weight_min_entropy must be in [0, 1) (entropy / log N), got {bound}")
        if self.eos_weight < 1:
            raise ValueError(f"eos_weight must be at least 1 (1: eos weighs like any token), got {self.eos_weight}")

    @property
    def uses_weight_net(self) -> bool:
        return self.variant is not Variant.PLAIN

    @property
    def uses_dist(self) -> bool:
        return self.variant is Variant.DAWGEN and self.lambda_dist > 0
