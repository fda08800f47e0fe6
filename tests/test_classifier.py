"""The prompt-tuned classifier on tiny random models of all three families.

Pinned to fp32 (``precision="fp32"``): the batched-vs-alone and resume tolerances are fp32's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from peft import PeftModel
from tests_support import RTE_PAIRS

from dawgen.classifier.adapter import load_prompt, save_prompt
from dawgen.classifier.batching import bucketed_order, collate
from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.encoding import TaskEncoder
from dawgen.classifier.in_context import sample_demonstrations
from dawgen.classifier.run import prompt_tune
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.constants import ADAPTER_DIR, CHECKPOINT_DIR, METRICS_FILE, RESULT_FILE
from dawgen.data.example import Example
from dawgen.models.loading import load_model
from dawgen.models.precision import machine_record
from dawgen.models.soft_prompt import insert_soft_prompt
from dawgen.tasks import Family, get_task
from dawgen.tasks.schema import render

FAMILIES = [Family.DECODER, Family.SEQ2SEQ, Family.MASKED]
RTE = get_task("RTE")
SICK = get_task("SICK")

EXAMPLES = RTE_PAIRS * 4


@pytest.fixture(scope="module", params=FAMILIES, ids=lambda f: f.value)
def scorer(request, tiny_model_dirs) -> VerbalizerScorer:
    loaded = load_model(str(tiny_model_dirs[request.param]))
    return VerbalizerScorer(loaded, RTE, max_length=64, precision="fp32", device="cpu")


def small_config(**overrides) -> PromptTuneConfig:
    settings = dict(num_virtual_tokens=4, batch_size=4, max_steps=8, eval_every=4, precision="fp32", device="cpu")
    return PromptTuneConfig(**{**settings, **overrides})


def test_answer_slot_and_label_tokens(scorer):
    encoded = scorer.encoder.encode(EXAMPLES[0])
    tokenizer = scorer.encoder.tokenizer
    if scorer.family is Family.MASKED:
        assert encoded.input_ids[encoded.answer_index] == tokenizer.mask_token_id
    elif scorer.family is Family.DECODER:
        assert encoded.answer_index == len(encoded.input_ids) - 1
        assert tokenizer.decode(encoded.input_ids).rstrip().endswith("Answer:")
    assert len(set(scorer.encoder.label_token_ids)) == RTE.num_labels


def test_truncation_keeps_the_answer_slot(scorer):
    long = Example(" ".join(["word"] * 300) + ".", "entailment", "A short hypothesis.")
    encoded = scorer.encoder.encode(long)
    assert len(encoded.input_ids) <= scorer.encoder.max_length
    if scorer.family is Family.DECODER:
        assert scorer.encoder.tokenizer.decode(encoded.input_ids).rstrip().endswith("Answer:")


def test_demonstrations_that_do_not_fit_are_dropped_not_the_example(scorer):
    """In-context prompting with more demonstrations than max_length holds: the farthest are dropped, the
    test example stays whole and its answer slot is kept; when all fit, they all stand in front."""
    encoder = TaskEncoder(RTE, scorer.encoder.tokenizer, scorer.family, max_length=160)
    query = RTE_PAIRS[0]
    alone = encoder.encode(query)
    rng = np.random.default_rng(0)
    demonstrations = sample_demonstrations(EXAMPLES, RTE.labels, None, rng)  # every example of each label: 8 + 8
    assert len(demonstrations) == 16
    assert all({d.label for d in demonstrations[i : i + 2]} == set(RTE.labels) for i in range(0, 16, 2))
    encoded = encoder.encode(query, demonstrations)
    assert len(encoded.input_ids) <= encoder.max_length and 0 < encoded.demonstrations < 16
    tail = encoder._token_ids(encoder.render_demonstration(demonstrations[-1]))  # the nearest one is kept
    assert len(tail) < len(encoded.input_ids)
    if scorer.family is Family.DECODER:  # the example itself is whole, right before the answer slot
        assert encoded.input_ids[-len(alone.input_ids) + 1 :] == alone.input_ids[1:]
        assert encoder.tokenizer.decode(encoded.input_ids).rstrip().endswith("Answer:")
    if scorer.family is Family.MASKED:
        assert encoded.input_ids[encoded.answer_index] == encoder.tokenizer.mask_token_id
    two = demonstrations[-2:]
    prefix = "".join(encoder.render_demonstration(d) + "\n\n" for d in two)
    expected = encoder._token_ids(prefix + render(encoder.template, query.text_a, query.text_b, encoder.answer_slot))
    fitted = encoder.encode(query, two)
    assert fitted.input_ids == expected and fitted.demonstrations == 2
    with pytest.raises(ValueError, match="needs 9 training example"):
        sample_demonstrations(EXAMPLES, RTE.labels, 9, rng)
    with pytest.raises(ValueError, match="at least 1"):
        sample_demonstrations(EXAMPLES, RTE.labels, 0, rng)


def test_padding_does_not_change_scores(scorer):
    """An example scores the same alone and inside a padded batch, with and without a prompt."""
    items = scorer.encoder.encode_all(EXAMPLES[:4])
    prompt = torch.randn(3, scorer.embedding_dim) * 0.1
    for p, n in ((None, 0), (prompt, 3)):
        batched = scorer.label_logits(scorer.collate(items, n), p)
        alone = torch.cat([scorer.label_logits(scorer.collate([item], n), p) for item in items])
        torch.testing.assert_close(batched, alone, atol=1e-4, rtol=1e-4)


def test_collate_layout():
    from dawgen.classifier.encoding import Encoded

    items = [Encoded([5, 6, 7], 2, 0), Encoded([8], 0, 1)]
    left = collate(items, Family.DECODER, pad_id=0, num_virtual_tokens=2)
    assert left.input_ids.tolist() == [[0, 0, 5, 6, 7], [0, 0, 0, 0, 8]]
    assert left.prompt_slots.tolist()[1] == [False, False, True, True, False]
    assert left.answer_index.tolist() == [4, 4]
    right = collate(items, Family.MASKED, pad_id=0, num_virtual_tokens=2)
    assert right.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert right.answer_index.tolist() == [4, 2]


def test_bucketing_groups_similar_lengths():
    import numpy as np

    lengths = list(range(100))
    batches = bucketed_order(lengths, 10, np.random.default_rng(0), window=10)
    assert sorted(i for b in batches for i in b) == lengths
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) == 9 for b in batches)


def test_insert_soft_prompt_is_differentiable():
    embeds = torch.zeros(2, 5, 3)
    slots = torch.tensor([[0, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    prompt = torch.arange(6.0).reshape(2, 3).requires_grad_()
    out = insert_soft_prompt(embeds, slots, prompt)
    assert out[0, 1].tolist() == [0, 1, 2] and out[1, 1].tolist() == [3, 4, 5]
    out.sum().backward()
    assert prompt.grad.tolist() == [[2, 2, 2], [2, 2, 2]]


def test_decoder_prompt_matches_peft_forward(tiny_model_dirs):
    """Our prompt insertion gives the logits PEFT's own prompt-tuning forward gives."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    scorer = VerbalizerScorer(loaded, RTE, max_length=64, precision="fp32", device="cpu")
    item = scorer.encoder.encode(EXAMPLES[0])
    prompt = torch.randn(4, scorer.embedding_dim) * 0.1
    ours = scorer.label_logits(scorer.collate([item], 4), prompt)
    fresh = load_model(str(tiny_model_dirs[Family.DECODER])).model
    peft_model = get_peft_model(fresh, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4))
    peft_model.prompt_encoder["default"].embedding.weight.data.copy_(prompt)
    logits = peft_model(input_ids=torch.tensor([item.input_ids])).logits[:, -1, scorer.label_ids]
    torch.testing.assert_close(ours, logits, atol=1e-4, rtol=1e-4)


def test_training_lowers_loss_and_freezes_model(scorer):
    before = {k: v.clone() for k, v in scorer.model.state_dict().items()}
    trainer = PromptTrainer(scorer, small_config(max_steps=12, learning_rate=0.3))
    # one label only: a random tiny model cannot read the texts, but the prompt can learn the prior
    items = scorer.encoder.encode_all([e for e in EXAMPLES if e.label == "entailment"])
    start = trainer.evaluate(items)["loss"]
    trainer.train(items, items)
    assert trainer.evaluate(items)["loss"] < 0.9 * start
    assert all(torch.equal(before[k], v) for k, v in scorer.model.state_dict().items())


def test_adapter_round_trip_with_peft(tiny_model_dirs, tmp_path):
    for family in FAMILIES:
        loaded = load_model(str(tiny_model_dirs[family]))
        prompt = torch.randn(5, loaded.model.get_input_embeddings().weight.shape[1])
        save_prompt(prompt, family, loaded.name, tmp_path / family.value)
        assert torch.equal(load_prompt(tmp_path / family.value), prompt)
        peft_model = PeftModel.from_pretrained(loaded.model, str(tmp_path / family.value))
        weight = peft_model.prompt_encoder["default"].embedding.weight
        assert weight.shape == prompt.shape and torch.allclose(weight.float(), prompt)


def test_resume_after_interrupt_matches_uninterrupted_run(tiny_model_dirs, tmp_path):
    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    scorer = VerbalizerScorer(loaded, RTE, max_length=64, precision="fp32", device="cpu")
    items = scorer.encoder.encode_all(EXAMPLES)
    config = small_config(max_steps=10, eval_every=3, optimizer="adamw", learning_rate=0.05)
    reference = PromptTrainer(scorer, config).train(items, items)

    class Crash(Exception):
        pass

    def crash_at_8(step, record):
        if step == 8:
            raise Crash

    with pytest.raises(Crash):
        PromptTrainer(scorer, config, tmp_path).train(items, items, crash_at_8)
    resumed = PromptTrainer(scorer, config, tmp_path)
    best = resumed.train(items, items)
    torch.testing.assert_close(best, reference)
    records = [json.loads(line) for line in (tmp_path / METRICS_FILE).read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6, 9, 10]
    assert [r["step"] for r in records if r["kind"] == "step"] == list(range(1, 11))


def test_prompt_tune_writes_a_complete_run(tiny_model_dirs, tmp_path):
    loaded = load_model(str(tiny_model_dirs[Family.MASKED]))
    outcome = prompt_tune(
        loaded, RTE, EXAMPLES, EXAMPLES, test=EXAMPLES, config=small_config(), out_dir=tmp_path, show_progress=False
    )
    assert set(outcome.result["test"]) == {"accuracy", "loss", "balanced_accuracy", "top_prediction_share"}
    assert (tmp_path / ADAPTER_DIR / "adapter_config.json").exists()
    assert not (tmp_path / CHECKPOINT_DIR).exists()
    saved = json.loads((tmp_path / RESULT_FILE).read_text())
    assert saved["trainable_parameters"] == 4 * loaded.model.get_input_embeddings().weight.shape[1]
    assert saved["compute"] == {"precision": "fp32", "device": "cpu", **machine_record()}  # pinned fp32
    again = prompt_tune(loaded, RTE, EXAMPLES, EXAMPLES, config=small_config(), out_dir=tmp_path)
    assert again.result == saved and torch.equal(again.prompt, outcome.prompt)
    with pytest.raises(ValueError, match="other settings"):
        prompt_tune(loaded, RTE, EXAMPLES, EXAMPLES, config=small_config(max_steps=9), out_dir=tmp_path)


def test_three_labels_and_label_smoothing(tiny_model_dirs):
    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    scorer = VerbalizerScorer(loaded, SICK, max_length=64, precision="fp32", device="cpu")
    examples = [Example("A dog runs.", label, "An animal moves.") for label in SICK.labels] * 2
    trainer = PromptTrainer(scorer, small_config(label_smoothing=0.1, max_steps=2, eval_every=1))
    items = scorer.encoder.encode_all(examples)
    # the smoothed loss is the cross-entropy against (1 - 0.1) one-hot + 0.1 / 3 everywhere
    logits = scorer.label_logits(scorer.collate(items, trainer.num_virtual_tokens), trainer.prompt)
    target = torch.full((len(items), 3), 0.1 / 3)
    target[torch.arange(len(items)), [item.label for item in items]] += 0.9
    smoothed = -(target * logits.log_softmax(-1)).sum(-1).mean()
    torch.testing.assert_close(trainer.loss(items), smoothed)
    best = trainer.train(items, items)
    dev = trainer.state.best_dev
    correct = dev["dev_accuracy"] * len(items) / 100  # accuracy is k / 6 in percent
    assert abs(correct - round(correct)) < 1e-6 and 0 <= round(correct) <= len(items)
    assert [record["step"] for record in trainer.state.history] == [1, 2]
    assert max(record["dev_accuracy"] for record in trainer.state.history) == dev["dev_accuracy"]
    again = trainer.evaluate(items, best)  # the kept prompt scores what was recorded for it
    assert again["accuracy"] == pytest.approx(dev["dev_accuracy"])
    assert again["loss"] == pytest.approx(dev["dev_loss"], rel=1e-5)


def test_encoder_rejects_label_words_sharing_a_token(tiny_model_dirs):
    from dataclasses import replace

    from dawgen.tasks import TaskError

    loaded = load_model(str(tiny_model_dirs[Family.DECODER]))
    task = replace(RTE, label_words={"entailment": "Yes", "not_entailment": "Yes!"})
    with pytest.raises(TaskError, match="share their first token"):
        TaskEncoder(task, loaded.tokenizer, Family.DECODER)
