"""Stages 1 and 2: `dawgen tune-generator`, `dawgen generate`, `dawgen inspect-synthetic`, `dawgen judge-synthetic`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dawgen.cli.common import (
    USER_ERRORS,
    ConfigOpt,
    DataOpt,
    ModelOpt,
    SeedOpt,
    SetOpt,
    TaskOpt,
    app,
    fail,
    load_api,
    options_of,
    split_run_options,
)
from dawgen.config import config_from_dict
from dawgen.progress import console

GENERATOR_RUN_KEYS = ("task", "data", "model", "out", "k", "trust_remote_code")


@app.command("tune-generator")
def tune_generator_command(
    config: ConfigOpt = None,
    task: TaskOpt = None,
    data: DataOpt = None,
    model: ModelOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (generator/, metrics, plot, result); resumes if present.")
    ] = None,
    seed: SeedOpt = None,
    variant: Annotated[str | None, typer.Option(help="plain, fewgen or dawgen (default).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs over the few-shot set.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate of the label prompts (AdamW).")] = None,
    prompt_tokens: Annotated[int | None, typer.Option(help="Soft-prompt length per label.")] = None,
    prompt_depth: Annotated[
        str | None, typer.Option(help="input (embeddings, default) or deep (key/value prefixes at every layer).")
    ] = None,
    per_label_batch: Annotated[int | None, typer.Option(help="Examples of every label in a batch.")] = None,
    lambda_dist: Annotated[float | None, typer.Option(help="Weight of the distribution-aligned loss.")] = None,
    disc_form: Annotated[str | None, typer.Option(help="L_disc form: ce (default) or ratio.")] = None,
    dist_pairing: Annotated[str | None, typer.Option(help="L_dist negatives: label (default) or prompt.")] = None,
    hypergradient: Annotated[
        str | None,
        typer.Option(help="W's gradient through the look-ahead: exact (default) or finite-difference (DARTS)."),
    ] = None,
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ...")] = None,
    weight_temperature: Annotated[
        float | None, typer.Option(help="Token weights softmax(scores / T); T > 1 flattens them (default 1).")
    ] = None,
    weight_floor: Annotated[
        float | None, typer.Option(help="Share of uniform mixed into the token weights, in [0, 1] (default 0).")
    ] = None,
    weight_min_entropy: Annotated[
        float | None, typer.Option(help="Entropy floor of the token weights, entropy / log N in [0, 1) (default 0).")
    ] = None,
    eos_weight: Annotated[
        float | None, typer.Option(help="Extra weight of eos in the LM loss, >= 1 (default 1: none).")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Stage 1: tune per-label soft prompts of a frozen causal LM on few-shot data (DawGen, FewGen or plain)."""
    from dawgen.generator.config import GeneratorConfig

    api = load_api()
    flags = {
        "task": task, "data": data, "model": model, "out": out, "seed": seed, "variant": variant, "epochs": epochs,
        "learning_rate": lr, "num_prompt_tokens": prompt_tokens, "per_label_batch": per_label_batch,
        "lambda_dist": lambda_dist, "disc_form": disc_form, "dist_pairing": dist_pairing, "precision": precision,
        "device": device, "hypergradient": hypergradient, "prompt_depth": prompt_depth,
        "weight_temperature": weight_temperature, "weight_floor": weight_floor,
        "weight_min_entropy": weight_min_entropy, "eos_weight": eos_weight,
    }  # fmt: skip
    try:
        run, options = split_run_options(options_of(config, flags, set_), ("task", "data"), GENERATOR_RUN_KEYS)
        generator_config = config_from_dict(GeneratorConfig, options, str(config or "options"))
        outcome = api.tune_generator(generator_config=generator_config, **run)
    except USER_ERRORS as exc:
        fail(exc)
    result = outcome.result
    table = Table(title="generator tuning (dev split)")
    for column in ("task", "variant", "model", "kept epoch", "dev LM loss", "label discrimination %"):
        table.add_column(column)
    dev = result["dev"]
    table.add_row(
        result["task"], result["variant"], result["model"], str(result["best_epoch"]),
        f"{dev['dev_loss']:.3f}", f"{dev['dev_discrimination']:.1f}",
    )  # fmt: skip
    console.print(table)
    if out:
        console.print(f"generator, metrics and plot in [bold]{out}[/]")


GENERATE_RUN_KEYS = ("generator", "pool", "pool_column", "out", "task", "model", "few_shot", "k")


@app.command("generate")
def generate_command(
    config: ConfigOpt = None,
    generator: Annotated[Path | None, typer.Option(help="Tuned generator folder (from tune-generator).")] = None,
    pool: Annotated[
        str | None, typer.Option(help="First sentences: a txt/csv/tsv/jsonl/json file, a data root, or hf:NAME.")
    ] = None,
    pool_column: Annotated[str | None, typer.Option(help="The pool's text column (default: detected).")] = None,
    per_label: Annotated[int | None, typer.Option(help="Kept samples wanted per label (default 5000).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output JSON Lines file; resumes if its run was cut off.")] = None,
    task: TaskOpt = None,
    model: Annotated[str | None, typer.Option(help="Base model, if not where the generator says.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the pool order and of sampling.")] = None,
    greedy: Annotated[bool | None, typer.Option("--greedy/--sample", help="Argmax or nucleus sampling.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus mass (default 0.9).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature (default 0.8).")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Token budget of a sample (default 50).")] = None,
    repetition_penalty: Annotated[
        float | None, typer.Option(help="One penalty for every label (default: the task table's per label).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Rows decoded together (default 32).")] = None,
    copy_threshold: Annotated[
        float | None, typer.Option(help="Word-set overlap with the first sentence that counts as a copy (0.9).")
    ] = None,
    label_consistency: Annotated[
        bool | None,
        typer.Option("--label-consistency/--no-label-consistency", help="Keep only samples their label explains best."),
    ] = None,
    char_copy_threshold: Annotated[
        float | None, typer.Option(help="Character similarity to the first sentence that counts as a near-copy (0.9).")
    ] = None,
    consistency_filter: Annotated[
        str | None,
        typer.Option(help="off (default), judge (a MiniLM judge fitted on --few-shot) or classifier."),
    ] = None,
    judge_confidence: Annotated[
        float | None, typer.Option(help="Probability of its own label a sample needs from the judge (0.5).")
    ] = None,
    consistency_classifier: Annotated[
        str | None, typer.Option(help="Stage-3 classifier folder (a prompt-tune --out, or its adapter/).")
    ] = None,
    relatedness_floor: Annotated[
        str | None, typer.Option(help="off (default) or kshot: drop pairs less related than the label's k-shot pairs.")
    ] = None,
    relatedness_quantile: Annotated[
        float | None, typer.Option(help="Quantile of the label's k-shot cosines that is the floor (0.1).")
    ] = None,
    few_shot: Annotated[
        str | None, typer.Option(help="k-shot training split the judge and floor learn from (folder or data root).")
    ] = None,
    k: Annotated[int | None, typer.Option(help="Examples per label of the --few-shot split (16).")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32 (bf16: bf16 weights).")] = None,
    quantize: Annotated[
        str | None, typer.Option(help="none (default) or int8: dynamic int8 linear layers (CPU; faster decoding).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ...")] = None,
    stop_at: Annotated[
        str | None,
        typer.Option(help="Where a sample ends: auto (default: sentence for pair tasks, else eos), eos or sentence."),
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Stage 2: generate a labelled synthetic set with a tuned generator (filtered, resumable).

    Several processes share the work under accelerate, e.g. on one machine's CPU:
    `accelerate launch --multi_gpu --num_processes 2 -m dawgen.cli generate ... --device cpu`
    (or `torchrun --nproc_per_node 2 -m dawgen.cli generate ...`); on GPUs drop --device.
    """
    from dawgen.synthesis.config import GenerationConfig

    api = load_api()
    decoding = None if greedy is None else ("greedy" if greedy else "sample")
    flags = {
        "generator": generator, "pool": pool, "pool_column": pool_column, "per_label": per_label, "out": out,
        "task": task, "model": model, "seed": seed, "decoding": decoding, "top_p": top_p, "temperature": temperature,
        "max_new_tokens": max_new_tokens, "repetition_penalty": repetition_penalty, "batch_size": batch_size,
        "copy_threshold": copy_threshold, "label_consistency": label_consistency, "precision": precision,
        "device": device, "char_copy_threshold": char_copy_threshold, "consistency_filter": consistency_filter,
        "judge_confidence": judge_confidence, "consistency_classifier": consistency_classifier,
        "relatedness_floor": relatedness_floor, "relatedness_quantile": relatedness_quantile, "few_shot": few_shot,
        "k": k, "stop_at": stop_at, "quantize": quantize,
    }  # fmt: skip
    try:
        run, rest = split_run_options(options_of(config, flags, set_), ("generator", "out"), GENERATE_RUN_KEYS)
        generation_config = config_from_dict(GenerationConfig, rest, str(config or "options"))
        outcome = api.generate_synthetic(generation_config=generation_config, **run)
    except (*USER_ERRORS, ModuleNotFoundError) as exc:  # the judge's MiniLM package may be missing
        fail(exc)
    summary = outcome.summary
    table = Table(title=f"synthetic set ({summary['task']}, {summary['written']} samples)")
    for column in ("label", "written", "attempted", "rejected by filter"):
        table.add_column(column, overflow="fold")
    for label, counts in summary["labels"].items():
        rejected = ", ".join(f"{reason} {n}" for reason, n in counts["rejected"].items() if n) or "-"
        written = f"{counts['written']}/{summary['target_per_label']}"
        table.add_row(label, written, str(counts["attempted"]), rejected)
    console.print(table)
    console.print(f"samples in [bold]{outcome.path}[/], summary and rejected samples beside it")


@app.command("inspect-synthetic")
def inspect_synthetic_command(
    synthetic: Annotated[Path, typer.Argument(help="Synthetic set: dawgen JSONL or FewGen gen-train.json.")],
    real: Annotated[str, typer.Option(help="The real few-shot data: k-shot folder or data root (with --seed).")],
    task: TaskOpt = None,
    seed: Annotated[int, typer.Option(help="Seed of the k-shot split.")] = 13,
    k: Annotated[int, typer.Option(help="Examples per label of the k-shot split.")] = 16,
    out: Annotated[Path | None, typer.Option(help="Folder for quality.json and quality.png.")] = None,
    sample: Annotated[int, typer.Option(help="Sentences sampled for self-BLEU and embeddings.")] = 200,
    embeddings: Annotated[bool, typer.Option("--embeddings/--no-embeddings", help="MiniLM similarity.")] = True,
) -> None:
    """Quality of a synthetic set against the real few-shot data: balance, copies, diversity, length, embeddings."""
    api = load_api()
    try:
        report = api.inspect_synthetic(
            synthetic, real=real, task=task, seed=seed, k=k, out=out, sample=sample, embeddings=embeddings
        )
    except (*USER_ERRORS, ModuleNotFoundError) as exc:
        fail(exc)
    console.print(_quality_table(report))
    if out:
        console.print(f"report and figure in [bold]{out}[/]")


@app.command("judge-synthetic")
def judge_synthetic_command(
    synthetic: Annotated[list[Path], typer.Argument(help="Synthetic sets: dawgen JSONL or FewGen gen-train.json.")],
    reference: Annotated[str, typer.Option(help="Labelled real pairs the judge learns from (e.g. the task's pool).")],
    held_out: Annotated[str, typer.Option(help="Labelled real pairs that check the judge (e.g. the test set).")],
    task: Annotated[str, typer.Option(help="Task name (built-in) or task YAML file.")],
    out: Annotated[Path | None, typer.Option(help="JSON file for the report.")] = None,
    sample: Annotated[int | None, typer.Option(help="Reference rows used (a seeded draw; default all).")] = None,
    few_shot: Annotated[
        str | None, typer.Option(help="Also fit the judge on this k-shot split (folder or data root, --seed, --k).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the k-shot split and of the reference draw.")] = 13,
    k: Annotated[int, typer.Option(help="Examples per label of the k-shot split.")] = 16,
) -> None:
    """Label consistency: how often a judge trained on real labelled pairs agrees with synthetic labels."""
    api = load_api()
    try:
        report = api.judge_synthetic(synthetic, reference=reference, held_out=held_out, task=task, out=out,
                                     sample=sample, few_shot=few_shot, seed=seed, k=k)  # fmt: skip
    except (*USER_ERRORS, ModuleNotFoundError) as exc:
        fail(exc)
    title = f"{report['task']}: judge ({report['judge']}) fitted on {report['reference']} real pairs"
    table = Table(title=escape(title))
    for column in ("set", "examples", "agreement %", "balanced %", "per label %", "held-out % when trained on it"):
        table.add_column(column, overflow="fold")
    table.caption = "agreement: the judge's label = the set's own; last column: a judge fitted on the set alone"
    named = {"real held-out": report["real_held_out"]} | report["synthetic"]
    for name, row in named.items():
        per_label = ", ".join(f"{label} {_fmt(v['agreement'], '.1f')}" for label, v in row["per_label"].items())
        trained = row.get("trained_on_it", {}).get("accuracy")
        table.add_row(name, str(row["examples"]), _fmt(row["agreement"], ".1f"),
                      _fmt(row["balanced_agreement"], ".1f"), per_label, _fmt(trained, ".1f"))  # fmt: skip
    if "few_shot_trained" in report:
        few = report["few_shot_trained"]
        table.add_row(f"few-shot train ({few['trained_on']})", "", "", "", "", _fmt(few["accuracy"], ".1f"))
    console.print(table)
    if out:
        console.print(f"report in [bold]{out}[/]")


def _quality_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"{report['task']}: {report['size']['synthetic']} synthetic vs {report['size']['real']} real")
    table.add_column("label", no_wrap=True)
    for column in ("count", "words syn/real", "dist-2", "self-BLEU", "copies", "cos", "MMD²"):
        table.add_column(column, overflow="fold")
    table.caption = "dist-2: distinct bigrams; copies: verbatim; cos: centroid cosine with the real label (MiniLM)"
    copies = report.get("copies", {}).get("per_label", {})
    similarity = report.get("embeddings", {}).get("per_label", {})
    for label, count in report["label_balance"]["synthetic"].items():
        length, diversity = report["length_words"][label], report["diversity"]["per_label"][label]
        copy, near = copies.get(label, {}), similarity.get(label, {})
        table.add_row(
            label, str(count), f"{_fmt(length['synthetic'], '.1f')}/{_fmt(length['real'], '.1f')}",
            _fmt(diversity["distinct_2"], ".3f"), _fmt(diversity["self_bleu"], ".3f"),
            _fmt(copy.get("verbatim_rate"), ".1%"), _fmt(near.get("centroid_cosine"), ".3f"),
            _fmt(near.get("mmd2_rbf"), ".4f"),
        )  # fmt: skip
    return table


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
