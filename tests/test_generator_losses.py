"""Generator tuning, the losses: token weights, L_disc, L_dist, and scoring under per-row label prompts.

Pinned to fp32 (``precision="fp32"``): the scoring tolerances (1e-5) are fp32's.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.generator import GeneratorConfig, GeneratorObjective, LabelPrompts, SequenceBuilder, collate, label_texts
from dawgen.generator.losses import (
    disc_loss,
    dist_loss_label_pairs,
    dist_loss_prompt_pairs,
    lm_loss,
    pooled_representations,
    token_disc_loss,
    token_weights,
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
