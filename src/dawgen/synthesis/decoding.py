"""Batched decoding under one label prompt: the prompt's keys/values computed once, then a KV-cached loop.
A deep prompt's keys/values are the prompt itself (``PromptCache.from_prefix``).

Every row is ``[label prompt (m vectors)][pad ...][context tokens][generated ...]``: the prompt's cache
is copied into a preallocated cache of the batch (``models.kv_buffer``: a decode step writes one
position in place), the left-padded contexts are prefilled with positions that continue after the
prompt and skip the pads, then one token per step. Rows leave the batch when they emit eos,
or, with ``SamplingSettings.sentence_ends``, when they end a sentence (``stopping``).
Each row draws its random numbers from its own ``torch.Generator`` (seeded from the run seed and the
sample's index), so what a sample becomes does not depend on which batch it is in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

from dawgen.models.kv_buffer import buffered_cache
from dawgen.models.kv_prefix import KVShape, prefix_cache
from dawgen.models.precision import autocast
from dawgen.synthesis.stopping import SentenceEnds, StopReason

NUCLEUS_CANDIDATES = (256, 4096)  # the nucleus is looked for among the top tokens first (a full sort is slow on CPU)


@dataclass(frozen=True)
class SamplingSettings:
    """How one batch is decoded (one label: its repetition penalty)."""

    eos_token_id: int
    pad_token_id: int
    greedy: bool = False
    top_p: float = 0.9
    temperature: float = 0.8
    repetition_penalty: float = 1.0  # CTRL-style, over the row's context and generated tokens
    max_new_tokens: int = 50
    min_new_tokens: int = 0  # eos (and a sentence end) is forbidden before this many tokens (benchmarks fix lengths)
    sentence_ends: SentenceEnds | None = None  # also stop at the end of a sentence; None: at eos only


@dataclass(frozen=True)
class GeneratedRow:
    """What one row produced."""

    tokens: list[int]  # the generated tokens, eos not included (a sentence end's punctuation is)
    stop: StopReason  # eos, sentence (its end), or length (neither within max_new_tokens)
    logprob_sum: float  # log-probability of the tokens (and of eos after them) under the unprocessed model

    @property
    def finished(self) -> bool:
        """Whether the text ended (eos or a sentence end) within max_new_tokens."""
        return self.stop is not StopReason.LENGTH

    @property
    def mean_logprob(self) -> float:
        scored = len(self.tokens) + int(self.stop is StopReason.EOS)
        return self.logprob_sum / scored if scored else 0.0


def row_seed(run_seed: int, sample_index: int) -> int:
    """The seed of one sample's random stream, from the run seed and the sample's index."""
    return int(np.random.SeedSequence([run_seed, sample_index]).generate_state(1)[0])


def _forward(model: Any, cache: Any, attention: torch.Tensor, positions: torch.Tensor, **inputs: Any) -> torch.Tensor:
    """The next-token logits (float32) after feeding ``inputs`` on top of ``cache``.

    The last position is kept by an index tensor, not ``logits_to_keep=1``: its slice of the hidden
    states is not contiguous, and with bf16 weights transformers' LM-head matmul then expands the
    [vocab, d] weight to every row (7.6 s of copying for 16 rows of SmolLM2-135M)."""
    last = torch.tensor([-1], device=positions.device)
    out = model(
        **inputs, attention_mask=attention, position_ids=positions, past_key_values=cache, use_cache=True,
        logits_to_keep=last,
    )  # fmt: skip
    return out.logits[:, -1].float()


class PromptCache:
    """One label prompt's keys/values in the frozen LM, computed once: an input prompt ([m, d]) run
    through the model, with the logits after it; or a deep prompt, whose prefix *is* the cache (no
    logits: its contexts are never empty), with the embeddings that replace its contexts' connector."""

    def __init__(self, model: Any, prompt: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> None:
        device = model.device
        self.length = int(prompt.shape[0])
        self.infix: torch.Tensor | None = None
        positions = torch.arange(self.length, device=device)[None]
        attention = torch.ones(1, self.length, dtype=torch.long, device=device)
        self.cache = DynamicCache(config=model.config)
        self.last_logits: torch.Tensor | None = None
        embeds = prompt.to(device=device, dtype=model.dtype)[None]
        with torch.no_grad(), autocast(device, autocast_dtype):
            self.last_logits = _forward(model, self.cache, attention, positions, inputs_embeds=embeds)[0]

    @classmethod
    def from_prefix(
        cls, model: Any, prefix: torch.Tensor, shape: KVShape, infix: torch.Tensor | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> PromptCache:  # fmt: skip
        """The cache of a deep prompt: ``prefix`` [m, width] at every layer, ``infix`` [c, d] or None."""
        made = cls.__new__(cls)
        made.length = int(prefix.shape[0])
        made.cache = prefix_cache(model, prefix.to(model.device)[None], shape, autocast_dtype)
        made.last_logits = None
        made.infix = None if infix is None else infix.to(device=model.device)
        return made

    def expanded(self, model: Any, batch_size: int, capacity: int) -> DynamicCache:
        """A cache of ``batch_size`` rows and ``capacity`` positions holding the prompt in every row (the
        original stays untouched)."""
        return buffered_cache(model, batch_size, capacity, prefix=self.cache)


def left_pad(contexts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, C]`` token ids padded on the left, and their mask."""
    width = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(contexts), width), dtype=torch.long)
    for row, context in enumerate(contexts):
        if context:
            ids[row, width - len(context) :] = torch.tensor(context, dtype=torch.long)
            mask[row, width - len(context) :] = 1
    return ids.to(device), mask.to(device)


def _prefill(
    model: Any, prompt: PromptCache | torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, new_tokens: int
) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor]:
    """Logits after each row's context, the cache (room for ``new_tokens`` more), the attention mask so
    far and the next positions."""
    batch, device = ids.shape[0], ids.device
    length = prompt.length if isinstance(prompt, PromptCache) else int(prompt.shape[0])
    capacity = length + ids.shape[1] + new_tokens
    attention = torch.cat([torch.ones(batch, length, dtype=torch.long, device=device), mask], dim=1)
    positions = (length + mask.cumsum(-1) - 1).clamp(min=length)  # real tokens continue after the prompt
    next_positions = length + mask.sum(-1)
    if isinstance(prompt, PromptCache):
        cache = prompt.expanded(model, batch, capacity)
        if ids.shape[1] == 0:  # nothing to add to the prompt (single-sentence task without bos)
            if prompt.last_logits is None:
                raise ValueError("a deep prompt needs a context of at least one token")
            return prompt.last_logits.expand(batch, -1), cache, attention, next_positions
        if prompt.infix is None:
            return _forward(model, cache, attention, positions, input_ids=ids), cache, attention, next_positions
        embeds = model.get_input_embeddings()(ids)
        width = len(prompt.infix)  # left-padded: every context ends with its connector
        embeds = torch.cat([embeds[:, : ids.shape[1] - width], prompt.infix.to(embeds.dtype).expand(batch, -1, -1)], 1)
        return _forward(model, cache, attention, positions, inputs_embeds=embeds), cache, attention, next_positions
    prompt = prompt.to(device=device, dtype=model.dtype)
    embeds = torch.cat([prompt.expand(batch, -1, -1), model.get_input_embeddings()(ids)], dim=1)
    all_positions = torch.cat([torch.arange(length, device=device).expand(batch, -1), positions], dim=1)
    cache = buffered_cache(model, batch, capacity)
    return _forward(model, cache, attention, all_positions, inputs_embeds=embeds), cache, attention, next_positions


def penalise_repeats(scores: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty on the tokens in ``seen``: positive logits divided, negative ones multiplied."""
    if penalty == 1.0:
        return scores
    return torch.where(seen, torch.where(scores > 0, scores / penalty, scores * penalty), scores)


def _inverse_cdf(values: torch.Tensor, indices: torch.Tensor, uniform: torch.Tensor, top_p: float) -> torch.Tensor:
    """Sample from probabilities sorted in descending order, cut to the smallest prefix of mass >= top_p."""
    keep = (values.cumsum(-1) - values) < top_p  # the mass before the token is still short of top_p
    kept = values * keep
    cdf = kept.cumsum(-1)
    position = torch.searchsorted(cdf, uniform[:, None] * cdf[:, -1:], right=True)
    position = position.clamp(max=keep.sum(-1, keepdim=True) - 1)
    return indices.gather(-1, position).squeeze(-1)


def nucleus_sample(probs: torch.Tensor, uniform: torch.Tensor, top_p: float) -> torch.Tensor:
    """One token per row by top-p sampling with the given uniforms; exact, but sorts only what it needs:
    each row's nucleus is looked for among its top 256 tokens, then 4096, then all of them."""
    vocab = probs.shape[-1]
    if top_p >= 1.0:
        cdf = probs.cumsum(-1)
        position = torch.searchsorted(cdf, uniform[:, None] * cdf[:, -1:], right=True)
        return position.clamp(max=vocab - 1).squeeze(-1)
    chosen = torch.empty(len(probs), dtype=torch.long, device=probs.device)
    pending = torch.arange(len(probs), device=probs.device)
    for size in sorted({min(size, vocab) for size in (*NUCLEUS_CANDIDATES, vocab)}):
        rows_probs = probs[pending]
        if size < vocab:
            values, indices = rows_probs.topk(size, dim=-1)
            found = values.sum(-1) >= top_p
        else:  # a full sort is faster than topk of everything
            values, indices = rows_probs.sort(dim=-1, descending=True)
            found = torch.ones_like(pending, dtype=torch.bool)
        rows = pending[found]
        chosen[rows] = _inverse_cdf(values[found], indices[found], uniform[rows], top_p)
        pending = pending[~found]
        if len(pending) == 0:
            break
    return chosen


def _choose(scores: torch.Tensor, settings: SamplingSettings, generators: list[torch.Generator]) -> torch.Tensor:
    if settings.greedy:
        return scores.argmax(-1)
    probs = torch.softmax(scores / settings.temperature, dim=-1)
    uniform = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators]).to(probs)
    return nucleus_sample(probs, uniform, settings.top_p)


STOPS = tuple(StopReason)  # a row's stop as an index into this, in the loop


@torch.no_grad()
def generate_batch(
    model: Any,
    prompt: PromptCache | torch.Tensor,
    contexts: Sequence[Sequence[int]],
    seeds: Sequence[int],
    settings: SamplingSettings,
    autocast_dtype: torch.dtype | None = None,
) -> list[GeneratedRow]:
    """Continue every context under one label prompt: a ``PromptCache`` (reused) or the [m, d] prompt
    itself (its keys/values are then computed again for this batch). ``seeds``: one per row.

    With ``settings.sentence_ends`` a row whose last token ended a sentence (at or past ``min_tokens``
    and ``min_new_tokens``) stops when its next token starts a new one; that token is dropped. A row
    depends only on its own tokens and random stream, whichever batch it is in."""
    device = model.device
    batch = len(contexts)
    ids, mask = left_pad(contexts, settings.pad_token_id, device)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    tokens = torch.full((batch, settings.max_new_tokens), -1, dtype=torch.long, device=device)
    logprobs = torch.zeros(batch, settings.max_new_tokens, device=device)
    stops = torch.full((batch,), STOPS.index(StopReason.LENGTH), dtype=torch.long, device=device)
    active = torch.arange(batch, device=device)  # the original row of every row still generating
    sentence = settings.sentence_ends
    if sentence is not None:
        ends, starts = sentence.ends.to(device), sentence.starts.to(device)
        earliest = max(sentence.min_tokens, settings.min_new_tokens)  # tokens a row needs before a sentence end
    closed = torch.zeros(batch, dtype=torch.bool, device=device)  # the row's last token ended a sentence
    with autocast(device, autocast_dtype):
        logits, cache, attention, positions = _prefill(model, prompt, ids, mask, settings.max_new_tokens)
        seen = torch.zeros(logits.shape, dtype=torch.bool, device=device)  # the tokens the penalty applies to
        for row, context in enumerate(contexts):
            seen[row, list(context)] = True
        for step in range(settings.max_new_tokens):
            scores = penalise_repeats(logits, seen, settings.repetition_penalty)
            if step < settings.min_new_tokens:
                scores = scores.index_fill(1, torch.tensor([settings.eos_token_id], device=device), -torch.inf)
            chosen = _choose(scores, settings, generators)
            emitted_eos = chosen == settings.eos_token_id
            ended = torch.zeros_like(emitted_eos)  # the last token ended a sentence and this one starts the next
            if sentence is not None:
                ended = closed & starts[chosen] & ~emitted_eos
            kept = ~ended  # the next sentence's first token is not part of this one
            tokens[active[kept], step] = chosen[kept]
            chosen_logits = logits.gather(1, chosen[:, None]).squeeze(1)
            logprobs[active[kept], step] = (chosen_logits - torch.logsumexp(logits, dim=-1))[kept]
            stops[active[emitted_eos]] = STOPS.index(StopReason.EOS)
            stops[active[ended]] = STOPS.index(StopReason.SENTENCE)
            done = emitted_eos | ended
            if sentence is not None:
                closed = ends[chosen] & (step + 1 >= earliest) & ~done
            if step + 1 == settings.max_new_tokens:  # the budget ends right after a sentence end: it counts
                stops[active[closed]] = STOPS.index(StopReason.SENTENCE)
                break
            if bool(done.all()):
                break
            if bool(done.any()):  # drop finished rows from the batch
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                active, chosen, positions, seen = active[keep], chosen[keep], positions[keep], seen[keep]
                attention, closed = attention[keep], closed[keep]
                generators = [generators[i] for i in keep.tolist()]
            seen[torch.arange(len(active), device=device), chosen] = True
            attention = torch.cat([attention, attention.new_ones(len(active), 1)], dim=1)
            logits = _forward(model, cache, attention, positions[:, None], input_ids=chosen[:, None])
            positions = positions + 1
    return _rows(tokens.cpu(), logprobs.cpu(), stops.cpu())


def _rows(tokens: torch.Tensor, logprobs: torch.Tensor, stops: torch.Tensor) -> list[GeneratedRow]:
    rows = []
    for row_tokens, row_logprobs, index in zip(tokens.tolist(), logprobs, stops.tolist(), strict=True):
        stop = STOPS[index]
        produced = [t for t in row_tokens if t != -1]
        text_tokens = produced[:-1] if stop is StopReason.EOS else produced  # without the eos
        rows.append(GeneratedRow(text_tokens, stop, float(row_logprobs[: len(produced)].sum())))
    return rows
