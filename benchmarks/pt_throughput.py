"""Prompt-tuning training throughput: dawgen's loop against PEFT + the Hugging Face Trainer.

Same model (SmolLM2-135M-Instruct, offline), same data (RTE k-shot seed 13, or the demo set),
same batch size, same soft-prompt length, same precision, same optimizer (Adafactor, lr 0.3).
The Trainer side is PEFT's documented recipe: a PROMPT_TUNING CAUSAL_LM model, the template plus
the label word as the sequence, loss on the label word only, padding to the longest in the batch.

    python benchmarks/pt_throughput.py [--quick]

Ends with `speedup_vs_peft_trainer: <ratio>` (steps/s of dawgen over steps/s of the Trainer).
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from common import rte_or_demo_split, timed

from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.models.loading import DEFAULT_MODEL, load_model


def dawgen_seconds(task, train, steps: int, batch_size: int, tokens: int, precision: str) -> float:
    loaded = load_model(DEFAULT_MODEL)
    scorer = VerbalizerScorer(loaded, task, precision=precision, device="cpu")
    items = scorer.encoder.encode_all(train)
    config = PromptTuneConfig(num_virtual_tokens=tokens, batch_size=batch_size, max_steps=steps, precision=precision)
    PromptTrainer(scorer, PromptTuneConfig(**{**vars(config), "max_steps": 1})).train(items, items[:1])  # warm-up
    trainer = PromptTrainer(scorer, config)
    trainer.evaluate = lambda *a, **k: {"accuracy": 0.0, "loss": 0.0}  # time training only, as the Trainer side
    return timed(lambda: trainer.train(items, items[:1]))


def trainer_seconds(task, train, steps: int, batch_size: int, tokens: int, bf16: bool) -> float:
    from datasets import Dataset
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    loaded = load_model(DEFAULT_MODEL)
    tokenizer = loaded.tokenizer
    from dawgen.classifier.encoding import TaskEncoder

    encoder = TaskEncoder(task, tokenizer, loaded.family)
    rows = []
    for example in train:
        prompt_ids = encoder.encode(example).input_ids
        answer = tokenizer(encoder.answer_text(example.label), add_special_tokens=False)["input_ids"][:1]
        rows.append({"input_ids": prompt_ids + answer, "labels": [-100] * len(prompt_ids) + answer})
    dataset = Dataset.from_list(rows)
    model = get_peft_model(loaded.model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=tokens))

    def run(n_steps: int) -> None:
        args = TrainingArguments(
            output_dir=tempfile.mkdtemp(), max_steps=n_steps, per_device_train_batch_size=batch_size,
            learning_rate=0.3, optim="adafactor", bf16=bf16, use_cpu=True, report_to=[], save_strategy="no",
            logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=13,
        )  # fmt: skip
        collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator).train()

    run(1)  # warm-up
    return timed(lambda: run(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps (about a minute)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--virtual-tokens", type=int, default=20)
    args = parser.parse_args()
    steps = args.steps or (6 if args.quick else 24)
    torch.manual_seed(0)
    task, split = rte_or_demo_split()
    bf16 = os.environ.get("DAWGEN_BENCH_PRECISION", "bf16") == "bf16"
    precision = "bf16" if bf16 else "fp32"
    tokens_per_step = None
    from dawgen.classifier.encoding import TaskEncoder

    encoder = TaskEncoder(task, load_model(DEFAULT_MODEL).tokenizer, load_model(DEFAULT_MODEL).family)
    mean_len = sum(len(encoder.encode(e).input_ids) for e in split.train) / len(split.train)
    tokens_per_step = args.batch_size * (mean_len + args.virtual_tokens)
    print(
        f"task {task.name}, {len(split.train)} examples, mean length {mean_len:.0f} tokens, batch {args.batch_size}, "
        f"{args.virtual_tokens} virtual tokens, {steps} steps, precision {precision}, threads {torch.get_num_threads()}"
    )
    ours = dawgen_seconds(task, split.train, steps, args.batch_size, args.virtual_tokens, precision)
    theirs = trainer_seconds(task, split.train, steps, args.batch_size, args.virtual_tokens, bf16)
    for name, seconds in (("dawgen", ours), ("peft+trainer", theirs)):
        print(
            f"{name:>13}: {steps / seconds:.3f} steps/s, {steps * tokens_per_step / seconds:.0f} tokens/s "
            f"({seconds:.1f} s for {steps} steps)"
        )
    print(f"speedup_vs_peft_trainer: {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
