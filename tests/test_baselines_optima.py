"""OPTIMA: the adversarial perturbation, the pre-training step and its resume, the target pool read without
labels, and the baseline end to end.

Pinned to fp32 (``precision="fp32"``), like the other tiny-model training tests.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from dawgen.baselines import BASELINES, OptimaConfig, run_optima
from dawgen.baselines.optima import (
    PRETRAIN_DIR,
    OptimaTrainer,
    adversarial_perturbation,
    ascent_objective,
    initial_perturbation,
    project,
    target_inputs,
    text_mask,
)
from dawgen.classifier.adapter import load_prompt
from dawgen.classifier.encoding import UNLABELLED
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.constants import ADAPTER_DIR, RESULT_FILE
from dawgen.data.example import DataError, Example
from dawgen.data.readers import read_unlabelled
from dawgen.models.loading import load_model
from dawgen.tasks import Family, get_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")
RTE, MNLI = get_task("RTE"), get_task("MNLI")
SOURCE = [  # MNLI-style: the source task, labelled
    Example("A man is cutting bread in the kitchen.", "entailment", "A man is in the kitchen."),
    Example("The train left the station at noon.", "contradiction", "The train never left the station."),
    Example("Two children play football in the park.", "neutral", "The children play for a school team."),
]
TARGET = [  # RTE-style: the target task, whose inputs OPTIMA reads without labels
    Example("The shop was closed all week.", "not_entailment", "The shop sold apples on Monday."),
    Example("A woman reads a letter at home today.", "entailment", "A woman reads."),
    Example("The teacher answers the question with care.", "entailment", "Someone answers a question."),
    Example("My friend takes a book every day.", "not_entailment", "My friend never reads."),
]


def small(**overrides) -> OptimaConfig:
    settings = dict(
        source_data="unused", pool="unused", num_virtual_tokens=4, batch_size=4, max_steps=4, eval_every=2,
        pretrain_steps=4, pretrain_batch_size=3, source_k=2, precision="fp32", device="cpu",
    )  # fmt: skip
    return OptimaConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def setup(loaded):
    """A source scorer (MNLI), the target inputs (RTE, unlabeled), a prompt and a random discriminator."""
    scorer = VerbalizerScorer(loaded, MNLI, max_length=64, precision="fp32", device="cpu")
    target = target_inputs(loaded, RTE, TARGET, small())
    prompt = torch.randn(4, loaded.embedding_dim, generator=torch.Generator().manual_seed(3))
    discriminator = torch.nn.Linear(loaded.model.config.hidden_size, 2)
    return scorer, target, prompt, discriminator


def test_the_ball_projection_keeps_short_perturbations_and_shortens_long_ones():
    delta = torch.stack([torch.full((3, 4), 0.1), torch.full((3, 4), 2.0)])  # norms 0.35 and 6.9
    projected = project(delta, 1.0)
    assert torch.equal(projected[0], delta[0])
    assert projected[1].norm().item() == pytest.approx(1.0)
    assert torch.allclose(projected[1] / projected[1][0, 0], delta[1] / 2)  # the same direction


def test_the_adversarial_step_raises_the_objective_inside_the_ball(setup):
    scorer, _, prompt, discriminator = setup
    batch = scorer.collate(scorer.encoder.encode_all(SOURCE), 4)
    clean = scorer.answer_outputs(batch, prompt)[0].detach()
    epsilon = 0.5

    def objective(delta):
        return ascent_objective(scorer, discriminator, batch, prompt, clean, delta, adv_weight=1.0).item()

    zero = torch.zeros(*batch.input_ids.shape, scorer.embedding_dim)
    # from delta = 0 (no random start): the KL term is flat there, l_adv is not
    config = small(epsilon=epsilon, init_scale=0.0, adv_lr=0.05, adv_steps=1)
    delta = adversarial_perturbation(scorer, discriminator, batch, prompt, clean, config, torch.Generator())
    norms = delta.flatten(1).norm(dim=1)
    assert (norms > 0).all() and (norms <= epsilon + 1e-6).all()
    assert objective(delta) > objective(zero)
    noise = torch.randn(delta.shape, generator=torch.Generator().manual_seed(2)) * text_mask(batch)
    same_norm = noise * (norms / noise.flatten(1).norm(dim=1)).view(-1, 1, 1)
    assert objective(delta) > objective(same_norm)  # the gradient's direction, not just any move
    assert torch.equal(delta * (1 - text_mask(batch)), torch.zeros_like(delta))  # padding and prompt slots stay
    # from a random start, three steps climb above where they started
    config = small(epsilon=epsilon, init_scale=0.5, adv_lr=0.05, adv_steps=3)
    start = initial_perturbation(batch, scorer.embedding_dim, config, torch.Generator().manual_seed(1))
    delta = adversarial_perturbation(
        scorer, discriminator, batch, prompt, clean, config, torch.Generator().manual_seed(1)
    )
    assert objective(delta) > objective(start) > objective(zero)
    assert (delta.flatten(1).norm(dim=1) <= epsilon + 1e-6).all()


@pytest.mark.parametrize("family", list(Family))
def test_answer_outputs_are_the_label_logits_and_a_hidden_state(tiny_model_dirs, family):
    loaded = load_model(str(tiny_model_dirs[family]))
    scorer = VerbalizerScorer(loaded, RTE, max_length=64, precision="fp32", device="cpu")
    batch = scorer.collate(scorer.encoder.encode_all(TARGET), 4)
    prompt = torch.randn(4, scorer.embedding_dim)
    logits, hidden = scorer.answer_outputs(batch, prompt)
    torch.testing.assert_close(logits, scorer.label_logits(batch, prompt))
    assert hidden.shape == (len(TARGET), loaded.model.config.hidden_size)
    at_slots = torch.randn(*batch.input_ids.shape, scorer.embedding_dim) * batch.prompt_slots.unsqueeze(-1)
    torch.testing.assert_close(scorer.answer_outputs(batch, prompt, at_slots)[0], logits)  # the prompt overwrites them
    moved = torch.randn(*batch.input_ids.shape, scorer.embedding_dim) * text_mask(batch)
    assert not torch.allclose(scorer.answer_outputs(batch, prompt, moved)[0], logits)


def test_the_total_loss_falls_over_a_few_steps(loaded, setup):
    scorer, target, _, _ = setup
    config = small(max_steps=6, eval_every=6, batch_size=3, optimizer="adamw", learning_rate=0.05)
    trainer = OptimaTrainer(scorer, config, target=target)
    source = scorer.encoder.encode_all(SOURCE)

    def loss():
        return trainer.terms(source, target.items[:3], torch.Generator().manual_seed(5)).loss.item()

    before = loss()
    discriminator = trainer.discriminator.weight.detach().clone()
    trainer.train(source, source)
    assert loss() < before
    assert not torch.equal(trainer.discriminator.weight, discriminator)  # the discriminator trains beside the prompt
    records = trainer.state.history
    assert records and records[-1]["step"] == 6


def test_pretraining_resumes_to_the_same_prompt_and_discriminator(setup, tmp_path):
    scorer, target, _, _ = setup
    config = small(max_steps=7, eval_every=3, batch_size=3, optimizer="adamw", learning_rate=0.05)
    source = scorer.encoder.encode_all(SOURCE)
    reference = OptimaTrainer(scorer, config, target=target)
    best = reference.train(source, source)

    class Crash(Exception):
        pass

    def crash_at_5(step, record):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        OptimaTrainer(scorer, config, tmp_path, target=target).train(source, source, crash_at_5)
    resumed = OptimaTrainer(scorer, config, tmp_path, target=target)
    torch.testing.assert_close(resumed.train(source, source), best)
    torch.testing.assert_close(resumed.discriminator.weight, reference.discriminator.weight)
    torch.testing.assert_close(resumed.prompt, reference.prompt)


def test_the_target_pool_is_read_without_its_labels(tmp_path):
    rows = [{"sentence1": e.text_a, "sentence2": e.text_b, "label": "not a label"} for e in TARGET]
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    unlabelled = read_unlabelled(RTE, tmp_path / "pool.jsonl")
    assert [(e.text_a, e.text_b, e.label) for e in unlabelled] == [(e.text_a, e.text_b, "") for e in TARGET]
    (tmp_path / "nolabel.jsonl").write_text("".join(json.dumps({"text_a": e.text_a, "text_b": e.text_b}) + "\n"
                                                    for e in TARGET))  # fmt: skip
    assert read_unlabelled(RTE, tmp_path / "nolabel.jsonl") == unlabelled  # detected columns, no label at all
    (tmp_path / "firsts.txt").write_text("\n".join(e.text_a for e in TARGET))
    with pytest.raises(DataError, match=r"sentence-pair task, but a \.txt file holds single texts"):
        read_unlabelled(RTE, tmp_path / "firsts.txt")


def test_target_inputs_carry_no_label(setup):
    _, target, _, _ = setup
    assert len(target.items) == len(TARGET) and {item.label for item in target.items} == {UNLABELLED}


def write_source(folder, per_label: int = 4):
    """An MNLI-style labelled file with ``per_label`` rows of every label."""
    rows = [{"premise": f"{e.text_a} ({i})", "hypothesis": e.text_b, "label": e.label}
            for i in range(per_label) for e in SOURCE]  # fmt: skip
    path = folder / "mnli.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_pool(folder, label: str):
    rows = [{"sentence1": e.text_a, "sentence2": e.text_b, "label": label} for e in TARGET * 2]
    path = folder / "pool.json"
    path.write_text(json.dumps(rows))
    return path


def test_optima_pretrains_on_the_source_then_tunes_on_the_task(loaded, tmp_path):
    before = {name: value.clone() for name, value in loaded.model.state_dict().items()}
    config = small(source_data=str(write_source(tmp_path)), pool=str(write_pool(tmp_path, "entailment")))
    out = tmp_path / "run"
    result = run_optima(loaded, RTE, TARGET, TARGET, TARGET, config, out, show_progress=False)
    assert all(torch.equal(before[name], value) for name, value in loaded.model.state_dict().items())
    assert result["method"] == "optima" and result["trainable_parameters"] == 4 * loaded.embedding_dim
    pretrain = result["pretrain"]
    assert pretrain["source_task"] == "MNLI" and pretrain["source_examples"] == 6 and pretrain["target_inputs"] == 8
    assert pretrain["adapter"] == str(out / PRETRAIN_DIR / ADAPTER_DIR)
    saved = json.loads((out / PRETRAIN_DIR / RESULT_FILE).read_text())
    assert saved["method"] == "optima-pretrain" and saved["config"]["max_steps"] == 4 and saved["config"]["target"]
    assert load_prompt(out / PRETRAIN_DIR / ADAPTER_DIR).shape == (4, loaded.embedding_dim)
    assert all(math.isfinite(value) for value in (*result["dev"].values(), *result["test"].values()))
    assert json.loads((out / RESULT_FILE).read_text()) == result
    steps = [json.loads(line) for line in (out / PRETRAIN_DIR / "metrics.jsonl").read_text().splitlines()]
    assert {"ce", "kl", "adv", "disc_loss", "delta_norm"} <= set(steps[0])
    # the pool's labels are never read: garbage labels give the same run, to the last digit
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    again = run_optima(loaded, RTE, TARGET, TARGET, TARGET, dataclasses.replace(
        config, pool=str(write_pool(garbage, "%%garbage%%"))), garbage / "run", show_progress=False)  # fmt: skip
    assert again["test"] == result["test"] and again["dev"] == result["dev"]
    assert torch.equal(load_prompt(garbage / "run" / ADAPTER_DIR), load_prompt(out / ADAPTER_DIR))
    # a finished run is read back; another pool's inputs are another run
    assert run_optima(loaded, RTE, TARGET, TARGET, TARGET, config, out, show_progress=False) == result
    other = dataclasses.replace(config, pool=str(write_source(tmp_path / "garbage")))
    with pytest.raises(ValueError, match="already holds a finished run with other settings"):
        run_optima(loaded, RTE, TARGET, TARGET, TARGET, other, out, show_progress=False)


def test_optima_settings_are_checked():
    assert BASELINES["optima"].config is OptimaConfig
    with pytest.raises(ValueError, match="optima needs source_data"):
        OptimaConfig(pool="p")
    with pytest.raises(ValueError, match="optima needs pool"):
        OptimaConfig(source_data="s")
    with pytest.raises(ValueError, match="set peft to prompt, not 'lora'"):
        small(peft="lora")
    with pytest.raises(ValueError, match="not from the hub"):
        small(pool="hf:glue")
    with pytest.raises(ValueError, match="epsilon must be positive"):
        small(epsilon=0)
    with pytest.raises(ValueError, match="adv_steps must be at least 1"):
        small(adv_steps=0)
    with pytest.raises(ValueError, match="kl_weight must be non-negative"):
        small(kl_weight=-1)
    with pytest.raises(ValueError, match="OptimaConfig"):
        run_optima(None, RTE, TARGET, TARGET)
    pretrain = small(max_steps=40, eval_every=10, pretrain_steps=6, pretrain_batch_size=5).pretrain_config()
    assert (pretrain.max_steps, pretrain.eval_every, pretrain.batch_size) == (6, 6, 5)
