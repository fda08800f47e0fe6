"""Prompt-tuning training throughput per PEFT type: dawgen's PromptTrainer against PEFT + the HF Trainer.

For each PEFT type the classifier offers (``prompt``: dawgen's soft prompt; ``prefix``, ``lora``: PEFT's
adapters on the same model), both sides train the same model (SmolLM2-135M-Instruct, offline) on the
same data (RTE k-shot seed 13, or the demo set) with the same batch size, steps, optimizer and learning
rate (the type's defaults: Adafactor 0.3, AdamW 1e-2, AdamW 1e-3), and the same precision (fp32, or
bf16 autocast: ``bf16=True`` for the Trainer). The Trainer side is PEFT's documented recipe: a
CAUSAL_LM PEFT model (``PromptTuningConfig``, or dawgen's own prefix/LoRA config), the template plus
the label word as the sequence, loss on the label word only, padding to the longest row of each batch,
and its best case, ``train_sampling_strategy="group_by_length"`` (transformers 5's ``group_by_length``).
On 32 examples at batch 8 its mega-batches hold min(32 // (8 * 4), 50) = 1 batch, so it only orders the
rows inside random batches; ``--same-batches`` also times the Trainer on dawgen's own length-bucketed
batches (a sequential sampler over them), which isolates what the step itself costs.

Steps are whole epochs (32 examples, 4 steps each at batch 8), so both sides train on the same tokens.
Tokens are the real tokens of the rows (the template and, on the Trainer side, the label word) plus the
soft prompt's positions for ``prompt`` (a prefix's positions pass no weights). The FLOP utilisation is
dawgen's 4 x non-embedding parameters x tokens / time (forward and input-backward of every weight), over
what a matmul probe in the run's compute dtype achieves in the same run (the best of several, probed
before and after every type's runs: on a shared machine the best is what the cores can give). dawgen's
side stores the frozen linear layers in the autocast dtype, as a run that loads its own model does; under
bf16 a third row times the same loop with the fp32 weights that autocast casts on every forward.

    python benchmarks/pt_throughput.py [--quick] [--precision fp32|bf16|auto] [--types prompt,lora]

Ends with ``speedup_vs_peft_trainer: <x>`` (steps/s of dawgen over the Trainer's, the geometric mean
over the PEFT types run; the minimum is printed above it) and ``flop_utilisation: <x>`` (dawgen's, the
geometric mean over the types likewise).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import replace

import torch
from common import machine_line, rte_or_demo_split, timed

from dawgen.classifier.config import PEFT_DEFAULTS, OptimizerName, PeftKind, PromptTuneConfig
from dawgen.classifier.encoding import TaskEncoder
from dawgen.classifier.peft_types import build_peft_config
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.models.loading import DEFAULT_MODEL, load_model
from dawgen.models.precision import precision_name, resolve_precision, store_frozen_linears

EXAMPLES_PER_EPOCH = 32


def non_embedding_parameters(model: torch.nn.Module) -> int:
    """Parameters outside the input embedding (a tied LM head is the same tensor, counted once, not at all)."""
    embedding = model.get_input_embeddings().weight
    seen = {id(embedding)}
    total = 0
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            total += param.numel()
    return total


def matmul_probe(dtype: torch.dtype, repeats: int = 10) -> float:
    """FLOP/s of a [2048, 576] x [576, 1536] matmul (a SmolLM2 MLP projection) in ``dtype``, best of ``repeats``."""
    a = torch.randn(2048, 576).to(dtype)
    b = torch.randn(576, 1536).to(dtype)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 2048 * 576 * 1536 / best


def dawgen_seconds(
    task, examples, steps: int, config: PromptTuneConfig, store: bool = True
) -> tuple[float, list[list[int]]]:
    """dawgen's own loop (length-bucketed batches); its one dev evaluation scores a single example. Also
    the batches it trained on (rows as indices into ``examples``). ``store``: the frozen linear layers are
    stored in the autocast dtype once the adapter is attached, as a run that loads its model does
    (``train_classifier(owns_model=True)``); without it autocast casts the fp32 weights on every forward."""
    scorer = VerbalizerScorer(load_model(DEFAULT_MODEL), task, precision=config.precision, device="cpu")
    items = scorer.encoder.encode_all(examples)

    def train(n: int) -> None:
        with PromptTrainer(scorer, replace(config, max_steps=n, eval_every=n)) as trainer:
            if store:
                store_frozen_linears(scorer.model, scorer.autocast_dtype)
            trainer.train(items, items[:1])

    train(1)  # warm-up
    return timed(lambda: train(steps)), dawgen_batches(items, config, steps, task.num_labels)


def dawgen_batches(items, config: PromptTuneConfig, steps: int, num_labels: int) -> list[list[int]]:
    from dawgen.classifier.combine import Combine, plan_steps

    plan = plan_steps(
        Combine.REAL, items, batch_size=config.batch_size, syn_batch_size=config.syn_batch_size, seed=config.seed,
        num_labels=num_labels,
    )  # fmt: skip
    index = {id(item): i for i, item in enumerate(items)}
    return [[index[id(item)] for item in step.batches[0][1]] for step, _ in zip(plan, range(steps), strict=False)]


def trainer_seconds(task, examples, steps: int, config: PromptTuneConfig, bf16: bool, order=None) -> float:
    """PEFT + the HF Trainer, ``group_by_length`` (or, given ``order``, these batches in sequence)."""
    from datasets import Dataset
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    loaded = load_model(DEFAULT_MODEL)
    encoder = TaskEncoder(task, loaded.tokenizer, loaded.family)
    rows = []
    for example in examples:
        prompt_ids = encoder.encode(example).input_ids
        answer = encoder.label_token_ids[task.label_index(example.label)]
        rows.append({"input_ids": [*prompt_ids, answer], "labels": [-100] * len(prompt_ids) + [answer]})
    if order is not None:
        rows = [rows[i] for batch in order for i in batch]
    dataset = Dataset.from_list(rows)
    if config.peft is PeftKind.PROMPT:
        peft_config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
    else:  # dawgen's own prefix/LoRA config (it reads the scorer's family and model only)
        scorer = VerbalizerScorer(loaded, task, precision="fp32", device="cpu")
        peft_config = build_peft_config(config, scorer)
    model = get_peft_model(loaded.model, peft_config)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, padding=True, label_pad_token_id=-100)
    optim = "adafactor" if config.resolved_optimizer is OptimizerName.ADAFACTOR else "adamw_torch"

    def train(n: int) -> None:
        args = TrainingArguments(
            output_dir=tempfile.mkdtemp(), max_steps=n, per_device_train_batch_size=config.batch_size,
            learning_rate=config.resolved_learning_rate, optim=optim, weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm, bf16=bf16, use_cpu=True, report_to=[], save_strategy="no",
            logging_strategy="no", disable_tqdm=True, seed=13, lr_scheduler_type="constant", warmup_steps=0,
            train_sampling_strategy="group_by_length" if order is None else "sequential",
        )  # fmt: skip
        Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator).train()

    train(1)  # warm-up
    return timed(lambda: train(steps))


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one epoch (4 steps) per side and type")
    parser.add_argument("--steps", type=int, default=None, help="training steps per side (whole epochs: 4, 8, ...)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--types", default="prompt,prefix,lora", help="PEFT types, comma-separated")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--virtual-tokens", type=int, default=20)
    parser.add_argument("--same-batches", action="store_true", help="also time the Trainer on dawgen's batches")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    kinds = [PeftKind(name.strip()) for name in args.types.split(",") if name.strip()]
    steps = args.steps or (4 if args.quick else 12)
    torch.manual_seed(0)
    task, split = rte_or_demo_split()
    examples = split.train[:EXAMPLES_PER_EPOCH]  # every batch is seen by both sides
    dtype = resolve_precision(args.precision, torch.device("cpu"))
    compute = dtype or torch.float32
    loaded = load_model(DEFAULT_MODEL)
    encoder = TaskEncoder(task, loaded.tokenizer, loaded.family)
    lengths = [len(encoder.encode(e).input_ids) for e in examples]
    params = non_embedding_parameters(loaded.model)
    del loaded
    print(machine_line())
    print(f"precision: {precision_name(dtype)} (requested {args.precision}); {task.name}: {len(examples)} examples "
          f"of {sum(lengths) / len(lengths):.0f} tokens on average, batch {args.batch_size}, {steps} steps each, "
          f"{args.virtual_tokens} virtual tokens, {params / 1e6:.1f}M non-embedding parameters")  # fmt: skip
    probe = matmul_probe(compute)
    print(f"matmul probe ({compute}): {probe / 1e9:.1f} GFLOP/s")
    speedups, utilisations = [], []
    for kind in kinds:
        optimizer, lr = PEFT_DEFAULTS[kind]
        config = PromptTuneConfig(
            peft=kind, num_virtual_tokens=args.virtual_tokens, batch_size=args.batch_size, precision=args.precision,
            optimizer=optimizer, learning_rate=lr,
        )  # fmt: skip
        virtual = args.virtual_tokens if kind is PeftKind.PROMPT else 0
        probe = max(probe, matmul_probe(compute))
        ours, batches = dawgen_seconds(task, examples, steps, config)
        ours_tokens = sum(lengths[i] + virtual for batch in batches for i in batch)
        theirs = trainer_seconds(task, examples, steps, config, bf16=dtype == torch.bfloat16)
        theirs_tokens = steps * args.batch_size / len(examples) * sum(n + 1 + virtual for n in lengths)
        probe = max(probe, matmul_probe(compute))
        utilisation = 4 * params * ours_tokens / ours / probe
        rows = [("dawgen", ours, ours_tokens), ("peft+trainer", theirs, theirs_tokens)]
        if dtype is not None:  # the same loop with the fp32 weights autocast casts on every forward
            cast, _ = dawgen_seconds(task, examples, steps, config, store=False)
            rows.append(("dawgen, fp32 weights", cast, ours_tokens))
        if args.same_batches:
            same = trainer_seconds(task, examples, steps, config, dtype == torch.bfloat16, order=batches)
            rows.append(("peft+trainer, dawgen's batches", same, ours_tokens + steps * args.batch_size))
        for name, seconds, tokens in rows:
            print(f"{kind.value:>6} {name:>12}: {steps / seconds:.3f} steps/s, {tokens / seconds:.0f} tokens/s "
                  f"({seconds:.1f} s for {steps} steps, {optimizer.value} lr {lr:g})")  # fmt: skip
        print(f"{kind.value:>6} speedup {theirs / ours:.2f}, dawgen FLOP utilisation {utilisation:.2f} "
              f"(probe so far {probe / 1e9:.1f} GFLOP/s)")  # fmt: skip
        speedups.append(theirs / ours)
        utilisations.append(utilisation)
    print(f"minimum over {len(kinds)} types: speedup {min(speedups):.2f}, FLOP utilisation {min(utilisations):.2f}")
    print(f"speedup_vs_peft_trainer: {geomean(speedups):.2f}")
    print(f"flop_utilisation: {geomean(utilisations):.2f}")


if __name__ == "__main__":
    main()
