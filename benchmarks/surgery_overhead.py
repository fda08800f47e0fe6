"""Step time of `paired` + gradient surgery against plain `paired`, on the same batches.

Both take one real and one synthetic batch per step and one gradient per batch (two forward and
backward passes through the frozen model); surgery adds a few dot products on the prompt-sized
gradients, and a projection on the steps whose gradients conflict. Steps alternate between the two
settings so that both see the same machine load.

So that the projection path is the one timed, the default synthetic batches are built to conflict:
each step's synthetic batch is its real batch with every label moved to the next label of the task, so
the two gradients point apart (`--synthetic fewgen` pairs the real batches with FewGen's public RTE set
instead, where few steps conflict). The script prints how many timed steps conflicted.

    python benchmarks/surgery_overhead.py [--quick] [--synthetic conflicting|fewgen]

Ends with `surgery_over_paired: <ratio>` (median step time with surgery over without).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from itertools import islice

import torch
from common import machine_line, rte_or_demo_split, rte_or_demo_synthetic

from dawgen.classifier.batching import epoch_batches
from dawgen.classifier.combine import Combine, Source, Step, plan_steps
from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.data.example import Example
from dawgen.models.loading import DEFAULT_MODEL, load_model


def relabelled(task, examples: list[Example]) -> list[Example]:
    """The same pairs, each labelled with the task's next label: gradients that oppose the real ones."""
    labels = list(task.labels)
    return [replace(e, label=labels[(labels.index(e.label) + 1) % len(labels)]) for e in examples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 steps each (about three minutes)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--synthetic", choices=["conflicting", "fewgen"], default="conflicting")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = args.steps or (6 if args.quick else 12)
    task, split = rte_or_demo_split()
    conflicting = args.synthetic == "conflicting"
    examples = relabelled(task, split.train) if conflicting else rte_or_demo_synthetic(task).examples
    scorer = VerbalizerScorer(load_model(DEFAULT_MODEL), task, device="cpu")
    real, syn = scorer.encoder.encode_all(split.train), scorer.encoder.encode_all(examples)
    if conflicting:  # every real batch against itself, relabelled
        twin = {id(r): s for r, s in zip(real, syn, strict=True)}
        batches = islice(epoch_batches(real, 8, seed=13), steps + 1)
        plan = [Step(((Source.REAL, b), (Source.SYN, [twin[id(r)] for r in b]))) for b in batches]
    else:
        plan = list(islice(plan_steps(Combine.PAIRED, real, syn, batch_size=8, syn_batch_size=8, seed=13,
                                      num_labels=task.num_labels), steps + 1))  # fmt: skip
    trainers = {
        surgery: PromptTrainer(scorer, PromptTuneConfig(combine="paired", surgery=surgery)) for surgery in (False, True)
    }
    times: dict[bool, list[float]] = {False: [], True: []}
    conflicts = 0
    for i, step in enumerate(plan):
        for surgery, trainer in trainers.items():
            start = time.perf_counter()
            record = trainer.take_step(step)
            if i > 0:  # the first step of each is a warm-up
                times[surgery].append(time.perf_counter() - start)
                conflicts += int(surgery and record["conflict"])
    plain, with_surgery = statistics.median(times[False]), statistics.median(times[True])
    print(machine_line())
    print(f"{task.name}: {steps} timed paired steps each (real batch 8 + synthetic batch 8), precision "
          f"{scorer.autocast_dtype or 'fp32'}, synthetic set: {args.synthetic} ({len(examples)} examples)")  # fmt: skip
    print(f"paired:          median {plain:.3f} s/step")
    print(f"paired+surgery:  median {with_surgery:.3f} s/step ({conflicts}/{steps} steps conflicted)")
    print(f"surgery_over_paired: {with_surgery / plain:.3f}")


if __name__ == "__main__":
    main()
