"""Deep label prompts (``prompt_depth: deep``): key/value prefixes at every layer plus per-label
connector embeddings. At initialisation they are the model's own keys/values on the label text, so a
deep prompt must score and generate exactly as the input prompt made from the same text; after that
they train, save, load and resume like input prompts.

Pinned to fp32; the gradient check runs in float64.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from test_generator_bilevel import _float64_rms_norm, assert_central_differences
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.generator import (
    GeneratorConfig,
    GeneratorObjective,
    GeneratorTrainer,
    LabelPrompts,
    SequenceBuilder,
    TunedGenerator,
    collate,
    label_texts,
    load_generator,
    lookahead,
    make_weight_net,
    save_generator,
)
from dawgen.generator.config import PromptDepth
from dawgen.generator.prompts import PromptLayout, connector_slots, own_label_passes, score_targets
from dawgen.models.kv_prefix import KVShape, prefix_cache, text_key_values
from dawgen.models.loading import load_model
from dawgen.synthesis import GenerationConfig, generate_synthetic
from dawgen.synthesis.decoding import PromptCache, SamplingSettings, generate_batch
from dawgen.synthesis.writer import rejected_path
from dawgen.tasks.schema import Family

TASK = demo_task()
SPLIT = load_fewshot(TASK, demo_dir())
TRAIN = [*SPLIT.train[:4], *SPLIT.train[16:20]]
DEV = [*SPLIT.dev[:3], *SPLIT.dev[16:19]]
TOKENS = 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def both_prompts(loaded, dtype=torch.float32) -> tuple[LabelPrompts, LabelPrompts, SequenceBuilder]:
    builder = SequenceBuilder(TASK, loaded.tokenizer)
    texts = label_texts(TASK)
    shallow = LabelPrompts.from_texts(loaded.model, loaded.tokenizer, texts, TOKENS).to(dtype)
    deep = LabelPrompts.from_texts(loaded.model, loaded.tokenizer, texts, TOKENS, "deep", builder.connector).to(dtype)
    return shallow, deep, builder


def test_text_key_values_continue_the_text(loaded):
    """A prefix of a text's own keys/values gives the continuation the logits it has after the text."""
    tokenizer, model = loaded.tokenizer, loaded.model
    head = tokenizer("The man reads a book", add_special_tokens=False)["input_ids"]
    tail = tokenizer(" at home today.", add_special_tokens=False)["input_ids"]
    shape, flat = text_key_values(model, head)
    assert flat.shape == (len(head), shape.width) and shape.layers == model.config.num_hidden_layers
    with torch.no_grad():
        full = model(input_ids=torch.tensor([head + tail])).logits[0, len(head) :]
        cache = prefix_cache(model, flat[None], shape)
        mask = torch.ones(1, len(head) + len(tail), dtype=torch.long)
        after = model(input_ids=torch.tensor([tail]), attention_mask=mask, past_key_values=cache).logits[0]
    torch.testing.assert_close(after, full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="width"):
        prefix_cache(model, flat[None, :, :-1], shape)


def test_layout_splits_and_round_trips():
    layout = PromptLayout(PromptDepth.DEEP, 4, 6, KVShape(2, 3, 5), infix_tokens=2)
    assert layout.row_shape() == (4 * 60 + 2 * 6,) and layout.input_slots == 0
    prompts = torch.arange(3 * layout.row_shape()[0], dtype=torch.float32).view(3, -1)
    prefix, infix = layout.split(prompts)
    assert prefix.shape == (3, 4, 60) and infix.shape == (3, 2, 6)
    assert torch.equal(torch.cat([prefix.flatten(1), infix.flatten(1)], 1), prompts)
    assert PromptLayout.from_dict(layout.to_dict()) == layout
    with pytest.raises(ValueError, match="do not fit"):
        layout.split(prompts[:, 1:])
    with pytest.raises(ValueError, match="key/value shape"):
        PromptLayout(PromptDepth.DEEP, 4, 6)


def test_deep_prompts_start_where_input_prompts_start(loaded):
    """Scored under either initialisation, every target token gets the same log-probability."""
    shallow, deep, builder = both_prompts(loaded)
    sequences = builder.encode_all(TRAIN)
    pad = loaded.tokenizer.pad_token_id
    scores = []
    for prompts, slots in ((shallow, TOKENS), (deep, 0)):
        batch = collate(sequences, slots, pad)
        with torch.no_grad():
            logprob = score_targets(loaded.model, batch, prompts.weight, own_label_passes(batch), None, prompts.layout)
        scores.append(logprob.logprob)
    torch.testing.assert_close(scores[1], scores[0], atol=1e-5, rtol=1e-5)
    slots = connector_slots(collate(sequences, 0, pad), len(builder.connector))
    assert slots.sum(1).tolist() == [len(builder.connector)] * len(sequences)


def test_plain_loss_of_a_deep_prompt_is_the_lm_loss(loaded):
    """``plain``'s loss under an untrained deep prompt = the LM loss of ``[label text] s1 connector s2 eos``."""
    _, deep, builder = both_prompts(loaded)
    config = GeneratorConfig(variant="plain", num_prompt_tokens=TOKENS, precision="fp32", prompt_depth="deep")
    objective = GeneratorObjective(loaded.model, config, TASK.num_labels, None, deep.layout)
    sequences = builder.encode_all(TRAIN[:2])
    batch = collate(sequences, objective.prompt_slots, loaded.tokenizer.pad_token_id)
    with torch.no_grad():
        loss = objective.loss(objective.score(deep.weight, batch), batch, None, False).total
    nll = []
    for seq in sequences:
        text = label_texts(TASK)[seq.label]
        ids = (loaded.tokenizer(text, add_special_tokens=False)["input_ids"] * TOKENS)[:TOKENS]
        tokens = ids + seq.context + seq.target
        with torch.no_grad():
            logits = loaded.model(input_ids=torch.tensor([tokens])).logits[0]
        start = len(tokens) - len(seq.target)
        logprobs = torch.log_softmax(logits[start - 1 : -1], -1)
        nll += (-logprobs.gather(1, torch.tensor(seq.target)[:, None])).squeeze(1).tolist()
    assert loss.item() == pytest.approx(sum(nll) / len(nll), rel=1e-5)


@pytest.mark.parametrize("variant", ["dawgen", "fewgen"])
def test_deep_lookahead_gradient_matches_finite_differences(tiny_decoder_dir, loaded, variant, monkeypatch):
    """W's gradient through the look-ahead over deep prompts agrees with central differences (float64)."""
    monkeypatch.setattr(LlamaRMSNorm, "forward", _float64_rms_norm)
    model = loaded.model.to(torch.float64)
    try:
        _, deep, builder = both_prompts(loaded, torch.float64)
        config = GeneratorConfig(variant=variant, num_prompt_tokens=TOKENS, precision="fp32", prompt_depth="deep")
        objective = GeneratorObjective(model, config, TASK.num_labels, None, deep.layout)
        net = make_weight_net(config, loaded.embedding_dim).to(torch.float64)
        sequences = builder.encode_all([TRAIN[0], TRAIN[1], TRAIN[4], TRAIN[5]])
        batch = collate(sequences, 0, loaded.tokenizer.pad_token_id)
        first = net.layers[0].weight
        (grad,) = torch.autograd.grad(lookahead(objective, deep.weight, batch, net).disc, first)
        assert grad.abs().max() > 0
        assert_central_differences(lambda: lookahead(objective, deep.weight, batch, net).disc, first, grad, 2)
    finally:
        model.to(torch.float32)


def deep_config(**overrides) -> GeneratorConfig:
    settings = {
        "num_prompt_tokens": TOKENS, "epochs": 3, "precision": "fp32", "device": "cpu", "learning_rate": 0.05,
        "prompt_depth": "deep",
    }  # fmt: skip
    return GeneratorConfig(**{**settings, **overrides})


def test_deep_training_round_trips_and_resumes(loaded, tmp_path):
    config = deep_config()
    reference = GeneratorTrainer(loaded, TASK, config)
    generator = reference.train(TRAIN, DEV)
    history = reference.state.history
    assert min(r["dev_loss"] for r in history[1:]) < history[0]["dev_loss"]
    save_generator(generator, tmp_path / "gen")
    back = load_generator(tmp_path / "gen")
    assert torch.equal(back.prompts, generator.prompts) and back.layout == generator.layout
    assert back.layout.deep and back.layout.infix_tokens == len(reference.builder.connector)
    assert back.config.prompt_depth is PromptDepth.DEEP

    class Crash(Exception):
        pass

    def crash_at_5(step, record):
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        GeneratorTrainer(loaded, TASK, config, tmp_path / "run").train(TRAIN, DEV, crash_at_5)
    resumed = GeneratorTrainer(loaded, TASK, config, tmp_path / "run")
    resumed.train(TRAIN, DEV)
    assert torch.equal(resumed.prompts.weight, reference.prompts.weight)
    assert torch.equal(resumed.best_prompts, reference.best_prompts)
    assert resumed.state.history == reference.state.history


def test_deep_prompt_cache_generates_what_the_input_prompt_does(talkative_dir):
    """Decoding under a deep prompt's cache (the prefix itself, connector replaced by the infix) at its
    initialisation gives the samples the input prompt of the same text gives, token for token."""
    loaded = load_model(str(talkative_dir))
    shallow, deep, builder = both_prompts(loaded)
    contexts = [builder.context_ids(e.text_a) for e in TRAIN[:4]]
    settings = SamplingSettings(loaded.tokenizer.eos_token_id, loaded.tokenizer.pad_token_id, max_new_tokens=8)
    prefix, infix = deep.layout.split(deep.weight.detach()[1:2])
    caches = [
        PromptCache(loaded.model, shallow.weight.detach()[1]),
        PromptCache.from_prefix(loaded.model, prefix[0], deep.layout.kv, infix[0]),
    ]
    rows = [generate_batch(loaded.model, cache, contexts, [1, 2, 3, 4], settings) for cache in caches]
    assert [r.tokens for r in rows[0]] == [r.tokens for r in rows[1]]
    assert any(r.tokens for r in rows[0])


def test_single_sentence_deep_context_starts_with_a_token(loaded):
    single = dataclasses.replace(TASK, pair=False, templates={Family.DECODER: "{text_a} Answer:{answer}"})
    assert SequenceBuilder(single, loaded.tokenizer).context_ids() == []
    assert SequenceBuilder(single, loaded.tokenizer, start_token=True).context_ids() == [loaded.tokenizer.bos_token_id]


def save_untuned(model_dir, folder, task=TASK, depth: str = "input") -> Path:
    """A generator folder with untuned label prompts of ``depth``."""
    loaded = load_model(str(model_dir))
    builder = SequenceBuilder(task, loaded.tokenizer, start_token=depth == "deep")
    prompts = LabelPrompts.from_texts(
        loaded.model, loaded.tokenizer, label_texts(task), TOKENS, depth, builder.connector
    )
    config = GeneratorConfig(variant="plain", num_prompt_tokens=TOKENS, prompt_depth=depth)
    generator = TunedGenerator(
        prompts.weight.detach(), None, config, str(model_dir), task.name, task.labels, task.generator.connector,
        task.pair, layout=prompts.layout,
    )  # fmt: skip
    return save_generator(generator, folder)


def test_stage_two_runs_deep_generators_as_input_ones(talkative_dir, tmp_path):
    """Stage 2 end to end with a deep generator: the same samples and label checks as the input generator
    of the same texts, with or without the per-run prompt cache."""
    settings = {"per_label": 4, "batch_size": 4, "max_new_tokens": 10, "device": "cpu", "precision": "fp32"}
    summaries, texts = [], []
    for depth, reuse in (("input", True), ("deep", True), ("deep", False)):
        folder = save_untuned(talkative_dir, tmp_path / f"gen-{depth}", depth=depth)
        config = GenerationConfig(**settings, label_consistency=True, reuse_prompt_cache=reuse, top_up_rounds=0)
        outcome = generate_synthetic(folder, tmp_path / f"{depth}-{reuse}.jsonl", config, show_progress=False)
        records = [json.loads(line) for line in outcome.path.read_text().splitlines()]
        rejected = [json.loads(line) for line in rejected_path(outcome.path).read_text().splitlines()]
        texts.append(sorted((r["index"], r["text_b"], r.get("label_margin")) for r in records + rejected))
        summaries.append(outcome.summary["filters"])
    assert texts[0] == texts[1] == texts[2] and summaries[0] == summaries[1]
    assert any(margin is not None for _, _, margin in texts[0])  # the label check scored deep prompts


def test_single_sentence_deep_generator_generates(talkative_dir, tmp_path):
    single = dataclasses.replace(TASK, pair=False, templates={Family.DECODER: "{text_a} Answer:{answer}"})
    folder = save_untuned(talkative_dir, tmp_path / "gen", single, "deep")
    assert load_generator(folder).layout.infix_tokens == 0
    config = GenerationConfig(per_label=2, batch_size=2, max_new_tokens=6, device="cpu", precision="fp32")
    outcome = generate_synthetic(folder, tmp_path / "syn.jsonl", config, task=single, show_progress=False)
    assert outcome.summary["labels"]["entailment"]["attempted"] >= 2


def test_cli_tune_generator_deep(tiny_decoder_dir, tmp_path):
    from tests_support import fails, invoke

    from dawgen.constants import GENERATOR_DIR

    args = ["tune-generator", "--task", str(demo_dir() / "task.yaml"), "--data", str(demo_dir()),
            "--model", str(tiny_decoder_dir), "--epochs", "1", "--prompt-tokens", "2", "--precision", "fp32",
            "--set", "per_label_batch=8", "--variant", "plain"]  # fmt: skip
    invoke(*args, "--out", str(tmp_path / "run"), "--prompt-depth", "deep")
    saved = load_generator(tmp_path / "run" / GENERATOR_DIR)
    assert saved.config.prompt_depth is PromptDepth.DEEP and saved.layout.deep and saved.layout.num_tokens == 2
    assert "prompt_depth" in fails(*args, "--out", str(tmp_path / "bad"), "--prompt-depth", "middle")
