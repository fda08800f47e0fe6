"""Generator-tuning step cost: DawGen's and FewGen's bi-level steps against plain label-prompt tuning.

DawGen runs twice: with the exact hypergradient (the double backward, the default) and with
``hypergradient = finite-difference`` (DARTS: one no-grad forward under Q +/- eps v instead of the
double backward); plain and both DawGen runs again with deep label prompts (``prompt_depth = deep``),
whose ratios are over plain with deep prompts.

Same model (SmolLM2-135M-Instruct, offline), same label-balanced batches (RTE k-shot seed 13, or the
demo set; 2 per label), same prompt length (20) and precision ("auto": fp32 on CPUs without native
bf16). Every run goes in its own subprocess, so its peak resident memory (``ru_maxrss``) is its
own; the model is loaded the same way in each.

    python benchmarks/generator_step.py [--quick]

Before the metrics it times the phases a finite-difference step is made of, on plain's batches (input and
deep prompts): the forward under Q, plain's forward + backward, ``L_disc``'s forward over every label +
backward to the prompts, and the no-grad forward under ``Q +/- eps v``. From them, two floors over plain:
``fd_floor`` (the finite-difference step with no overhead: a first-order look-ahead step, L_disc's forward
and backward, the perturbed pair, the real step's backward) and ``hypergradient_floor`` (what any bi-level
step of Algorithm 1 needs, however W's gradient is estimated: the forward under Q, the backward to Q that
forms Q', L_disc's forward and backward under Q', and the real step's backward under the updated W).

Ends with one line per metric, seconds per step over those of plain: `fewgen_over_plain:`,
`dawgen_over_plain:` (exact hypergradient) and, last, `dawgen_fd_over_plain:` (finite-difference).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

RUNS = {  # name: (variant, hypergradient, prompt depth)
    "plain": ("plain", "exact", "input"),
    "fewgen": ("fewgen", "exact", "input"),
    "dawgen": ("dawgen", "exact", "input"),
    "dawgen-fd": ("dawgen", "finite-difference", "input"),
    "plain-deep": ("plain", "exact", "deep"),
    "dawgen-deep": ("dawgen", "exact", "deep"),
    "dawgen-fd-deep": ("dawgen", "finite-difference", "deep"),
}


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(name: str, model: str, steps: int, per_label: int, prompt_tokens: int, threads: int):
    """Run ``name``'s trainer and ``steps + 1`` batches: the first batches of epoch 0, in order."""
    import torch
    from common import rte_or_demo_split

    from dawgen.generator import GeneratorConfig, GeneratorTrainer, balanced_epoch
    from dawgen.models.loading import load_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    task, split = rte_or_demo_split()
    variant, hypergradient, depth = RUNS[name]
    config = GeneratorConfig(
        variant=variant, hypergradient=hypergradient, num_prompt_tokens=prompt_tokens, per_label_batch=per_label,
        device="cpu", prompt_depth=depth,
    )  # fmt: skip
    trainer = GeneratorTrainer(load_model(model), task, config, owns_model=True)  # as the pipeline runs it
    sequences = trainer.builder.encode_all(split.train)
    batches = balanced_epoch(sequences, per_label, task.num_labels, config.seed, epoch=0)
    return trainer, [[sequences[i] for i in batch] for batch in (batches * (steps + 1))[: steps + 1]]


def worker(name: str, model: str, steps: int, per_label: int, prompt_tokens: int, threads: int) -> dict:
    """Time ``steps`` training steps of run ``name`` after one warm-up step, on the first batches of epoch 0."""
    import torch

    trainer, batches = setup(name, model, steps, per_label, prompt_tokens, threads)
    loaded_rss = peak_rss_mb()
    variant, hypergradient, depth = RUNS[name]
    trainer.take_step(batches[0])  # warm-up
    start = time.perf_counter()
    for batch in batches[1:]:
        trainer.take_step(batch)
    seconds = (time.perf_counter() - start) / steps
    tokens = sum(len(s.context) + len(s.target) + prompt_tokens for b in batches[1:] for s in b) / steps
    return {
        "run": name, "variant": variant, "hypergradient": hypergradient, "depth": depth, "seconds_per_step": seconds,
        "peak_rss_mb": peak_rss_mb(), "rss_after_load_mb": loaded_rss,
        "tokens_per_batch": tokens, "precision": str(trainer.objective.autocast_dtype or "fp32"),
        "threads": torch.get_num_threads(),
    }  # fmt: skip


def phases(depth: str, model: str, steps: int, per_label: int, prompt_tokens: int, threads: int) -> dict:
    """Median seconds of each phase of a finite-difference step on the batches ``worker`` times (see the
    module's docstring), after one warm-up of each; the prompts stay at their initial values."""
    import torch
    from common import timed

    from dawgen.generator.sequences import collate

    run = "dawgen-fd-deep" if depth == "deep" else "dawgen-fd"
    trainer, batches = setup(run, model, steps, per_label, prompt_tokens, threads)
    objective, prompts = trainer.objective, trainer.prompts.weight

    def forward(batch) -> torch.Tensor:
        return objective.loss(objective.score(prompts, batch), batch, None, train_weight_net=False).total

    def plain(batch) -> None:
        torch.autograd.grad(forward(batch), prompts)

    def disc(batch) -> None:
        ahead = prompts.detach().requires_grad_()
        torch.autograd.grad(objective.disc(ahead, batch), ahead)

    def pair(batch) -> None:
        with torch.no_grad():
            base = prompts.detach()
            objective.score_pair(base + 1e-3, base - 1e-3, batch)

    collated = [collate(b, objective.prompt_slots, trainer.pad_id) for b in batches]
    timings = {}
    for phase, fn in {"forward": forward, "plain": plain, "disc": disc, "pair": pair}.items():
        fn(collated[0])  # warm-up
        timings[phase] = statistics.median(timed(lambda b=b, fn=fn: fn(b)) for b in collated[1:])
    return {"run": f"phases-{depth}", **timings}


def floors(t: dict) -> tuple[float, float]:
    """(fd_floor, hypergradient_floor) over plain, from ``phases``' timings."""
    bilevel = t["plain"] + (t["plain"] - t["forward"]) + t["disc"]  # look-ahead step, L_disc, real backward
    return (bilevel + t["pair"]) / t["plain"], bilevel / t["plain"]


def run_worker(name: str, args: argparse.Namespace, steps: int) -> dict:
    """``worker`` in a fresh interpreter; its result is the last line of its output."""
    command = [
        sys.executable, __file__, "--worker", name, "--model", args.model, "--steps", str(steps),
        "--per-label-batch", str(args.per_label_batch), "--prompt-tokens", str(args.prompt_tokens),
        "--threads", str(args.threads),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} worker failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    from dawgen.models.loading import DEFAULT_MODEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 timed steps per run instead of 10")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--per-label-batch", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=argparse.SUPPRESS)  # e.g. a tiny model for a dry run
    parser.add_argument("--worker", choices=[*RUNS, "phases-input", "phases-deep"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    steps = args.steps or (3 if args.quick else 10)
    if args.worker:
        settings = (args.model, steps, args.per_label_batch, args.prompt_tokens, args.threads)
        if args.worker.startswith("phases-"):
            result = phases(args.worker.removeprefix("phases-"), *settings)
        else:
            result = worker(args.worker, *settings)
        print(json.dumps(result))
        return
    results = {name: run_worker(name, args, steps) for name in RUNS}
    timings = {depth: run_worker(f"phases-{depth}", args, steps) for depth in ("input", "deep")}
    plain = results["plain"]
    print(f"{args.model}: {steps} timed steps per run, {args.per_label_batch} per label, "
          f"{args.prompt_tokens} prompt tokens, ~{plain['tokens_per_batch']:.0f} tokens per batch, "
          f"{plain['precision']}, {plain['threads']} threads")  # fmt: skip
    for name, r in results.items():
        ratio = r["seconds_per_step"] / plain["seconds_per_step"]
        print(f"{name:>14}: {r['seconds_per_step']:.3f} s/step ({ratio:.2f}x"
              f" plain), peak RSS {r['peak_rss_mb']:.0f} MB ({r['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x plain;"
              f" {r['rss_after_load_mb']:.0f} MB after loading)")  # fmt: skip
    for depth, t in timings.items():
        fd, any_hypergradient = floors(t)
        print(f"phases ({depth} prompts): forward {t['forward']:.3f} s, plain step {t['plain']:.3f} s, "
              f"L_disc forward + backward {t['disc']:.3f} s, perturbed pair {t['pair']:.3f} s: "
              f"fd floor {fd:.2f}x plain, any hypergradient's floor {any_hypergradient:.2f}x")  # fmt: skip
    deep = results["plain-deep"]["seconds_per_step"]
    print(f"plain_deep_over_plain: {deep / plain['seconds_per_step']:.2f}")
    print(f"deep_dawgen_over_plain_deep: {results['dawgen-deep']['seconds_per_step'] / deep:.2f}")
    print(f"deep_dawgen_fd_over_plain_deep: {results['dawgen-fd-deep']['seconds_per_step'] / deep:.2f}")
    print(f"fd_floor_over_plain: {floors(timings['input'])[0]:.2f}")
    print(f"hypergradient_floor_over_plain: {floors(timings['input'])[1]:.2f}")
    print(f"fewgen_over_plain: {results['fewgen']['seconds_per_step'] / plain['seconds_per_step']:.2f}")
    print(f"dawgen_over_plain: {results['dawgen']['seconds_per_step'] / plain['seconds_per_step']:.2f}")
    print(f"dawgen_fd_over_plain: {results['dawgen-fd']['seconds_per_step'] / plain['seconds_per_step']:.2f}")


if __name__ == "__main__":
    main()
