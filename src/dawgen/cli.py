"""The `dawgen` command line. Each command reads an optional YAML config; flags override it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from transformers.utils import logging as transformers_logging

from dawgen.classifier.config import PromptTuneConfig
from dawgen.config import ConfigError, config_from_dict, load_yaml
from dawgen.data.example import DataError
from dawgen.models.loading import ModelLoadError
from dawgen.progress import console
from dawgen.tasks import BUILTIN_TASKS, Family, TaskError

transformers_logging.disable_progress_bar()  # dawgen draws its own progress bars
transformers_logging.set_verbosity_error()
app = typer.Typer(help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

# errors caused by what the user gave: shown as one line, exit code 2
USER_ERRORS = (ConfigError, DataError, TaskError, ModelLoadError, FileNotFoundError, ValueError)
RUN_KEYS = ("task", "data", "test", "synthetic", "drop_copies", "model", "out", "seed", "k", "trust_remote_code")
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of options (flags win).")]
TaskOpt = Annotated[str | None, typer.Option(help="Built-in task name (see `dawgen tasks`) or a task YAML file.")]
ModelOpt = Annotated[
    str | None, typer.Option(help="Hub id, local folder, .gguf file, or 'smollm2-135m' (offline default).")
]
DataOpt = Annotated[
    str | None, typer.Option(help="k-shot folder, data root (<TASK>/k-shot/<k>-<seed>), training file, or hf:NAME.")
]
TestOpt = Annotated[str | None, typer.Option(help="Evaluation file (tsv/csv/jsonl/json) or hf:NAME[:CONFIG[:SPLIT]].")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of the k-shot split and of training.")]
OutOpt = Annotated[Path | None, typer.Option(help="Run folder (adapter, metrics, result); resumes if present.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Any config option as KEY=VALUE (repeatable).")]


def _options(config_file: Path | None, flags: dict[str, Any], sets: list[str] | None) -> dict[str, Any]:
    """YAML options, then ``--set KEY=VALUE``, then explicit flags (flags left at None are unset)."""
    options = load_yaml(config_file) if config_file else {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    options.update({key: value for key, value in flags.items() if value is not None})
    return options


def _require(options: dict[str, Any], *keys: str) -> None:
    missing = [f"--{key}" for key in keys if options.get(key) is None]
    if missing:
        raise ConfigError(f"missing option(s) {', '.join(missing)} (a flag or a key of the config file)")


def _split_run_options(
    options: dict[str, Any], required: tuple[str, ...], keys: tuple[str, ...] = RUN_KEYS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's options (data, model, ...) apart from the training config's; ``required`` must be given."""
    _require(options, *required)
    run = {key: options.pop(key) for key in keys if key in options}
    return run, options


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(code=2)


@app.command("tasks")
def tasks_command() -> None:
    """List the built-in task table."""
    table = Table(title="dawgen tasks")
    for column in ("task", "labels -> words", "metrics", "decoder template"):
        table.add_column(column, overflow="fold")
    for task in BUILTIN_TASKS.values():
        words = ", ".join(f"{label} -> {word}" for label, word in task.label_words.items())
        metrics = "accuracy" + (f", F1({task.f1_positive_label})" if task.f1_positive_label else "")
        table.add_row(task.name, words, metrics, task.templates[Family.DECODER].replace("\n", "\\n"))
    console.print(table)


@app.command("prompt-tune")
def prompt_tune_command(
    config: ConfigOpt = None,
    task: TaskOpt = None,
    data: DataOpt = None,
    test: TestOpt = None,
    model: ModelOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = None,
    synthetic: Annotated[
        Path | None, typer.Option(help="Synthetic set: dawgen JSONL or FewGen gen-train.json (copies dropped).")
    ] = None,
    combine: Annotated[
        str | None,
        typer.Option(
            help="real, syn, merged, merged_ls, real_then_syn, syn_then_real, paired (default: "
            "real, or paired with surgery when --synthetic is given)."
        ),
    ] = None,
    surgery: Annotated[
        bool | None, typer.Option("--surgery/--no-surgery", help="Gradient surgery (paired only).")
    ] = None,
    eps: Annotated[float | None, typer.Option(help="Weight of the synthetic gradient in paired steps.")] = None,
    syn_batch_size: Annotated[int | None, typer.Option(help="Synthetic batch size (paired).")] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (max_steps).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    virtual_tokens: Annotated[int | None, typer.Option(help="Soft-prompt length.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="adafactor or adamw.")] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing of the loss.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate on dev every N steps.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ...")] = None,
    set_: SetOpt = None,
) -> None:
    """Prompt-tune a frozen classifier on few-shot data, optionally with synthetic data."""
    from dawgen import api

    flags = {
        "task": task, "data": data, "test": test, "model": model, "out": out, "seed": seed,
        "max_steps": steps, "learning_rate": lr, "batch_size": batch_size, "num_virtual_tokens": virtual_tokens,
        "optimizer": optimizer, "label_smoothing": label_smoothing, "eval_every": eval_every,
        "precision": precision, "device": device, "synthetic": synthetic, "combine": combine, "surgery": surgery,
        "eps": eps, "syn_batch_size": syn_batch_size,
    }  # fmt: skip
    try:
        run, rest = _split_run_options(_options(config, flags, set_), ("task", "data"))
        if "seed" in run:
            rest["seed"] = run.pop("seed")
        tune_config = config_from_dict(PromptTuneConfig, rest, str(config or "options"))
        outcome = api.prompt_tune(tune_config=tune_config, **run)
    except USER_ERRORS as exc:
        _fail(exc)
    result = outcome.result
    console.print(_result_table([result]))
    if out:
        console.print(f"adapter and metrics in [bold]{out}[/]")


@app.command("evaluate")
def evaluate_command(
    config: ConfigOpt = None,
    task: TaskOpt = None,
    test: TestOpt = None,
    model: ModelOpt = None,
    method: Annotated[str | None, typer.Option(help="zero-shot, in-context, or prompt.")] = None,
    adapter: Annotated[
        Path | None, typer.Option(help="Tuned prompt (PEFT adapter folder) for method 'prompt'.")
    ] = None,
    data: DataOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    demonstrations: Annotated[int | None, typer.Option(help="In-context demonstrations per label.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ...")] = None,
) -> None:
    """Score a test set zero-shot, in-context (demonstrations from --data), or with a tuned prompt."""
    from dawgen import api

    flags = {
        "task": task, "test": test, "model": model, "method": method, "adapter": adapter, "data": data,
        "seed": seed, "out": out, "demonstrations_per_label": demonstrations, "precision": precision,
        "device": device,
    }  # fmt: skip
    try:
        options = _options(config, flags, None)
        _require(options, "task", "test")
        known = set(inspect.signature(api.evaluate).parameters)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"{config or 'options'}: unknown option(s) {unknown}; known options: {sorted(known)}")
        result = api.evaluate(**options)
    except USER_ERRORS as exc:
        _fail(exc)
    console.print(_result_table([result]))


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/demo"),
    steps: Annotated[int, typer.Option(help="Prompt-tuning steps.")] = 60,
) -> None:
    """Offline end-to-end demo on the shipped dataset with SmolLM2-135M: zero-shot vs prompt tuning."""
    from dawgen import api

    results = api.demo(out, steps=steps)
    console.print(_result_table(results))
    console.print(f"runs in [bold]{out}[/]")


def _result_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="results (test, %)")
    for column in ("task", "method", "model", "accuracy", "F1", "precision"):
        table.add_column(column)
    for result in results:
        metrics = result.get("test", {})
        accuracy = f"{metrics['accuracy']:.1f}" if "accuracy" in metrics else "-"
        f1 = f"{metrics['f1']:.1f}" if "f1" in metrics else "-"
        table.add_row(result["task"], result["method"], result["model"], accuracy, f1, result.get("precision", ""))
    return table


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
    per_label_batch: Annotated[int | None, typer.Option(help="Examples of every label in a batch.")] = None,
    lambda_dist: Annotated[float | None, typer.Option(help="Weight of the distribution-aligned loss.")] = None,
    disc_form: Annotated[str | None, typer.Option(help="L_disc form: ce (default) or ratio.")] = None,
    dist_pairing: Annotated[str | None, typer.Option(help="L_dist negatives: label (default) or prompt.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ...")] = None,
    set_: SetOpt = None,
) -> None:
    """Stage 1: tune per-label soft prompts of a frozen causal LM on few-shot data (DawGen, FewGen or plain)."""
    from dawgen import api
    from dawgen.generator.config import GeneratorConfig

    flags = {
        "task": task, "data": data, "model": model, "out": out, "seed": seed, "variant": variant, "epochs": epochs,
        "learning_rate": lr, "num_prompt_tokens": prompt_tokens, "per_label_batch": per_label_batch,
        "lambda_dist": lambda_dist, "disc_form": disc_form, "dist_pairing": dist_pairing, "precision": precision,
        "device": device,
    }  # fmt: skip
    try:
        run, options = _split_run_options(_options(config, flags, set_), ("task", "data"), GENERATOR_RUN_KEYS)
        generator_config = config_from_dict(GeneratorConfig, options, str(config or "options"))
        outcome = api.tune_generator(generator_config=generator_config, **run)
    except USER_ERRORS as exc:
        _fail(exc)
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


GENERATE_RUN_KEYS = ("generator", "pool", "pool_column", "out", "task", "model")


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
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ...")] = None,
    set_: SetOpt = None,
) -> None:
    """Stage 2: generate a labelled synthetic set with a tuned generator (filtered, resumable).

    Several processes share the work under accelerate, e.g. on one machine's CPU:
    `accelerate launch --multi_gpu --num_processes 2 -m dawgen.cli generate ... --device cpu`
    (or `torchrun --nproc_per_node 2 -m dawgen.cli generate ...`); on GPUs drop --device.
    """
    from dawgen import api
    from dawgen.synthesis.config import GenerationConfig

    decoding = None if greedy is None else ("greedy" if greedy else "sample")
    flags = {
        "generator": generator, "pool": pool, "pool_column": pool_column, "per_label": per_label, "out": out,
        "task": task, "model": model, "seed": seed, "decoding": decoding, "top_p": top_p, "temperature": temperature,
        "max_new_tokens": max_new_tokens, "repetition_penalty": repetition_penalty, "batch_size": batch_size,
        "copy_threshold": copy_threshold, "label_consistency": label_consistency, "precision": precision,
        "device": device,
    }  # fmt: skip
    try:
        run, rest = _split_run_options(_options(config, flags, set_), ("generator", "out"), GENERATE_RUN_KEYS)
        generation_config = config_from_dict(GenerationConfig, rest, str(config or "options"))
        outcome = api.generate_synthetic(generation_config=generation_config, **run)
    except USER_ERRORS as exc:
        _fail(exc)
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
    from dawgen import api

    try:
        report = api.inspect_synthetic(
            synthetic, real=real, task=task, seed=seed, k=k, out=out, sample=sample, embeddings=embeddings
        )
    except (*USER_ERRORS, ModuleNotFoundError) as exc:
        _fail(exc)
    console.print(_quality_table(report))
    if out:
        console.print(f"report and figure in [bold]{out}[/]")


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


# Keep this block last: `python -m dawgen.cli` (as `accelerate launch -m dawgen.cli` runs it) knows only
# the commands defined above it.
if __name__ == "__main__":
    app()
