"""Generator tuning, data side: settings, training sequences, label-balanced batches, label prompts."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dawgen.config import ConfigError, config_from_dict
from dawgen.data.example import Example
from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.generator import (
    DiscForm,
    DistPairing,
    GeneratorConfig,
    LabelPrompts,
    SequenceBuilder,
    Variant,
    balanced_epoch,
    collate,
    label_texts,
)
from dawgen.generator.sequences import GenSequence, steps_per_epoch
from dawgen.models.loading import load_model
from dawgen.tasks import Family

TASK = demo_task()


@pytest.fixture(scope="module")
def tokenizer(tiny_decoder_dir):
    return load_model(str(tiny_decoder_dir)).tokenizer


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_config_defaults_and_validation():
    config = GeneratorConfig()
    assert (config.variant, config.disc_form, config.dist_pairing) == (Variant.DAWGEN, DiscForm.CE, DistPairing.LABEL)
    assert (config.num_prompt_tokens, config.per_label_batch, config.epochs) == (20, 2, 20)
    assert (config.learning_rate, config.weight_net_lr, config.lookahead_lr) == (5e-3, 1e-2, 2e-2)
    assert (config.lambda_dist, config.dist_margin, config.first_sentence_tokens, config.max_length) == (1, 1, 100, 160)
    options = {"variant": "fewgen", "disc_form": "ratio", "dist_pairing": "prompt", "epochs": "3"}
    parsed = config_from_dict(GeneratorConfig, options)
    assert (parsed.variant, parsed.disc_form, parsed.dist_pairing, parsed.epochs) == ("fewgen", "ratio", "prompt", 3)
    assert not GeneratorConfig(variant="plain").uses_weight_net and not GeneratorConfig(variant="fewgen").uses_dist
    for bad in ({"variant": "mixed"}, {"epochs": 0}, {"lookahead_lr": 0}, {"lambda_dist": -1}, {"precision": "fp8"}):
        with pytest.raises(ConfigError):
            config_from_dict(GeneratorConfig, bad)


def test_pair_sequence_layout_and_truncation(tokenizer):
    builder = SequenceBuilder(TASK, tokenizer, first_sentence_tokens=5, max_length=24)
    example = Example("A man is cutting bread in the kitchen today.", "not_entailment", "The man is at home.")
    seq = builder.encode(example)
    connector = ids(tokenizer, TASK.generator.connector)
    assert seq.context == ids(tokenizer, example.text_a)[:5] + connector  # first sentence cut to its budget
    assert seq.target == [*ids(tokenizer, " " + example.text_b), tokenizer.eos_token_id]  # s2 and eos
    assert seq.label == TASK.label_index("not_entailment")
    long = builder.encode(replace(example, text_b=" ".join(["bread"] * 40)))
    assert len(long.context) + len(long.target) == 24  # the whole is cut to max_length
    assert long.target[-1] != tokenizer.eos_token_id  # cut mid-sentence: no eos
    with pytest.raises(ValueError, match="no room"):
        SequenceBuilder(TASK, tokenizer, first_sentence_tokens=30, max_length=20)


def test_single_sentence_sequence_is_all_target(tokenizer):
    single = replace(TASK, pair=False, templates={Family.DECODER: "{text_a} Answer:{answer}"})
    seq = SequenceBuilder(single, tokenizer).encode(Example("It was great.", "entailment"))
    assert seq.context == [] and seq.target == [*ids(tokenizer, "It was great."), tokenizer.eos_token_id]


def test_collate_marks_targets_and_prompt_slots():
    sequences = [GenSequence([5, 6], [7, 8, 1], 0), GenSequence([9], [4, 1], 1)]
    batch = collate(sequences, num_prompt_tokens=2, pad_id=0)
    assert batch.input_ids.tolist() == [[0, 0, 5, 6, 7, 8, 1], [0, 0, 9, 4, 1, 0, 0]]
    assert batch.attention_mask.tolist() == [[1] * 7, [1, 1, 1, 1, 1, 0, 0]]
    assert batch.prompt_slots[:, :2].all() and not batch.prompt_slots[:, 2:].any()
    assert batch.target_rows.tolist() == [0, 0, 0, 1, 1]
    assert batch.target_positions.tolist() == [4, 5, 6, 3, 4]
    assert batch.input_ids[batch.target_rows, batch.target_positions].tolist() == batch.target_ids.tolist()
    assert batch.target_labels.tolist() == [0, 0, 0, 1, 1]


def test_balanced_epochs_cover_every_example_with_equal_labels():
    sequences = [GenSequence([1], [2], label) for label in (0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 2)]
    assert steps_per_epoch(sequences, 2, 3) == 3
    epoch = balanced_epoch(sequences, 2, 3, seed=13, epoch=0)
    assert all([sequences[i].label for i in batch] == [0, 0, 1, 1, 2, 2] for batch in epoch)
    assert {i for batch in epoch for i in batch} == set(range(len(sequences)))  # smaller labels start over
    assert epoch == balanced_epoch(sequences, 2, 3, seed=13, epoch=0)
    assert epoch != balanced_epoch(sequences, 2, 3, seed=13, epoch=1)
    with pytest.raises(ValueError, match="every label"):
        steps_per_epoch(sequences[:5], 2, 3)


def test_label_prompts_start_from_the_descriptions(tiny_decoder_dir):
    loaded = load_model(str(tiny_decoder_dir))
    texts = label_texts(TASK)
    assert texts == [TASK.generator.descriptions[label] for label in TASK.labels]
    assert label_texts(replace(TASK, generator=replace(TASK.generator, descriptions={}))) == list(TASK.labels)
    table = loaded.model.get_input_embeddings().weight
    for length in (3, 25):  # cut, and repeated
        prompts = LabelPrompts.from_texts(loaded.model, loaded.tokenizer, texts, length)
        assert prompts.weight.shape == (2, length, table.shape[1]) and prompts.weight.requires_grad
        for row, text in enumerate(texts):
            tokens = ids(loaded.tokenizer, text)
            expected = table[torch.tensor((tokens * (length // len(tokens) + 1))[:length])]
            assert torch.equal(prompts.weight[row].detach(), expected)
    assert torch.equal(prompts(torch.tensor([1, 0, 1])), prompts.weight[[1, 0, 1]])


def test_demo_data_builds(tokenizer):
    split = load_fewshot(TASK, demo_dir())
    sequences = SequenceBuilder(TASK, tokenizer).encode_all(split.train)
    assert len(sequences) == 32 and all(s.target[-1] == tokenizer.eos_token_id for s in sequences)
