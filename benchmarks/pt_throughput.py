"""Prompt-tuning training throughput: dawgen's loop against PEFT + the Hugging Face Trainer.

Same model (SmolLM2-135M-Instruct, offline), same data (RTE k-shot seed 13, or the demo set),
same batch size, soft-prompt length, precision ("auto": fp32 on CPUs without native bf16) and
optimizer (Adafactor, lr 0.3). The Trainer side is PEFT's documented recipe: a PROMPT_TUNING
CAUSAL_LM model, the template plus the label word as the sequence, loss on the label word only,
padding to the longest sequence of each batch.

    python benchmarks/pt_throughput.py [--quick]

Ends with `speedup_vs_peft_trainer: <ratio>` (steps/s of dawgen over steps/s of the Trainer).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import torch
from common import rte_or_demo_split, timed

from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.encoding import TaskEncoder
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.models.loading import DEFAULT_MODEL, load_model
from dawgen.models.precision import resolve_precision


def dawgen_seconds(task, examples, steps: int, config: PromptTuneConfig) -> float:
    """dawgen's own loop (length-bucketed batches); its one dev evaluation scores a single example."""
    scorer = VerbalizerScorer(load_model(DEFAULT_MODEL), task, precision=config.precision, device="cpu")
    items = scorer.encoder.encode_all(examples)

    def train(n: int) -> None:
        PromptTrainer(scorer, replace(config, max_steps=n, eval_every=n)).train(items, items[:1])

    train(1)  # warm-up
    return timed(lambda: train(steps))


def trainer_seconds(task, examples, steps: int, config: PromptTuneConfig, bf16: bool) -> float:
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
    dataset = Dataset.from_list(rows)
    peft_config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens)
    model = get_peft_model(loaded.model, peft_config)
    collator = DataCollatorForSeq2Seq(loaded.tokenizer, padding=True, label_pad_token_id=-100)

    def train(n: int) -> None:
        args = TrainingArguments(
            output_dir=tempfile.mkdtemp(), max_steps=n, per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate, optim="adafactor", max_grad_norm=config.max_grad_norm, bf16=bf16,
            use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=13,
        )  # fmt: skip
        Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator).train()

    train(1)  # warm-up
    return timed(lambda: train(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps each (about two minutes)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--virtual-tokens", type=int, default=20)
    args = parser.parse_args()
    steps = args.steps or (4 if args.quick else 16)
    torch.manual_seed(0)
    task, split = rte_or_demo_split()
    config = PromptTuneConfig(num_virtual_tokens=args.virtual_tokens, batch_size=args.batch_size)
    dtype = resolve_precision(config.precision, torch.device("cpu"))
    examples = split.train  # 32 examples: every batch is seen by both sides, in the same order
    tokenizer = load_model(DEFAULT_MODEL).tokenizer
    encoder = TaskEncoder(task, tokenizer, load_model(DEFAULT_MODEL).family)
    mean_len = sum(len(encoder.encode(e).input_ids) for e in examples) / len(examples)
    tokens_per_step = args.batch_size * (mean_len + args.virtual_tokens)
    print(f"{task.name}: {len(examples)} examples of {mean_len:.0f} tokens on average, batch {args.batch_size}, "
          f"{args.virtual_tokens} virtual tokens, {steps} steps each, autocast {dtype}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    ours = dawgen_seconds(task, examples, steps, config)
    theirs = trainer_seconds(task, examples, steps, config, bf16=dtype == torch.bfloat16)
    for name, seconds in (("dawgen", ours), ("peft+trainer", theirs)):
        print(f"{name:>13}: {steps / seconds:.3f} steps/s, {steps * tokens_per_step / seconds:.0f} tokens/s "
              f"({seconds:.1f} s for {steps} steps)")  # fmt: skip
    print(f"speedup_vs_peft_trainer: {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
