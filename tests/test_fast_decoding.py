"""Fast decoding (issue 17): the preallocated key/value cache and the decoding precisions.

The buffered cache must change nothing: the same tokens and log-probabilities as transformers'
``DynamicCache`` for the same seeds, with rows leaving the batch as they finish (fp32, exact up to
1e-5 in the log-probabilities). bf16 weights and int8 layers change the numerics: on the tiny model their
logits stay within 5% (bf16) and 10% (int8, per-tensor scales of 32-wide layers) of the largest fp32 logit,
so a sampled token can differ where two candidates are that close.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import DynamicCache

import dawgen.synthesis.decoding as decoding
from dawgen.models.inference import BF16_WEIGHTS, INT8_DYNAMIC, Quantize, for_decoding
from dawgen.models.kv_buffer import BufferLayer, buffered_cache
from dawgen.models.loading import load_model
from dawgen.synthesis.decoding import PromptCache, SamplingSettings, generate_batch, row_seed

CONTEXTS = ("The man reads a book today.", "A dog sees the film and the cat", "She", "We all go home now")


@pytest.fixture(scope="module")
def loaded(tiny_decoder_dir, one_torch_thread):
    return load_model(str(tiny_decoder_dir))


@pytest.fixture(scope="module")
def contexts(loaded):
    return [loaded.tokenizer(text, add_special_tokens=False)["input_ids"] for text in CONTEXTS]


def test_buffer_layer_writes_in_place_and_selects_rows():
    layer = BufferLayer(capacity=6)
    first = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).view(2, 1, 3, 2)
    keys, values = layer.update(first, -first)
    assert keys.shape == (2, 1, 3, 2) and torch.equal(keys, first) and torch.equal(values, -first)
    step = torch.full((2, 1, 1, 2), 7.0)
    keys, _ = layer.update(step, step)
    assert layer.get_seq_length() == 4 and torch.equal(keys[:, :, 3], step[:, :, 0])
    assert keys.data_ptr() == layer.key_buffer.data_ptr()  # a view of the buffer: nothing was concatenated
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys[0, :, :3], first[1]) and layer.keys.shape == (1, 1, 4, 2)
    layer.batch_repeat_interleave(3)
    assert layer.keys.shape == (3, 1, 4, 2) and torch.equal(layer.keys[2], layer.keys[0])
    with pytest.raises(ValueError, match="holds 6 positions"):
        layer.update(torch.zeros(3, 1, 3, 2), torch.zeros(3, 1, 3, 2))


def test_buffered_cache_starts_from_a_prefix_in_every_row(loaded):
    prefix = DynamicCache(config=loaded.model.config)
    with torch.no_grad():
        loaded.model(input_ids=torch.tensor([[5, 6, 7]]), past_key_values=prefix, use_cache=True)
    cache = buffered_cache(loaded.model, 4, 10, prefix=prefix)
    assert all(isinstance(layer, BufferLayer) for layer in cache.layers) and cache.get_seq_length() == 3
    assert torch.equal(cache.layers[0].keys[3], prefix.layers[0].keys[0])


def _with_dynamic_cache(monkeypatch) -> None:
    """Decode with transformers' DynamicCache, as before the buffers (the reference)."""

    def dynamic(model, batch, capacity, prefix=None):
        if prefix is None:
            return DynamicCache(config=model.config)
        cache = copy.deepcopy(prefix)
        cache.batch_repeat_interleave(batch)
        return cache

    monkeypatch.setattr(decoding, "buffered_cache", dynamic)


@pytest.mark.parametrize("reuse", [True, False])
def test_buffered_decoding_samples_what_the_dynamic_cache_samples(loaded, contexts, monkeypatch, reuse):
    tokenizer = loaded.tokenizer
    settings = SamplingSettings(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, temperature=1.5, top_p=0.95,
        repetition_penalty=1.3, max_new_tokens=12,
    )  # fmt: skip
    prompt = torch.randn(4, loaded.embedding_dim, generator=torch.Generator().manual_seed(1)) * 0.5
    seeds = [row_seed(13, index) for index in range(len(contexts))]

    def run():
        source = PromptCache(loaded.model, prompt) if reuse else prompt
        return generate_batch(loaded.model, source, contexts, seeds, settings)

    ours = run()
    _with_dynamic_cache(monkeypatch)
    reference = run()
    assert [row.tokens for row in ours] == [row.tokens for row in reference]
    assert [row.stop for row in ours] == [row.stop for row in reference]
    assert [row.logprob_sum for row in ours] == pytest.approx([row.logprob_sum for row in reference], abs=1e-5)


def _last_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def test_decoding_precisions_stay_close_to_fp32(tiny_decoder_dir, contexts):
    reference = load_model(str(tiny_decoder_dir)).model
    cpu = torch.device("cpu")
    bf16, name = for_decoding(load_model(str(tiny_decoder_dir)).model, cpu, "bf16")
    assert name == BF16_WEIGHTS and bf16.dtype == torch.bfloat16
    int8, name = for_decoding(load_model(str(tiny_decoder_dir)).model, cpu, "auto", Quantize.INT8)
    assert name == INT8_DYNAMIC and not any(type(m) is torch.nn.Linear for m in int8.modules())
    fp32, name = for_decoding(load_model(str(tiny_decoder_dir)).model, cpu, "fp32")
    assert name == "fp32" and fp32.dtype == torch.float32
    for ids in contexts:
        exact = _last_logits(reference, ids)
        scale = exact.abs().max()
        assert torch.equal(_last_logits(fp32, ids), exact)
        assert (_last_logits(bf16, ids) - exact).abs().max() < 0.05 * scale  # bf16 keeps ~3 significant digits
        assert (_last_logits(int8, ids) - exact).abs().max() < 0.1 * scale  # per-tensor int8 of 32-wide layers


def test_int8_refuses_what_it_cannot_do(tiny_decoder_dir):
    model = load_model(str(tiny_decoder_dir)).model
    with pytest.raises(ValueError, match="precision 'auto' or 'fp32'"):
        for_decoding(model, torch.device("cpu"), "bf16", Quantize.INT8)
    with pytest.raises(ValueError, match="CPU only"):
        for_decoding(model, torch.device("meta"), "auto", Quantize.INT8)
