"""Generator tuning, the bi-level step: the look-ahead's gradient for W, and what one step updates.

Pinned to fp32 (``precision="fp32"``): the finite-difference gradient check needs fp32.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from dawgen.config import ConfigError, config_from_dict
from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.generator import (
    GeneratorConfig,
    GeneratorObjective,
    Hypergradient,
    LabelPrompts,
    SequenceBuilder,
    Variant,
    bilevel,
    collate,
    finite_difference_hypergradient,
    generator_step,
    label_texts,
    lookahead,
    make_weight_net,
)
from dawgen.generator.losses import floor_temperature
from dawgen.models.loading import load_model
from dawgen.pipeline.config import RunConfig

TASK = demo_task()
PROMPT_TOKENS = 3
NORMALISED = {"weight_temperature": 2.0, "weight_floor": 0.2, "eos_weight": 3.0}  # W's scores stay differentiable
WEIGHTED_SETTINGS = [
    {"variant": "dawgen"}, {"dist_pairing": "prompt", "disc_form": "ratio"}, {"variant": "fewgen"}, NORMALISED,
    {"lambda_disc": 0.5}, {"variant": "fewgen", "lambda_disc": 0.5},
]  # fmt: skip
WEIGHTED_IDS = ["dawgen", "dawgen-prompt-ratio", "fewgen", "dawgen-normalised-eos", "dawgen-gedi", "fewgen-gedi"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def setup(model_dir, dtype: torch.dtype, **settings):
    """A frozen tiny model in ``dtype``, label prompts, a weight net, and one label-balanced batch."""
    loaded = load_model(str(model_dir))
    model = loaded.model.to(dtype)
    config = GeneratorConfig(num_prompt_tokens=PROMPT_TOKENS, precision="fp32", device="cpu", **settings)
    objective = GeneratorObjective(model, config, TASK.num_labels, None, eos_id=loaded.tokenizer.eos_token_id)
    prompts = LabelPrompts.from_texts(model, loaded.tokenizer, label_texts(TASK), PROMPT_TOKENS).to(dtype)
    net = make_weight_net(config, loaded.embedding_dim)
    weight_net = None if net is None else net.to(dtype)
    split = load_fewshot(TASK, demo_dir())
    examples = [split.train[0], split.train[1], split.train[20], split.train[21]]
    sequences = SequenceBuilder(TASK, loaded.tokenizer).encode_all(examples)
    batch = collate(sequences, PROMPT_TOKENS, loaded.tokenizer.pad_token_id)
    return loaded, objective, prompts, weight_net, batch


def _float64_rms_norm(self: LlamaRMSNorm, hidden: torch.Tensor) -> torch.Tensor:
    """Llama's RMSNorm in the input's own dtype."""
    return self.weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


@pytest.mark.parametrize("settings", WEIGHTED_SETTINGS, ids=WEIGHTED_IDS)
def test_lookahead_gradient_matches_finite_differences(tiny_decoder_dir, settings, monkeypatch):
    """d L_disc(Q'(W)) / dW is non-zero and agrees with central differences, in float64 throughout.

    Llama's RMSNorm computes in float32 whatever the model's dtype; its rounding (~1e-7) would swamp
    the differences of a look-ahead whose W-gradient is ~1e-5, so the test computes it in float64.
    """
    monkeypatch.setattr(LlamaRMSNorm, "forward", _float64_rms_norm)
    _, objective, prompts, weight_net, batch = setup(tiny_decoder_dir, torch.float64, **settings)
    first = weight_net.layers[0].weight
    (grad,) = torch.autograd.grad(lookahead(objective, prompts.weight, batch, weight_net).disc, first)
    assert grad.abs().max() > 0
    (bias_grad,) = torch.autograd.grad(
        lookahead(objective, prompts.weight, batch, weight_net).disc, weight_net.layers[2].bias
    )
    assert bias_grad.abs().item() < 1e-12  # a shift of every score leaves the softmax weights unchanged
    assert_central_differences(lambda: lookahead(objective, prompts.weight, batch, weight_net).disc, first, grad, 3)


def assert_central_differences(value, param: torch.Tensor, grad: torch.Tensor, entries: int, eps: float = 1e-5):
    """``grad``'s ``entries`` largest entries agree with central differences of ``value()`` in ``param``."""
    for index in grad.abs().flatten().topk(entries).indices.tolist():
        entry = divmod(index, param.shape[1])
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                param[entry] += sign * eps
            values.append(value().item())
            with torch.no_grad():
                param[entry] -= sign * eps
        estimate = (values[0] - values[1]) / (2 * eps)
        assert estimate == pytest.approx(grad[entry].item(), rel=1e-4, abs=1e-12)


def test_bilevel_step_updates_prompts_and_weight_net_only(tiny_decoder_dir):
    loaded, objective, prompts, weight_net, batch = setup(tiny_decoder_dir, torch.float32)
    frozen = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    q_before, w_before = prompts.weight.detach().clone(), weight_net.layers[0].weight.detach().clone()
    q_opt = torch.optim.AdamW(prompts.parameters(), lr=5e-3)
    w_opt = torch.optim.Adam(weight_net.parameters(), lr=1e-2, weight_decay=1e-4)
    parts, extra = generator_step(objective, prompts.weight, weight_net, q_opt, w_opt, batch)
    assert extra["weight_net_grad_norm"] > 0 and extra["disc_lookahead"] > 0
    assert not torch.equal(prompts.weight, q_before) and not torch.equal(weight_net.layers[0].weight, w_before)
    assert parts.dist is not None and parts.weights.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert all(torch.equal(frozen[k], v) for k, v in loaded.model.state_dict().items())
    assert prompts.weight.grad is None and all(p.grad is None for p in weight_net.parameters())


@pytest.mark.parametrize("settings", WEIGHTED_SETTINGS, ids=WEIGHTED_IDS)
def test_real_step_equals_a_fresh_computation(tiny_decoder_dir, settings):
    """Step 3 reuses step 1's forward under Q: its gradient for Q is that of L_dawgen(Q; W_new) recomputed."""
    _, objective, prompts, weight_net, batch = setup(tiny_decoder_dir, torch.float64, **settings)
    q_opt = torch.optim.SGD(prompts.parameters(), lr=1.0)
    w_opt = torch.optim.Adam(weight_net.parameters(), lr=1e-2, weight_decay=1e-4)
    start = prompts.weight.detach().clone()
    w_new = {}

    def record_w(*_):  # runs right after the weight-net update
        w_new.update({k: v.clone() for k, v in weight_net.state_dict().items()})

    w_opt.register_step_post_hook(record_w)
    generator_step(objective, prompts.weight, weight_net, q_opt, w_opt, batch)
    q = start.clone().requires_grad_()
    weight_net.load_state_dict(w_new)
    fresh = objective.loss(objective.score(q, batch), batch, weight_net, train_weight_net=False).total
    (grad,) = torch.autograd.grad(fresh, q)
    torch.testing.assert_close(prompts.weight.detach(), start - grad)


def test_plain_step_has_no_weight_net(tiny_decoder_dir):
    _, objective, prompts, weight_net, batch = setup(tiny_decoder_dir, torch.float32, variant="plain")
    assert weight_net is None
    q_opt = torch.optim.AdamW(prompts.parameters(), lr=5e-3)
    before = prompts.weight.detach().clone()
    parts, extra = generator_step(objective, prompts.weight, None, q_opt, None, batch)
    assert extra == {} and parts.weights is None and parts.dist is None
    assert not torch.equal(prompts.weight, before)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.flatten() for t in tensors])


def _distinct_label_prompts(prompts: LabelPrompts) -> None:
    """The demo labels' 3-token prompts start out identical (their texts begin alike), which makes FewGen's
    features (a token's discriminative loss) the same for every token and W's gradient ~0; pull them apart."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        noise = torch.randn(prompts.weight.shape, generator=generator, dtype=prompts.weight.dtype)
        prompts.weight.add_(noise * prompts.weight.std())


def exact_and_fd(model_dir, dtype: torch.dtype, **settings) -> tuple[torch.Tensor, torch.Tensor]:
    _, objective, prompts, weight_net, batch = setup(model_dir, dtype, **settings)
    _distinct_label_prompts(prompts)
    params = list(weight_net.parameters())
    exact = _flat(torch.autograd.grad(lookahead(objective, prompts.weight, batch, weight_net).disc, params))
    fd, ahead = finite_difference_hypergradient(objective, prompts.weight, batch, weight_net)
    assert ahead.disc.item() == pytest.approx(lookahead(objective, prompts.weight, batch, weight_net).disc.item())
    return exact, _flat(fd)


def agreement(exact: torch.Tensor, estimate: torch.Tensor) -> tuple[float, float]:
    """(cosine, relative error ||estimate - exact|| / ||exact||)."""
    cosine = torch.nn.functional.cosine_similarity(exact, estimate, dim=0).item()
    return cosine, ((estimate - exact).norm() / exact.norm()).item()


@pytest.mark.parametrize("settings", WEIGHTED_SETTINGS, ids=WEIGHTED_IDS)
def test_finite_difference_hypergradient_matches_exact(tiny_decoder_dir, settings, monkeypatch):
    """DARTS's central difference agrees with the double backward, and its error is the O(r^2) of a central
    difference of the same derivative: in float64 (RMSNorm too), r = 1e-2 is within 1e-3 relative (measured
    ~1e-4) and r = 1e-3 100x closer; in float32 at DARTS's r = 1e-2, within 1e-2 (measured <= 2e-3)."""
    exact, estimate = exact_and_fd(tiny_decoder_dir, torch.float32, **settings)
    cosine, relative = agreement(exact, estimate)
    assert exact.norm() > 1e-6 and cosine > 0.999 and relative < 1e-2
    monkeypatch.setattr(LlamaRMSNorm, "forward", _float64_rms_norm)
    errors = []
    for radius in (1e-2, 1e-3):
        exact, estimate = exact_and_fd(tiny_decoder_dir, torch.float64, fd_radius=radius, **settings)
        cosine, relative = agreement(exact, estimate)
        assert cosine > 0.99999 and relative < 1e-3
        errors.append(relative)
    assert errors[1] == pytest.approx(errors[0] / 100, rel=0.2)


def test_hypergradients_agree_under_an_entropy_floor(tiny_decoder_dir):
    """With ``weight_min_entropy`` binding, both hypergradients hold the floor's temperature fixed (it is
    found on detached scores), so they still agree, and W's gradient is not zero."""
    _, objective, prompts, weight_net, batch = setup(tiny_decoder_dir, torch.float32, weight_min_entropy=0.999)
    _distinct_label_prompts(prompts)
    raw = weight_net(objective.features(objective.score(prompts.weight, batch), batch))
    assert floor_temperature(raw, 1.0, 0.999) > 1.0  # the floor binds
    exact, estimate = exact_and_fd(tiny_decoder_dir, torch.float32, weight_min_entropy=0.999)
    cosine, relative = agreement(exact, estimate)
    assert exact.norm() > 1e-8 and cosine > 0.999 and relative < 1e-2


def test_finite_difference_builds_no_double_backward(tiny_decoder_dir, monkeypatch):
    """No autograd call asks for a graph of its gradient, the estimate holds no graph, and the step runs
    under the CPU flash-attention kernel, which has no double backward (the exact step fails there)."""
    _, objective, prompts, weight_net, batch = setup(tiny_decoder_dir, torch.float32)
    objective.config.hypergradient = Hypergradient.FINITE_DIFFERENCE
    calls = []
    grad, backward = torch.autograd.grad, torch.autograd.backward

    def spy(real):
        def call(*args, **kwargs):
            calls.append(kwargs.get("create_graph", False))
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(torch.autograd, "grad", spy(grad))
    monkeypatch.setattr(torch.autograd, "backward", spy(backward))
    monkeypatch.setattr(bilevel, "_fd_attention", lambda device: sdpa_kernel(SDPBackend.FLASH_ATTENTION))
    grads, _ = finite_difference_hypergradient(objective, prompts.weight, batch, weight_net)
    assert all(g.grad_fn is None and not g.requires_grad for g in grads) and grads[0].abs().sum() > 0
    q_opt = torch.optim.AdamW(prompts.parameters(), lr=5e-3)
    w_opt = torch.optim.Adam(weight_net.parameters(), lr=1e-2)
    _, extra = generator_step(objective, prompts.weight, weight_net, q_opt, w_opt, batch)
    assert extra["weight_net_grad_norm"] > 0 and len(calls) == 7 and not any(calls)  # 3 grads a call, 1 backward
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION), pytest.raises(RuntimeError, match="flash_attention"):
        scores = objective.score(prompts.weight, batch)
        total = objective.loss(scores, batch, weight_net, train_weight_net=True).total
        (q_grad,) = grad(total, prompts.weight, create_graph=True)
        grad(objective.disc(prompts.weight - q_grad, batch), list(weight_net.parameters()))


@pytest.mark.parametrize("settings", WEIGHTED_SETTINGS, ids=WEIGHTED_IDS)
def test_finite_difference_step_matches_the_exact_step(tiny_decoder_dir, settings):
    """One bi-level step of each, float64, SGD on both: W's update is the hypergradient, so it agrees to the
    estimate's error (~1e-4); Q's update reads W_new, so it agrees as closely."""
    updates = {}
    for mode in Hypergradient:
        _, objective, prompts, weight_net, batch = setup(
            tiny_decoder_dir, torch.float64, **settings, hypergradient=mode
        )
        _distinct_label_prompts(prompts)
        q_before, w_before = prompts.weight.detach().clone(), _flat(weight_net.parameters()).detach()
        q_opt = torch.optim.SGD(prompts.parameters(), lr=1.0)
        w_opt = torch.optim.SGD(weight_net.parameters(), lr=1e3)
        parts, extra = generator_step(objective, prompts.weight, weight_net, q_opt, w_opt, batch)
        w_step = _flat(weight_net.parameters()).detach() - w_before
        updates[mode] = (prompts.weight.detach() - q_before, w_step, parts.lm.item(), extra)
    (q_exact, w_exact, lm_exact, extra_exact), (q_fd, w_fd, lm_fd, extra_fd) = updates.values()
    assert agreement(w_exact, w_fd)[1] < 1e-3 and agreement(q_exact.flatten(), q_fd.flatten())[1] < 1e-3
    assert extra_fd["disc_lookahead"] == pytest.approx(extra_exact["disc_lookahead"], rel=1e-9)
    assert extra_fd["weight_net_grad_norm"] == pytest.approx(extra_exact["weight_net_grad_norm"], rel=1e-3)
    assert lm_fd == pytest.approx(lm_exact, rel=1e-4)


def test_hypergradient_option():
    assert GeneratorConfig().hypergradient is Hypergradient.EXACT and GeneratorConfig().fd_radius == 0.01
    config = config_from_dict(GeneratorConfig, {"hypergradient": "finite-difference", "fd_radius": "1e-3"})
    assert (config.hypergradient, config.fd_radius) == (Hypergradient.FINITE_DIFFERENCE, 1e-3)
    for bad in ({"hypergradient": "jvp"}, {"fd_radius": 0}):
        with pytest.raises(ConfigError):
            config_from_dict(GeneratorConfig, bad)
    run = RunConfig(tasks=["RTE"], data="x", generator={"hypergradient": "finite-difference", "fd_radius": 0.02})
    config = run.generator_config(Variant.DAWGEN, 13)
    assert (config.hypergradient, config.fd_radius, config.seed) == (Hypergradient.FINITE_DIFFERENCE, 0.02, 13)


def test_token_weight_options():
    default = GeneratorConfig()
    assert (default.weight_temperature, default.weight_floor, default.weight_min_entropy, default.eos_weight) == (
        1.0, 0.3, 0.0, 1.0
    )  # fmt: skip
    options = {"weight_temperature": "2", "weight_floor": "0.1", "weight_min_entropy": 0.5, "eos_weight": 4}
    run = RunConfig(tasks=["RTE"], data="x", generator=options)
    config = run.generator_config(Variant.FEWGEN, 13)
    assert (config.weight_temperature, config.weight_floor, config.weight_min_entropy, config.eos_weight) == (
        2.0, 0.1, 0.5, 4.0
    )  # fmt: skip
    bad = [
        ({"weight_temperature": 0}, "weight_temperature must be positive"),
        ({"weight_floor": 1.5}, "weight_floor must be in [0, 1]"),
        ({"weight_min_entropy": 1.0}, "weight_min_entropy must be in [0, 1)"),
        ({"eos_weight": 0.5}, "eos_weight must be at least 1"),
    ]
    for options, message in bad:
        with pytest.raises(ConfigError, match=re.escape(message)):
            config_from_dict(GeneratorConfig, options)
