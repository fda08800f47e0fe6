"""Generator tuning, the losses: token weights, L_disc, L_dist, and scoring under per-row label prompts.

Pinned to fp32 (``precision="fp32"``): the scoring tolerances (1e-5) are fp32's.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.generator import GeneratorConfig, GeneratorObjective, LabelPrompts, SequenceBuilder, collate, label_texts
from dawgen.generator.losses import (
    disc_loss,
    dist_loss_label_pairs,
    dist_loss_prompt_pairs,
    entropy_ratio,
    floor_temperature,
    lm_loss,
    pooled_representations,
    sequence_disc_loss,
    token_disc_loss,
    token_weights,
    with_eos_weight,
)
from dawgen.generator.prompts import every_label_passes, own_label_passes, score_targets
from dawgen.generator.weight_net import make_weight_net

TASK = demo_task()
PROMPT_TOKENS = 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sequences(loaded):
    split = load_fewshot(TASK, demo_dir())
    examples = [split.train[0], split.train[20], split.train[1], split.train[21]]  # labels 0, 1, 0, 1
    return SequenceBuilder(TASK, loaded.tokenizer).encode_all(examples)


@pytest.fixture(scope="module")
def prompts(loaded) -> torch.Tensor:
    start = LabelPrompts.from_texts(loaded.model, loaded.tokenizer, label_texts(TASK), PROMPT_TOKENS).weight
    return (start + 0.05 * torch.randn(start.shape, generator=torch.Generator().manual_seed(0))).detach()


def objective_for(loaded, **settings) -> GeneratorObjective:
    config = GeneratorConfig(num_prompt_tokens=PROMPT_TOKENS, precision="fp32", device="cpu", **settings)
    return GeneratorObjective(loaded.model, config, TASK.num_labels, None)


def test_token_weights_are_positive_with_mean_one():
    weights = token_weights(torch.tensor([3.0, -2.0, 0.5, 10.0, 0.0]))
    assert (weights > 0).all() and weights.mean().item() == pytest.approx(1.0)
    assert torch.allclose(token_weights(torch.zeros(4)), torch.ones(4))
    nll = torch.tensor([1.0, 2.0, 3.0])
    assert lm_loss(-nll).item() == pytest.approx(2.0)
    assert lm_loss(-nll, torch.tensor([0.0, 0.0, 3.0])).item() == pytest.approx(3.0)


score_lists = st.lists(  # score gaps / T stay within float32 exp: weights underflow to 0 past ~100
    st.floats(min_value=-8, max_value=8, allow_nan=False, allow_infinity=False, width=32), min_size=2, max_size=40
)
scores_of = lambda xs: torch.tensor(xs, dtype=torch.float32)  # noqa: E731


@settings(max_examples=200, deadline=None)
@given(
    score_lists,
    st.floats(min_value=0.25, max_value=5.0),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.0, max_value=0.95),
)
def test_normalised_weights_are_positive_with_mean_one_and_their_floors(values, temperature, floor, min_entropy):
    scores = scores_of(values)
    weights = token_weights(scores, temperature, floor, min_entropy)
    assert weights.shape == scores.shape and bool((weights > 0).all())
    assert weights.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert bool((weights >= floor * (1 - 1e-5)).all())  # every token keeps floor x the mean
    ratio = entropy_ratio(weights).item()
    assert ratio >= min_entropy - 1e-5 and ratio >= floor - 1e-5
    assert ratio >= entropy_ratio(token_weights(scores, temperature)).item() - 1e-6  # the floors only raise it


@settings(max_examples=200, deadline=None)
@given(score_lists, st.floats(min_value=0.05, max_value=0.95))
def test_the_entropy_floor_temperature_is_the_smallest_that_reaches_it(values, min_entropy):
    scores = scores_of(values).double()
    t = floor_temperature(scores, 1.0, min_entropy)
    assert t >= 1.0
    assert entropy_ratio(torch.softmax(scores / t, 0)).item() >= min_entropy
    if t > 1.0:  # raised: a slightly lower temperature misses the floor
        assert entropy_ratio(torch.softmax(scores / (t * (1 - 1e-6)), 0)).item() < min_entropy
        assert entropy_ratio(torch.softmax(scores, 0)).item() < min_entropy


def test_token_weights_defaults_are_fewgens_softmax_and_a_large_temperature_is_uniform():
    scores = torch.randn(50, generator=torch.Generator().manual_seed(1)) * 10
    assert torch.equal(token_weights(scores), 50 * torch.softmax(scores, 0))
    assert torch.allclose(token_weights(scores, temperature=1e7), torch.ones(50), atol=1e-5)
    assert torch.allclose(token_weights(scores, floor=1.0), torch.ones(50))
    assert entropy_ratio(token_weights(scores)).item() < 0.8  # so the floor below binds
    assert floor_temperature(scores, 2.0, 0.99) > floor_temperature(scores, 2.0, 0.9) > 2.0
    assert floor_temperature(scores, 2.0, 0.0) == 2.0 and floor_temperature(scores[:1], 1.0, 0.9) == 1.0
    assert entropy_ratio(torch.ones(1)).item() == 1.0 and entropy_ratio(torch.ones(7)).item() == pytest.approx(1.0)
    peaked = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert entropy_ratio(peaked).item() == 0.0


@pytest.mark.parametrize(
    "options", [{}, {"temperature": 3.0}, {"floor": 0.3}, {"min_entropy": 0.9}, {"temperature": 2.0, "floor": 0.5}]
)
def test_normalised_weights_are_differentiable_in_the_scores(options):
    """The gradient of a weighted loss reaches the scores, and (the entropy-floor temperature held fixed,
    as autograd treats it) matches central differences in float64."""
    generator = torch.Generator().manual_seed(2)
    scores = (torch.randn(12, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    nll = torch.rand(12, generator=generator, dtype=torch.float64) * 4
    (grad,) = torch.autograd.grad(lm_loss(-nll, token_weights(scores, **options)), scores)
    assert grad.abs().max() > 1e-3 and grad.sum().abs() < 1e-12  # shifting every score changes nothing
    t = floor_temperature(scores, options.get("temperature", 1.0), options.get("min_entropy", 0.0))
    fixed = {"temperature": t, "floor": options.get("floor", 0.0)}
    eps = 1e-6
    for j in range(12):
        step = torch.zeros(12, dtype=torch.float64)
        step[j] = eps
        up, down = (lm_loss(-nll, token_weights(scores.detach() + sign * step, **fixed)) for sign in (1, -1))
        assert ((up - down) / (2 * eps)).item() == pytest.approx(grad[j].item(), rel=1e-5, abs=1e-10)


@settings(max_examples=200, deadline=None)
@given(score_lists, st.floats(min_value=1.01, max_value=20.0), st.data())  # 1: off (None for plain)
def test_eos_weight_keeps_mean_one_and_a_floor_on_eos(values, eos_weight, data):
    n = len(values)
    is_eos = torch.tensor(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    weights = token_weights(scores_of(values))
    raised = with_eos_weight(weights, is_eos, eos_weight)
    assert raised.mean().item() == pytest.approx(1.0, rel=1e-5) and bool((raised > 0).all())
    eos_count = int(is_eos.sum())
    floor = (eos_weight - 1) * n / (n + eos_count * (eos_weight - 1))  # whatever the weight net gives eos
    assert bool((raised[is_eos] >= floor * (1 - 1e-5)).all())
    plain = with_eos_weight(None, is_eos, eos_weight)
    assert plain.mean().item() == pytest.approx(1.0, rel=1e-5)
    if 0 < eos_count < n:  # plain loss: an eos token weighs eos_weight times any other
        assert (plain[is_eos] / plain[~is_eos].max()).min().item() == pytest.approx(eos_weight, rel=1e-5)


def test_eos_weight_one_is_the_identity_and_starved_eos_keeps_weight():
    weights, is_eos = torch.tensor([3.9, 0.1, 0.0, 0.0]), torch.tensor([False, False, True, True])
    assert with_eos_weight(weights, is_eos, 1.0) is weights and with_eos_weight(None, is_eos, 1.0) is None
    assert torch.allclose(with_eos_weight(weights, is_eos, 3.0), torch.tensor([3.9, 0.1, 2.0, 2.0]) * 4 / 8)
    assert torch.allclose(with_eos_weight(None, is_eos, 3.0), torch.tensor([1.0, 1.0, 3.0, 3.0]) * 4 / 8)


def test_disc_loss_forms():
    label_logprobs = torch.log(torch.tensor([[0.2, 0.6], [0.1, 0.1], [0.5, 0.05]]))
    gold = torch.tensor([1, 0, 0])
    assert torch.allclose(
        token_disc_loss(label_logprobs, gold), F.cross_entropy(label_logprobs, gold, reduction="none")
    )
    assert disc_loss(label_logprobs, gold, "ce").item() == pytest.approx(F.cross_entropy(label_logprobs, gold).item())
    ratios = torch.tensor([0.6 / 0.8, 0.1 / 0.2, 0.5 / 0.55])
    assert disc_loss(label_logprobs, gold, "ratio").item() == pytest.approx(-ratios.mean().item(), rel=1e-6)


def test_pooling_is_a_per_sample_softmax_weighted_mean():
    hidden, scores = torch.randn(5, 4), torch.randn(5)
    rows = torch.tensor([0, 0, 0, 1, 1])
    z = pooled_representations(hidden, scores, rows, 2)
    for row, index in ((0, [0, 1, 2]), (1, [3, 4])):
        expected = (torch.softmax(scores[index], 0)[:, None] * hidden[index]).sum(0)
        assert torch.allclose(z[row], F.normalize(expected, dim=0), atol=1e-6)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2))


def test_dist_loss_is_zero_when_labels_are_separated():
    e = F.normalize(torch.randn(8), dim=0)
    labels = torch.tensor([0, 0, 1, 1])
    separated = torch.stack([e, e, -e, -e])  # same label coincide, other label opposite
    assert dist_loss_label_pairs(separated, labels).item() == 0.0
    assert dist_loss_label_pairs(torch.stack([e] * 4), labels).item() == pytest.approx(1.0)  # margin, no separation
    # by hand: positives are orthogonal (cos 0), each anchor has one negative at cos 1 and one at cos 0:
    # hinges 1 - 0 + 1 = 2 and 1 - 0 + 0 = 1 for each of the 4 anchors, mean 1.5
    e1, e2 = torch.eye(2)
    assert dist_loss_label_pairs(torch.stack([e1, e2, e1, e2]), labels).item() == pytest.approx(1.5)
    assert dist_loss_label_pairs(torch.stack([e, -e]), torch.tensor([0, 1])).item() == 0.0  # no positive pair


def test_dist_loss_prompt_pairing():
    e = F.normalize(torch.randn(6), dim=0)
    labels = torch.tensor([0, 0, 1, 1])
    z_by_label = torch.empty(4, 2, 6)
    z_by_label[torch.arange(4), labels] = torch.stack([e, e, -e, -e])  # own prompt
    z_by_label[torch.arange(4), 1 - labels] = torch.stack([-e, -e, e, e])  # wrong prompt: opposite
    assert dist_loss_prompt_pairs(z_by_label, labels).item() == 0.0
    assert dist_loss_prompt_pairs(torch.stack([torch.stack([e, e])] * 4), labels).item() == pytest.approx(1.0)


def test_plain_loss_equals_the_models_own_lm_loss(loaded, sequences, prompts):
    """Prompt prepended, labels -100 outside the target span: the HF loss, sequence by sequence."""
    objective = objective_for(loaded, variant="plain")
    batch = collate(sequences, PROMPT_TOKENS, loaded.tokenizer.pad_token_id)
    ours = objective.loss(objective.score(prompts, batch), batch, None, train_weight_net=False).total
    total, count = 0.0, 0
    embed = loaded.model.get_input_embeddings()
    for seq in sequences:
        tokens = torch.tensor([seq.context + seq.target])
        inputs = torch.cat([prompts[seq.label][None], embed(tokens)], dim=1)
        labels = torch.tensor([[-100] * (PROMPT_TOKENS + len(seq.context)) + seq.target])
        total += loaded.model(inputs_embeds=inputs, labels=labels).loss.item() * len(seq.target)
        count += len(seq.target)
    assert ours.item() == pytest.approx(total / count, rel=1e-5)


def test_every_row_gets_its_own_labels_prompt(loaded, sequences, prompts):
    batch = collate(sequences, PROMPT_TOKENS, loaded.tokenizer.pad_token_id)
    mixed = score_targets(loaded.model, batch, prompts, own_label_passes(batch))
    every = score_targets(loaded.model, batch, prompts, every_label_passes(batch, TASK.num_labels))
    assert mixed.logprob.shape == (batch.target_ids.numel(), 1) and every.logprob.shape[1] == TASK.num_labels
    gold = batch.target_labels[:, None]
    assert torch.allclose(every.logprob.gather(1, gold), mixed.logprob, atol=1e-5)
    for row, seq in enumerate(sequences):  # alone, without padding, under each label's prompt
        alone = collate([seq], PROMPT_TOKENS, loaded.tokenizer.pad_token_id)
        mine = batch.target_rows == row
        for label in range(TASK.num_labels):
            scores = score_targets(loaded.model, alone, prompts, torch.tensor([[label]]))
            assert torch.allclose(scores.logprob[:, 0], every.logprob[mine, label], atol=1e-5)
            assert torch.allclose(scores.hidden[:, 0], every.hidden[mine, label], atol=1e-5)
    head = loaded.model.get_output_embeddings()  # the hidden states are what the LM head reads
    logits = head(every.hidden[:, 0])
    expected = torch.log_softmax(logits, -1).gather(1, batch.target_ids[:, None]).squeeze(1)
    assert torch.allclose(expected, every.logprob[:, 0], atol=1e-5)


@pytest.mark.parametrize("variant", ["fewgen", "dawgen"])
def test_weighted_variants_give_positive_weights_with_mean_one(loaded, sequences, prompts, variant):
    objective = objective_for(loaded, variant=variant)
    weight_net = make_weight_net(objective.config, loaded.embedding_dim)
    assert weight_net.in_features == (1 if variant == "fewgen" else loaded.embedding_dim)
    batch = collate(sequences, PROMPT_TOKENS, loaded.tokenizer.pad_token_id)
    q = prompts.clone().requires_grad_()
    parts = objective.loss(objective.score(q, batch), batch, weight_net, train_weight_net=True)
    assert (parts.weights > 0).all() and parts.weights.mean().item() == pytest.approx(1.0, rel=1e-5)
    assert parts.weights.std() > 0  # W's random start already tells tokens apart
    assert (parts.dist is not None) == (variant == "dawgen")
    (grad_q,) = torch.autograd.grad(parts.total, q, retain_graph=True)
    assert grad_q.abs().sum() > 0
    first = weight_net.layers[0].weight
    (grad_w,) = torch.autograd.grad(parts.total, first)
    assert grad_w.abs().sum() > 0


def test_plain_loss_with_eos_weight_and_eos_needs_its_id(loaded, sequences, prompts):
    eos = loaded.tokenizer.eos_token_id
    config = GeneratorConfig(num_prompt_tokens=PROMPT_TOKENS, precision="fp32", variant="plain", eos_weight=4.0)
    objective = GeneratorObjective(loaded.model, config, TASK.num_labels, None, eos_id=eos)
    batch = collate(sequences, PROMPT_TOKENS, loaded.tokenizer.pad_token_id)
    scores = objective.score(prompts, batch)
    nll, is_eos = -scores.own_logprob, batch.target_ids == eos
    assert int(is_eos.sum()) == len(sequences)  # every target ends in eos
    expected = (nll.sum() + 3.0 * nll[is_eos].sum()) / (len(nll) + 3.0 * len(sequences))
    loss = objective.loss(scores, batch, None, train_weight_net=False).total
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert objective.disc(prompts, batch).item() == objective_for(loaded).disc(prompts, batch).item()  # not in L_disc
    with pytest.raises(ValueError, match="eos_weight needs the eos token's id"):
        GeneratorObjective(loaded.model, config, TASK.num_labels, None)


def test_weighted_variant_applies_the_normalisation_then_the_eos_weight(loaded, sequences, prompts):
    options = {"weight_temperature": 2.0, "weight_floor": 0.25, "weight_min_entropy": 0.95, "eos_weight": 3.0}
    config = GeneratorConfig(num_prompt_tokens=PROMPT_TOKENS, precision="fp32", **options)
    eos = loaded.tokenizer.eos_token_id
    objective = GeneratorObjective(loaded.model, config, TASK.num_labels, None, eos_id=eos)
    weight_net = make_weight_net(config, loaded.embedding_dim)
    batch = collate(sequences, PROMPT_TOKENS, loaded.tokenizer.pad_token_id)
    scores = objective.score(prompts, batch)
    parts = objective.loss(scores, batch, weight_net, train_weight_net=True)
    raw = weight_net(objective.features(scores, batch))
    normalised = token_weights(raw, 2.0, 0.25, 0.95)
    assert entropy_ratio(normalised).item() >= 0.95 - 1e-6
    expected = with_eos_weight(normalised, batch.target_ids == eos, 3.0)
    torch.testing.assert_close(parts.weights, expected.detach())
    assert parts.lm.item() == pytest.approx(lm_loss(scores.own_logprob, expected).item(), rel=1e-6)
    n = batch.target_ids.numel()
    assert bool((parts.weights[batch.target_ids == eos] >= 2.0 * n / (n + 2.0 * len(sequences)) - 1e-6).all())
    (grad_w,) = torch.autograd.grad(parts.total, weight_net.layers[0].weight)
    assert grad_w.abs().sum() > 0 and math.isfinite(grad_w.sum().item())


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(2, 3),
    st.integers(0, 2**31 - 1),
    st.floats(-5, 5, allow_nan=False, allow_infinity=False),
)
def test_sequence_disc_loss_is_the_bayes_posterior(rows, labels, seed, shift):
    """L_seq = CE of softmax over labels of each sample's summed log-probs; a per-token shift common to
    all labels changes nothing."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 4, (rows,), generator=generator)
    token_rows = torch.repeat_interleave(torch.arange(rows), lengths)
    logprobs = -torch.rand(len(token_rows), labels, generator=generator, dtype=torch.float64) * 3
    gold = torch.randint(0, labels, (rows,), generator=generator)
    loss = sequence_disc_loss(logprobs, token_rows, gold, rows)
    by_hand = []
    for row in range(rows):
        sums = logprobs[token_rows == row].sum(0)
        by_hand.append(-(sums[gold[row]] - torch.logsumexp(sums, 0)))
    assert loss.item() == pytest.approx(torch.stack(by_hand).mean().item(), rel=1e-9)
    shifted = sequence_disc_loss(logprobs + shift, token_rows, gold, rows)
    assert shifted.item() == pytest.approx(loss.item(), rel=1e-9, abs=1e-12)
