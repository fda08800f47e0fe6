"""From a batch of planned samples to records: condition, decode, filter, and (optionally) check the label
with the generator's prompts and with the k-shot filters (``kshot_filters``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dawgen.generator.artifacts import TunedGenerator
from dawgen.generator.prompts import every_label_passes, score_targets
from dawgen.generator.sequences import GenSequence, SequenceBuilder, collate
from dawgen.models.inference import for_decoding
from dawgen.models.loading import LoadedModel
from dawgen.synthesis.config import GenerationConfig, Reject
from dawgen.synthesis.decoding import GeneratedRow, PromptCache, SamplingSettings, generate_batch, row_seed
from dawgen.synthesis.filters import label_margins, mean_per_row, text_rejection, word_overlap
from dawgen.synthesis.kshot_filters import KShotFilters
from dawgen.synthesis.plan import WorkItem
from dawgen.synthesis.pool import Pool
from dawgen.synthesis.stopping import SentenceEnds, StopReason
from dawgen.tasks.schema import Family, TaskSpec

CONTEXT_ROOM = 64  # SequenceBuilder checks room for a target; here only its contexts are used


class SampleMaker:
    """Generates the samples of one batch (one label) and turns them into records with filter verdicts."""

    def __init__(
        self, loaded: LoadedModel, task: TaskSpec, generator: TunedGenerator, config: GenerationConfig,
        pool: Pool | None, generator_id: str, device: torch.device, kshot: KShotFilters | None = None,
    ) -> None:  # fmt: skip
        if loaded.family is not Family.DECODER:
            raise ValueError(f"the generator must be a causal LM; {loaded.name} is a {loaded.family.value} model")
        self.layout = generator.prompt_layout
        if loaded.embedding_dim != self.layout.embed_dim:
            raise ValueError(
                f"the label prompts have width {self.layout.embed_dim}, "
                f"but {loaded.name} embeds tokens in {loaded.embedding_dim} dimensions: is it the generator's model?"
            )
        # weights in the precision decoding runs in (no autocast: bf16 weights, fp32 or int8 layers)
        self.model, self.precision = for_decoding(loaded.model, device, config.precision, config.quantize)
        self.tokenizer = loaded.tokenizer
        self.task, self.config, self.pool, self.generator_id = task, config, pool, generator_id
        self.kshot = kshot
        self.budget = config.first_sentence_tokens or generator.config.first_sentence_tokens
        room = max(generator.config.max_length, self.budget + CONTEXT_ROOM)
        self.builder = SequenceBuilder(task, self.tokenizer, self.budget, room, start_token=self.layout.deep)
        self.prompts = generator.prompts.to(device=device, dtype=self.model.get_input_embeddings().weight.dtype)
        self.caches = None
        if config.reuse_prompt_cache:  # each label prompt's keys/values, computed once for the whole run
            self.caches = [self._cache(label) for label in range(task.num_labels)]
        sentence_ends = None
        if config.stops_at_sentence(task.pair):  # read from the vocabulary once
            vocab_size = self.model.get_output_embeddings().out_features  # an int8 layer has no .weight tensor
            sentence_ends = SentenceEnds.from_tokenizer(self.tokenizer, vocab_size)
        self.settings = [
            SamplingSettings(
                eos_token_id=self.tokenizer.eos_token_id, pad_token_id=self.tokenizer.pad_token_id,
                greedy=config.greedy, top_p=config.top_p, temperature=config.temperature,
                repetition_penalty=config.penalty_for(label, task.generator.repetition_penalty),
                max_new_tokens=config.max_new_tokens, sentence_ends=sentence_ends,
            )
            for label in task.labels
        ]  # fmt: skip
        self._first: dict[int, tuple[list[int], str | None]] = {}

    def _cache(self, label: int) -> PromptCache:
        """Label ``label``'s prompt as keys/values: an input prompt run through the model, a deep one as is."""
        if not self.layout.deep:
            return PromptCache(self.model, self.prompts[label])
        assert self.layout.kv is not None
        prefix, infix = self.layout.split(self.prompts[label : label + 1])
        connector = None if infix is None else infix[0]
        return PromptCache.from_prefix(self.model, prefix[0], self.layout.kv, connector)

    def first_sentence(self, slot: int) -> tuple[list[int], str | None]:
        """The context tokens of ``slot`` and its first sentence as conditioned on (cut to the token budget)."""
        if slot not in self._first:
            if self.pool is None:
                self._first[slot] = (self.builder.context_ids(), None)
            else:
                sentence = self.pool.sentences[slot % len(self.pool.sentences)].strip()
                ids = self.tokenizer(sentence, add_special_tokens=False)["input_ids"]
                text = sentence if len(ids) <= self.budget else self.tokenizer.decode(ids[: self.budget]).strip()
                self._first[slot] = (self.builder.context_ids(sentence), text)
        return self._first[slot]

    def context_length(self, slot: int) -> int:
        return len(self.first_sentence(slot)[0])

    def make(self, batch: Sequence[WorkItem]) -> dict[int, dict[str, Any]]:
        """The records of ``batch`` (all of one label), by sample index."""
        label = batch[0].label
        contexts = [self.first_sentence(item.slot)[0] for item in batch]
        if self.caches is not None:
            prompt: PromptCache | torch.Tensor = self.caches[label]
        else:  # an input prompt's keys/values are then computed in the batch's prefill
            prompt = self._cache(label) if self.layout.deep else self.prompts[label]
        seeds = [row_seed(self.config.seed, item.index) for item in batch]
        rows = generate_batch(self.model, prompt, contexts, seeds, self.settings[label])
        records = {item.index: self._record(item, row) for item, row in zip(batch, rows, strict=True)}
        if self.config.label_consistency:
            self._check_labels(batch, contexts, rows, records)
        if self.kshot is not None:  # the judge and relatedness floor, on what passed so far, as one batch
            self.kshot.apply([records[item.index] for item in batch])
        return records

    def _record(self, item: WorkItem, row: GeneratedRow) -> dict[str, Any]:
        text = self.tokenizer.decode(row.tokens, skip_special_tokens=True)
        first = self.first_sentence(item.slot)[1]
        reason = text_rejection(text, row.finished, first, self.config.copy_threshold, self.config.char_copy_threshold)
        text_a, text_b = (text.strip(), None) if first is None else (first, text.strip())
        return {
            "index": item.index, "round": item.round, "slot": item.slot, "label": self.task.labels[item.label],
            "text_a": text_a, "text_b": text_b,
            "generator": self.generator_id, "seed": self.config.seed, "mean_logprob": round(row.mean_logprob, 4),
            "num_tokens": len(row.tokens) + int(row.stop is StopReason.EOS), "stop": row.stop.value,
            "overlap": None if first is None else round(word_overlap(text, first), 4),
            "reject": None if reason is None else reason.value,
        }  # fmt: skip

    @torch.no_grad()
    def _check_labels(
        self, batch: Sequence[WorkItem], contexts: list[list[int]], rows: list[GeneratedRow],
        records: dict[int, dict[str, Any]],
    ) -> None:  # fmt: skip
        """Score the samples that passed so far under every label's prompt; reject those whose own label
        does not explain them best by ``consistency_margin`` (mean log-prob per token)."""
        passed = [k for k, item in enumerate(batch) if records[item.index]["reject"] is None]
        if not passed:
            return
        eos = [self.tokenizer.eos_token_id]  # scored where decoding emitted it, as in mean_logprob
        ending = {k: eos if rows[k].stop is StopReason.EOS else [] for k in passed}
        sequences = [GenSequence(contexts[k], [*rows[k].tokens, *ending[k]], batch[k].label) for k in passed]
        scored = collate(sequences, self.layout.input_slots, self.tokenizer.pad_token_id).to(self.prompts.device)
        passes = every_label_passes(scored, self.task.num_labels)
        logprob = score_targets(self.model, scored, self.prompts, passes, None, self.layout).logprob
        means = mean_per_row(logprob.float().cpu(), scored.target_rows.cpu(), len(sequences))
        margins = label_margins(means, scored.labels.cpu())
        for k, mean, margin in zip(passed, means.tolist(), margins.tolist(), strict=True):
            record = records[batch[k].index]
            record["label_logprobs"] = {name: round(v, 4) for name, v in zip(self.task.labels, mean, strict=True)}
            record["label_margin"] = round(margin, 4)
            if margin < self.config.consistency_margin:
                record["reject"] = Reject.INCONSISTENT.value
