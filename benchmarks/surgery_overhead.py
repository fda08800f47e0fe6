"""Step time of `paired` + gradient surgery against plain `paired`, on the same batches.

Both take one real and one synthetic batch per step and one gradient per batch (two forward and
backward passes through the frozen model); surgery adds a few dot products on the prompt-sized
gradients. Steps alternate between the two settings so that both see the same machine load.

    python benchmarks/surgery_overhead.py [--quick]

Ends with `surgery_over_paired: <ratio>` (median step time with surgery over without).
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import islice

from common import rte_or_demo_split, rte_or_demo_synthetic

from dawgen.classifier.combine import Combine, plan_steps
from dawgen.classifier.config import PromptTuneConfig
from dawgen.classifier.scorer import VerbalizerScorer
from dawgen.classifier.train import PromptTrainer
from dawgen.models.loading import DEFAULT_MODEL, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 steps each (about two minutes)")
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    steps = args.steps or (4 if args.quick else 12)
    task, split = rte_or_demo_split()
    synthetic = rte_or_demo_synthetic(task)
    scorer = VerbalizerScorer(load_model(DEFAULT_MODEL), task, device="cpu")
    real, syn = scorer.encoder.encode_all(split.train), scorer.encoder.encode_all(synthetic.examples)
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
    print(f"{task.name}: {steps} paired steps each (real batch 8 + synthetic batch 8), precision "
          f"{scorer.autocast_dtype or 'fp32'}, {len(synthetic.examples)} synthetic examples")  # fmt: skip
    print(f"paired:          median {plain:.3f} s/step")
    print(f"paired+surgery:  median {with_surgery:.3f} s/step ({conflicts}/{steps} steps conflicted)")
    print(f"surgery_over_paired: {with_surgery / plain:.3f}")


if __name__ == "__main__":
    main()
