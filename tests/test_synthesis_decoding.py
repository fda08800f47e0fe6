"""Stage 2 decoding: the prompt-cache loop against Hugging Face generate(), sampling, penalties, batching.

All in fp32: no autocast dtype is passed, as Hugging Face generate() runs in the comparison.
"""

from __future__ import annotations

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from dawgen.models.loading import load_model
from dawgen.synthesis.decoding import (
    PromptCache,
    SamplingSettings,
    generate_batch,
    left_pad,
    nucleus_sample,
    penalise_repeats,
    row_seed,
)
from dawgen.synthesis.stopping import SentenceEnds, StopReason, continuation_texts, ends_sentence, starts_sentence
from dawgen.tasks import Family

CONTEXTS = ("The man reads a book today.\nSentence 2:", "A dog sees the film.", "She")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine runs these tiny ops far faster on one thread
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def loaded(tiny_decoder_dir):
    return load_model(str(tiny_decoder_dir))


@pytest.fixture(scope="module")
def prompt(loaded):
    return torch.randn(5, loaded.embedding_dim, generator=torch.Generator().manual_seed(3)) * 0.5


@pytest.fixture(scope="module")
def contexts(loaded):
    return [loaded.tokenizer(text, add_special_tokens=False)["input_ids"] for text in CONTEXTS]


def settings_for(loaded, **overrides) -> SamplingSettings:
    tokenizer = loaded.tokenizer
    return SamplingSettings(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **overrides)


def hf_greedy(loaded, prompt, context, max_new_tokens, eos=None) -> list[int]:
    """Hugging Face generate() on one unpadded row: the prompt vectors, then the context's embeddings."""
    model = loaded.model
    embeds = torch.cat([prompt, model.get_input_embeddings()(torch.tensor(context))])[None]
    out = model.generate(
        inputs_embeds=embeds, attention_mask=torch.ones(1, embeds.shape[1], dtype=torch.long), do_sample=False,
        max_new_tokens=max_new_tokens, pad_token_id=loaded.tokenizer.pad_token_id,
        eos_token_id=loaded.tokenizer.eos_token_id if eos is None else eos,
    )  # fmt: skip
    return out[0].tolist()


@pytest.mark.parametrize("reuse", [True, False])
def test_greedy_batch_equals_hf_generate_row_by_row(loaded, prompt, contexts, reuse):
    source = PromptCache(loaded.model, prompt) if reuse else prompt
    rows = generate_batch(
        loaded.model, source, contexts, [0, 1, 2], settings_for(loaded, greedy=True, max_new_tokens=8)
    )
    for context, row in zip(contexts, rows, strict=True):
        assert row.tokens == hf_greedy(loaded, prompt, context, 8) and not row.finished  # padding changes nothing


def test_rows_that_end_leave_the_batch_without_changing_the_others(loaded, prompt, contexts):
    greedy = settings_for(loaded, greedy=True, max_new_tokens=8)
    first = generate_batch(loaded.model, prompt, contexts, [0, 1, 2], greedy)
    row, step = next((r, j) for r, g in enumerate(first) for j in range(1, 8) if g.tokens[j] not in g.tokens[:j])
    stop = first[row].tokens[step]  # a token one row first emits at a later step plays eos: that row ends early
    ending = SamplingSettings(**{**vars(greedy), "eos_token_id": stop})
    rows = generate_batch(loaded.model, PromptCache(loaded.model, prompt), contexts, [0, 1, 2], ending)
    assert rows[row].finished and rows[row].tokens == first[row].tokens[:step]
    assert not all(r.finished for r in rows)
    for context, row in zip(contexts, rows, strict=True):
        expected = hf_greedy(loaded, prompt, context, 8, eos=stop)
        assert row.tokens + ([stop] if row.finished else []) == expected


def test_prompt_cache_is_reused_untouched_and_matches_recomputing_it(loaded, prompt, contexts):
    cache = PromptCache(loaded.model, prompt)
    sampling = settings_for(loaded, max_new_tokens=6)
    once = generate_batch(loaded.model, cache, contexts, [5, 6, 7], sampling)
    again = generate_batch(loaded.model, cache, contexts, [5, 6, 7], sampling)
    fresh = generate_batch(loaded.model, prompt, contexts, [5, 6, 7], sampling)
    assert cache.cache.get_seq_length() == prompt.shape[0]
    assert [r.tokens for r in once] == [r.tokens for r in again] == [r.tokens for r in fresh]
    for a, b in zip(once, fresh, strict=True):
        assert a.logprob_sum == pytest.approx(b.logprob_sum, abs=1e-4)


def test_a_sample_does_not_depend_on_its_batch(loaded, prompt, contexts):
    cache = PromptCache(loaded.model, prompt)
    sampling = settings_for(loaded, max_new_tokens=10, repetition_penalty=1.3)
    together = generate_batch(loaded.model, cache, contexts, [11, 12, 13], sampling)
    reordered = generate_batch(loaded.model, cache, contexts[::-1], [13, 12, 11], sampling)
    alone = generate_batch(loaded.model, cache, contexts[2:], [13], sampling)
    assert [r.tokens for r in together] == [r.tokens for r in reordered[::-1]]
    assert together[2].tokens == alone[0].tokens
    other_seed = generate_batch(loaded.model, cache, contexts, [21, 22, 23], sampling)
    assert [r.tokens for r in other_seed] != [r.tokens for r in together]


def test_min_new_tokens_and_budget(loaded, prompt, contexts):
    stop = generate_batch(loaded.model, prompt, contexts[:1], [0], settings_for(loaded, greedy=True))[0].tokens[0]
    early = SamplingSettings(**{**vars(settings_for(loaded, greedy=True, max_new_tokens=5)), "eos_token_id": stop})
    assert generate_batch(loaded.model, prompt, contexts[:1], [0], early)[0].tokens == []
    held = SamplingSettings(**{**vars(early), "min_new_tokens": 5})
    row = generate_batch(loaded.model, prompt, contexts[:1], [0], held)[0]
    assert len(row.tokens) == 5 and not row.finished and stop not in row.tokens


def test_empty_contexts_start_from_the_prompt(loaded, prompt):
    cache = PromptCache(loaded.model, prompt)
    greedy = settings_for(loaded, greedy=True, max_new_tokens=4)
    rows = generate_batch(loaded.model, cache, [[], []], [0, 1], greedy)
    assert rows[0].tokens == rows[1].tokens == generate_batch(loaded.model, prompt, [[]], [0], greedy)[0].tokens


def test_repetition_penalty_matches_hf():
    scores = torch.randn(2, 50)
    context = torch.tensor([[1, 4, 4, 7], [0, 2, 3, 49]])
    seen = torch.zeros(2, 50, dtype=torch.bool).scatter_(1, context, True)
    expected = RepetitionPenaltyLogitsProcessor(1.5)(context, scores.clone())
    assert torch.allclose(penalise_repeats(scores, seen, 1.5), expected)
    assert penalise_repeats(scores, seen, 1.0) is scores


def reference_nucleus(probs: torch.Tensor, uniform: float, top_p: float) -> int:
    """Top-p sampling written plainly: full sort, smallest prefix of mass >= top_p, inverse CDF."""
    values, indices = probs.sort(descending=True)
    size = int((values.cumsum(0) < top_p).sum()) + 1
    kept = values[:size] / values[:size].sum()
    position = int((kept.cumsum(0) <= uniform).sum())
    return int(indices[min(position, size - 1)])


def test_nucleus_sampling_by_hand_and_against_a_plain_implementation():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    pick = lambda u, p: int(nucleus_sample(probs, torch.tensor([u]), p))  # noqa: E731
    assert [pick(0.1, 0.7), pick(0.7, 0.7), pick(0.99, 0.7)] == [1, 3, 3]  # nucleus {1, 3}: 0.5/0.8 = 0.625
    assert [pick(0.01, 1.0), pick(0.99, 1.0), pick(0.5, 1e-6)] == [0, 3, 1]
    generator = torch.Generator().manual_seed(0)
    for vocab, sharpness in ((40, 3.0), (1000, 0.1), (10000, 2.5)):  # nuclei past the top 256, 4096 tokens
        probs = torch.softmax(torch.randn(16, vocab, generator=generator) * sharpness, -1)
        uniform = torch.rand(16, generator=generator, dtype=torch.float64).float()
        for top_p in (0.5, 0.9):
            ours = nucleus_sample(probs, uniform, top_p).tolist()
            assert ours == [reference_nucleus(p, float(u), top_p) for p, u in zip(probs, uniform, strict=True)]


def test_left_pad_and_row_seeds():
    ids, mask = left_pad([[5, 6], [7], []], pad_id=0, device=torch.device("cpu"))
    assert ids.tolist() == [[5, 6], [0, 7], [0, 0]] and mask.tolist() == [[1, 1], [0, 1], [0, 0]]
    assert row_seed(13, 4) == row_seed(13, 4) != row_seed(13, 5) != row_seed(14, 4)


def reference_stop(tokens: list[int], ends: set[int], starts: set[int], min_tokens: int, budget: int):
    """The sentence-end rule written plainly, on a row decoded without it: the first token at or past
    ``min_tokens`` that ends a sentence and is followed by one that starts a new sentence (dropped), or
    is the budget's last token; else the row as it was."""
    for k, token in enumerate(tokens):
        if k + 1 >= min_tokens and token in ends:
            if k + 1 == budget:
                return tokens, StopReason.SENTENCE
            if k + 1 < len(tokens) and tokens[k + 1] in starts:
                return tokens[: k + 1], StopReason.SENTENCE
    return tokens, None


def masks(vocab: int, ends: set[int], starts: set[int], min_tokens: int = 3) -> SentenceEnds:
    as_mask = lambda ids: torch.isin(torch.arange(vocab), torch.tensor(sorted(ids), dtype=torch.long))  # noqa: E731
    return SentenceEnds(as_mask(ends), as_mask(starts), min_tokens)


@pytest.mark.parametrize("greedy", [True, False])
def test_sentence_ends_cut_each_row_where_the_plain_rule_says(loaded, prompt, contexts, greedy):
    """Random token sets play "ends a sentence" and "starts one": every row is the row decoded without
    the rule (same seeds), cut where ``reference_stop`` cuts it, and stays the same in another batch."""
    vocab = loaded.model.config.vocab_size
    plain = settings_for(loaded, greedy=greedy, max_new_tokens=12, repetition_penalty=1.2)
    cache = PromptCache(loaded.model, prompt)
    many = [*contexts, *contexts]  # 6 rows, 6 seeds
    seeds = list(range(30, 36))
    free = generate_batch(loaded.model, cache, many, seeds, plain)
    generator = torch.Generator().manual_seed(4)
    ends = set(torch.randperm(vocab, generator=generator)[: vocab // 4].tolist()) | {free[0].tokens[3]}
    starts = set(torch.randperm(vocab, generator=generator)[: vocab // 2].tolist()) | {free[0].tokens[4]}
    cut = SamplingSettings(**{**vars(plain), "sentence_ends": masks(vocab, ends, starts)})
    rows = generate_batch(loaded.model, cache, many, seeds, cut)
    stops = []
    for before, row in zip(free, rows, strict=True):
        expected, reason = reference_stop(before.tokens, ends, starts, 3, 12)
        if before.finished and reason is None:  # eos first
            assert row.tokens == before.tokens and row.stop is StopReason.EOS
        elif reason is None:
            assert row.tokens == before.tokens and row.stop is StopReason.LENGTH and not row.finished
        else:
            assert row.tokens == expected and row.stop is StopReason.SENTENCE and row.finished
            assert len(row.tokens) >= 3
        stops.append(row.stop)
    assert stops[0] is StopReason.SENTENCE and (greedy or len(set(stops)) > 1)
    alone = generate_batch(loaded.model, cache, many[4:5], seeds[4:5], cut)[0]
    assert (alone.tokens, alone.stop) == (rows[4].tokens, rows[4].stop)
    k = next(i for i, r in enumerate(rows) if r.stop is StopReason.SENTENCE)  # the dropped token is not scored
    budget = SamplingSettings(**{**vars(plain), "max_new_tokens": len(rows[k].tokens)})
    short = generate_batch(loaded.model, cache, many[k : k + 1], seeds[k : k + 1], budget)[0]
    assert short.tokens == rows[k].tokens and short.logprob_sum == pytest.approx(rows[k].logprob_sum, abs=1e-4)
    assert short.mean_logprob == pytest.approx(rows[k].mean_logprob, abs=1e-5)  # no eos in either


def test_sentence_ends_wait_for_min_tokens_and_min_new_tokens(loaded, prompt, contexts):
    vocab = loaded.model.config.vocab_size
    everything = masks(vocab, set(range(vocab)), set(range(vocab)), min_tokens=4)  # every token ends and starts
    greedy = settings_for(loaded, greedy=True, max_new_tokens=9)
    rows = generate_batch(
        loaded.model, prompt, contexts, [0, 1, 2], SamplingSettings(**{**vars(greedy), "sentence_ends": everything})
    )
    assert [(len(r.tokens), r.stop) for r in rows] == [(4, StopReason.SENTENCE)] * 3  # the 5th token dropped
    held = SamplingSettings(**{**vars(greedy), "sentence_ends": everything, "min_new_tokens": 9})  # benchmarks
    rows = generate_batch(loaded.model, prompt, contexts, [0, 1, 2], held)
    assert [len(r.tokens) for r in rows] == [9] * 3 and all(r.stop is StopReason.SENTENCE for r in rows)
    assert (
        generate_batch(loaded.model, prompt, contexts, [0], SamplingSettings(**{**vars(greedy), "min_new_tokens": 9}))[
            0
        ].stop
        is StopReason.LENGTH
    )


def test_sentence_ends_and_starts_from_token_texts():
    for text in (".", "!", "?", '."', "?)", " ...", "3.", ".”"):
        assert ends_sentence(text), text
    for text in ("a", ".a", ",", " ", "", "<s>"):
        assert not ends_sentence(text), text
    for text in (" The", "\n", " ", " 5", ' "', "\n\nNext"):
        assert starts_sentence(text), text
    for text in (" the", "The", "5", "", "."):
        assert not starts_sentence(text), text


@pytest.mark.parametrize("family", [Family.DECODER, Family.SEQ2SEQ])  # byte-level BPE, and Unigram with Metaspace
def test_sentence_ends_from_a_tokenizer(tiny_model_dirs, family):
    tokenizer = load_model(str(tiny_model_dirs[family])).tokenizer
    texts = continuation_texts(tokenizer, len(tokenizer) + 2)
    sentence = SentenceEnds.from_tokenizer(tokenizer, len(tokenizer) + 2)
    assert sentence.ends.shape == sentence.starts.shape == (len(tokenizer) + 2,) and texts[-2:] == ["", ""]
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    full_stop = ids("home.")[-1]
    assert texts[full_stop] == "." and sentence.ends[full_stop] and not sentence.starts[full_stop]
    the = ids("home. The")[-1]  # the space belongs to the token (BPE) or its Metaspace marker
    assert texts[the] == " The" and sentence.starts[the] and not sentence.ends[the]
    lower = ids("home the")[-1]
    assert texts[lower] == " the" and not sentence.starts[lower]
    for special in tokenizer.all_special_ids:
        assert not sentence.ends[special] and not sentence.starts[special]
    assert int(sentence.ends.sum()) == sum(
        ends_sentence(t) for i, t in enumerate(texts) if i not in tokenizer.all_special_ids
    )
