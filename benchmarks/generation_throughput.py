"""Generation throughput: dawgen's label-conditioned decoding against Hugging Face generate(), and the
machine's bound.

Same model (SmolLM2-135M-Instruct, offline), same batches of first sentences (the RTE pool, or the
demo pool; sorted by length and cut into batches, the same batches for every side), same sampling
(top-p 0.9 without top-k, temperature 0.8, repetition penalty 1.5) and the same number of new tokens: eos is
forbidden until the budget on every side (``min_new_tokens``), so every row generates exactly
``--new-tokens`` tokens. dawgen conditions on a soft prompt of ``--prompt-tokens`` vectors (a label
description's token embeddings); generate() gets those tokens as text, so both see the same input.

Sides: dawgen as stage 2 runs it (``precision: auto`` -- bf16 weights on a CPU with native bf16, else
fp32 -- the label prompt's keys/values computed once, a preallocated cache); dawgen with ``quantize:
int8``; generate() with the model as loaded (fp32 weights, what ``model.generate()`` does by default) and
with the same weights as dawgen's (bf16 where dawgen's are). The bound: a matmul probe (GFLOP/s in the
weights' dtype) and a memory probe (GB/s of a large copy) in the same run give the least time the
workload can take: its prefill FLOPs at the probe's rate, and per decode step the larger of its FLOPs
over the matmul rate and its weight bytes over the bandwidth.

    python benchmarks/generation_throughput.py [--quick] [--threads N] [--step-probe]

``--step-probe`` first times one decode step alone (a cache of 80 positions, 16 and 64 rows) in each of
the ways a model can compute it: fp32, fp32 weights under bf16 autocast, bf16 weights, int8-dynamic.

Ends with `speedup_vs_hf_generate: <ratio>` (tokens/s of dawgen over generate() as loaded, fp32).
"""

from __future__ import annotations

import argparse
import copy

import torch
from common import SHARED_DATA, timed

from dawgen.data.sources import demo_dir, demo_task
from dawgen.generator.prompts import label_texts
from dawgen.generator.sequences import SequenceBuilder
from dawgen.models.inference import Quantize, for_decoding
from dawgen.models.loading import DEFAULT_MODEL, load_model
from dawgen.models.precision import cpu_has_native_bf16, cpu_model
from dawgen.synthesis.decoding import PromptCache, SamplingSettings, generate_batch, row_seed
from dawgen.synthesis.pool import read_pool
from dawgen.tasks import get_task

TOP_P, TEMPERATURE, PENALTY = 0.9, 0.8, 1.5
CPU = torch.device("cpu")


def first_sentence_batches(builder: SequenceBuilder, pool: list[str], batch_size: int, batches: int):
    """``batches`` batches of contexts (``s1 <connector>``), length-sorted as dawgen batches them."""
    contexts = sorted((builder.context_ids(text) for text in pool[: batch_size * batches]), key=len)
    return [contexts[start : start + batch_size] for start in range(0, len(contexts), batch_size)]


def dawgen_seconds(model, prompt, batches, settings) -> float:
    def run() -> None:
        source = PromptCache(model, prompt)  # once for the whole run, as stage 2 does
        for number, contexts in enumerate(batches):
            seeds = [row_seed(0, number * len(contexts) + row) for row in range(len(contexts))]
            generate_batch(model, source, contexts, seeds, settings)

    return timed(run)


def hf_seconds(model, tokenizer, prompt_ids: list[int], batches, new_tokens: int) -> float:
    tokenizer.padding_side = "left"

    def run() -> None:
        for contexts in batches:
            inputs = tokenizer.pad({"input_ids": [prompt_ids + c for c in contexts]}, return_tensors="pt")
            with torch.no_grad():
                model.generate(
                    **inputs, do_sample=True, top_p=TOP_P, top_k=0, temperature=TEMPERATURE, repetition_penalty=PENALTY,
                    max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id,
                )  # fmt: skip

    return timed(run)


def decode_step_ms(model, rows: int, context: int = 80, steps: int = 8, autocast: bool = False) -> float:
    """Milliseconds of one decode step of ``rows`` rows after a ``context``-token prefill (the last position's
    logits only, as dawgen keeps them)."""
    keep = torch.tensor([-1])
    ids = torch.randint(100, 1000, (rows, context))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        cache = model(input_ids=ids, use_cache=True, logits_to_keep=keep).past_key_values
        step = ids[:, -1:]
        model(input_ids=step, past_key_values=cache, logits_to_keep=keep)  # warm-up
        seconds = timed(
            lambda: [model(input_ids=step, past_key_values=cache, logits_to_keep=keep) for _ in range(steps)]
        )
    return 1000 * seconds / steps


def print_step_probe(as_loaded, bf16, int8) -> None:
    """One decode step per way of computing it, at 16 and 64 rows (tokens/s = rows / step time)."""
    ways = {"fp32": (as_loaded, False), "int8-dynamic": (int8, False)}
    if bf16.dtype == torch.bfloat16:
        ways |= {"bf16 autocast (fp32 weights)": (as_loaded, True), "bf16 weights": (bf16, False)}
    for rows in (16, 64):
        for name, (model, autocast) in ways.items():
            ms = decode_step_ms(model, rows, autocast=autocast)
            print(f"decode step, {rows} rows, {name:>28}: {ms:7.1f} ms ({1000 * rows / ms:6.1f} tokens/s)")


def matmul_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 5) -> float:
    """The best GFLOP/s of a square matmul in ``dtype`` (what the CPU's GEMM kernels reach)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def copy_gbps(megabytes: int = 512, repeats: int = 3) -> float:
    """The best GB/s of copying a large buffer (read + write), beyond every cache."""
    source = torch.empty(megabytes * 2**20, dtype=torch.uint8).fill_(1)
    target = torch.empty_like(source)
    target.copy_(source)
    best = min(timed(lambda: target.copy_(source)) for _ in range(repeats))
    return 2 * source.numel() / best / 1e9


def bound_seconds(model, batches, new_tokens: int, gflops: float, gbps: float) -> float:
    """The least time of the workload on this machine: prefill at the matmul rate; every decode step at the
    larger of its FLOPs over the matmul rate and its weight bytes over the copy bandwidth."""
    embedding = model.get_input_embeddings().weight
    linear = sum(p.numel() for p in model.parameters()) - embedding.numel()  # the layers a token runs through
    head = embedding.numel()  # tied LM head: one vocab x d matmul per scored position
    weight_bytes = (linear + head) * embedding.element_size()
    seconds = 0.0
    for contexts in batches:
        prefill_tokens = sum(len(c) for c in contexts)  # the label prompt's keys/values are reused, as dawgen does
        seconds += (2 * linear * prefill_tokens + 2 * head * len(contexts)) / (gflops * 1e9)
        step_flops = 2 * (linear + head) * len(contexts)
        seconds += new_tokens * max(step_flops / (gflops * 1e9), weight_bytes / (gbps * 1e9))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 batches of 16 new tokens (a few minutes)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=None, help="default 2 (--quick) or 6")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 16 (--quick) or 50")
    parser.add_argument("--prompt-tokens", type=int, default=20, help="soft-prompt length (and text prompt length)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--step-probe", action="store_true", help="first time one decode step per precision")
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
    tokenizer, as_loaded = loaded.tokenizer, loaded.model.eval()
    description = label_texts(task)[-1]  # the "not entailed" label's prompt text
    text_ids = tokenizer(description, add_special_tokens=False)["input_ids"]
    prompt_ids = (text_ids * (args.prompt_tokens // len(text_ids) + 1))[: args.prompt_tokens]
    prompt = as_loaded.get_input_embeddings().weight[torch.tensor(prompt_ids)].detach().float()
    batches = first_sentence_batches(SequenceBuilder(task, tokenizer), pool, args.batch_size, batches_count)
    settings = SamplingSettings(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, top_p=TOP_P,
        temperature=TEMPERATURE, repetition_penalty=PENALTY, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
    )  # fmt: skip
    dawgen, weights = for_decoding(copy.deepcopy(as_loaded), CPU, "auto")
    int8, _ = for_decoding(copy.deepcopy(as_loaded), CPU, "auto", Quantize.INT8)
    tokens = sum(len(b) for b in batches) * new_tokens
    context = sum(len(c) for b in batches for c in b) / sum(len(b) for b in batches)
    print(f"CPU: {cpu_model()}, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}; "
          f"{torch.get_num_threads()} threads; dawgen computes in {weights} ('auto')")  # fmt: skip
    print(f"{task.name} pool, {args.model}: {len(batches)} batches of {args.batch_size}, first sentences of "
          f"{context:.0f} tokens on average, {args.prompt_tokens} prompt tokens, {new_tokens} new tokens")  # fmt: skip
    if args.step_probe:
        print_step_probe(as_loaded, dawgen, int8)
    sides = {
        f"dawgen ({weights})": lambda: dawgen_seconds(dawgen, prompt, batches, settings),
        "dawgen (int8-dynamic)": lambda: dawgen_seconds(int8, prompt, batches, settings),
        "hf generate() (fp32, as loaded)": lambda: hf_seconds(as_loaded, tokenizer, prompt_ids, batches, new_tokens),
        f"hf generate() ({weights})": lambda: hf_seconds(dawgen, tokenizer, prompt_ids, batches, new_tokens),
    }
    if weights == "fp32":  # the same model twice: time it once
        del sides[f"hf generate() ({weights})"]
    warm = [batch[:2] for batch in batches[:1]]
    for side in (dawgen, int8):
        dawgen_seconds(side, prompt, warm, settings)
    hf_seconds(as_loaded, tokenizer, prompt_ids, warm, 2)
    results = {name: run() for name, run in sides.items()}
    gflops = matmul_gflops(dawgen.dtype)
    gbps = copy_gbps()
    bound = bound_seconds(dawgen, batches, new_tokens, gflops, gbps)
    for name, seconds in results.items():
        print(f"{name:>32}: {tokens / seconds:8.1f} tokens/s ({seconds:.2f} s for {tokens} tokens)")
    print(f"{'machine bound':>32}: {tokens / bound:8.1f} tokens/s (matmul {gflops:.0f} GFLOP/s in {dawgen.dtype}, "
          f"copy {gbps:.1f} GB/s)")  # fmt: skip
    ours = results[f"dawgen ({weights})"]
    int8_seconds = results["dawgen (int8-dynamic)"]
    print(f"fraction_of_bound: {bound / ours:.2f} (int8: {bound / int8_seconds:.2f} of the {weights} bound)")
    if f"hf generate() ({weights})" in results:
        print(f"speedup_vs_hf_generate_same_weights: {results[f'hf generate() ({weights})'] / ours:.2f}")
    hf = results["hf generate() (fp32, as loaded)"]
    print(f"speedup_int8_vs_hf_generate: {hf / int8_seconds:.2f}")
    print(f"speedup_vs_hf_generate: {hf / ours:.2f}")


if __name__ == "__main__":
    main()
