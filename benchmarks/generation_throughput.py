"""Generation throughput: dawgen's label-conditioned decoding against Hugging Face generate().

Same model (SmolLM2-135M-Instruct, offline), same batches of first sentences (the RTE pool, or the
demo pool; sorted by length and cut into batches, the same batches for every side), same sampling
(top-p 0.9 without top-k, temperature 0.8, repetition penalty 1.5) and the same number of new tokens: eos is
forbidden until the budget on every side (``min_new_tokens``), so every row generates exactly
``--new-tokens`` tokens. dawgen conditions on a soft prompt of ``--prompt-tokens`` vectors (a label
description's token embeddings); generate() gets those tokens as text, so both see the same input.
dawgen runs twice: with the label prompt's keys/values computed once and reused by every batch, and
recomputed for every batch. Precision: "auto" (fp32 on CPUs without native bf16), on both sides.

    python benchmarks/generation_throughput.py [--quick]

Ends with `speedup_vs_hf_generate: <ratio>` (tokens/s of dawgen, cache reused, over generate()).
"""

from __future__ import annotations

import argparse

import torch
from common import SHARED_DATA, timed

from dawgen.data.sources import demo_dir, demo_task
from dawgen.generator.prompts import label_texts
from dawgen.generator.sequences import SequenceBuilder
from dawgen.models.loading import DEFAULT_MODEL, load_model
from dawgen.models.precision import autocast, resolve_precision
from dawgen.synthesis.decoding import PromptCache, SamplingSettings, generate_batch, row_seed
from dawgen.synthesis.pool import read_pool
from dawgen.tasks import get_task

TOP_P, TEMPERATURE, PENALTY = 0.9, 0.8, 1.5


def first_sentence_batches(builder: SequenceBuilder, pool: list[str], batch_size: int, batches: int):
    """``batches`` batches of contexts (``s1 <connector>``), length-sorted as dawgen batches them."""
    contexts = sorted((builder.context_ids(text) for text in pool[: batch_size * batches]), key=len)
    return [contexts[start : start + batch_size] for start in range(0, len(contexts), batch_size)]


def dawgen_seconds(loaded, prompt, batches, settings, dtype, reuse: bool) -> float:
    def run() -> None:
        source = PromptCache(loaded.model, prompt, dtype) if reuse else prompt  # once for the whole run
        for number, contexts in enumerate(batches):
            seeds = [row_seed(0, number * len(contexts) + row) for row in range(len(contexts))]
            generate_batch(loaded.model, source, contexts, seeds, settings, dtype)

    return timed(run)


def hf_seconds(loaded, prompt_ids: list[int], batches, new_tokens: int, dtype) -> float:
    tokenizer = loaded.tokenizer
    tokenizer.padding_side = "left"

    def run() -> None:
        for contexts in batches:
            inputs = tokenizer.pad({"input_ids": [prompt_ids + c for c in contexts]}, return_tensors="pt")
            with torch.no_grad(), autocast("cpu", dtype):
                loaded.model.generate(
                    **inputs, do_sample=True, top_p=TOP_P, top_k=0, temperature=TEMPERATURE, repetition_penalty=PENALTY,
                    max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip

    return timed(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 batches of 16 new tokens (about a minute)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=None, help="default 2 (--quick) or 6")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 16 (--quick) or 50")
    parser.add_argument("--prompt-tokens", type=int, default=20, help="soft-prompt length (and text prompt length)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=argparse.SUPPRESS)  # e.g. a tiny test model
    args = parser.parse_args()
    batches_count = args.batches or (2 if args.quick else 6)
    new_tokens = args.new_tokens or (16 if args.quick else 50)
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    rte = SHARED_DATA / "RTE" / "pool" / "train.json"
    task, pool_file = (get_task("RTE"), rte) if rte.exists() else (demo_task(), demo_dir() / "pool.txt")
    pool = read_pool(str(pool_file))
    loaded = load_model(args.model)
    tokenizer = loaded.tokenizer
    description = label_texts(task)[-1]  # the "not entailed" label's prompt text
    text_ids = tokenizer(description, add_special_tokens=False)["input_ids"]
    prompt_ids = (text_ids * (args.prompt_tokens // len(text_ids) + 1))[: args.prompt_tokens]
    prompt = loaded.model.get_input_embeddings().weight[torch.tensor(prompt_ids)].detach().float()
    builder = SequenceBuilder(task, tokenizer)
    batches = first_sentence_batches(builder, pool, args.batch_size, batches_count)
    dtype = resolve_precision("auto", torch.device("cpu"))
    settings = SamplingSettings(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, top_p=TOP_P,
        temperature=TEMPERATURE, repetition_penalty=PENALTY, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
    )  # fmt: skip
    tokens = sum(len(b) for b in batches) * new_tokens
    context = sum(len(c) for b in batches for c in b) / sum(len(b) for b in batches)
    print(f"{task.name} pool, {args.model}: {len(batches)} batches of {args.batch_size}, first sentences of "
          f"{context:.0f} tokens on average, {args.prompt_tokens} prompt tokens, {new_tokens} new tokens, "
          f"autocast {dtype}, {torch.get_num_threads()} threads")  # fmt: skip
    warm = batches[:1]
    dawgen_seconds(loaded, prompt, warm, settings, dtype, reuse=True)
    hf_seconds(loaded, prompt_ids, warm, new_tokens, dtype)
    results = {
        "dawgen (prompt cache reused)": dawgen_seconds(loaded, prompt, batches, settings, dtype, reuse=True),
        "dawgen (prompt recomputed)": dawgen_seconds(loaded, prompt, batches, settings, dtype, reuse=False),
        "hf generate()": hf_seconds(loaded, prompt_ids, batches, new_tokens, dtype),
    }
    for name, seconds in results.items():
        print(f"{name:>30}: {tokens / seconds:8.1f} tokens/s ({seconds:.2f} s for {tokens} tokens)")
    ours, recomputed, theirs = results.values()
    print(f"prompt_cache_gain: {recomputed / ours:.2f}")
    print(f"speedup_vs_hf_generate: {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
