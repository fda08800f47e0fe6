"""Stage 3 and evaluation: `dawgen tasks`, `dawgen prompt-tune`, `dawgen evaluate`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dawgen.cli.common import (
    USER_ERRORS,
    ConfigOpt,
    DataOpt,
    ModelOpt,
    OutOpt,
    SeedOpt,
    SetOpt,
    TaskOpt,
    TestOpt,
    app,
    fail,
    load_api,
    options_of,
    require,
    result_table,
    split_run_options,
)
from dawgen.config import ConfigError, config_from_dict
from dawgen.progress import console
from dawgen.tasks import BUILTIN_TASKS, Family


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
    peft: Annotated[
        str | None,
        typer.Option(
            help="What trains: prompt (soft prompt, default), prefix (key/value prefixes at every layer) or lora; "
            "their options with --set: prompt_max_norm, prefix_projection, lora_rank, lora_alpha, lora_dropout, "
            "lora_targets."
        ),
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Training steps (max_steps).")] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate (default: the PEFT type's: prompt 0.3, prefix 1e-2, lora 1e-3).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Training batch size.")] = None,
    virtual_tokens: Annotated[int | None, typer.Option(help="Soft-prompt length.")] = None,
    optimizer: Annotated[
        str | None, typer.Option(help="adafactor or adamw (default: adafactor for prompt, adamw otherwise).")
    ] = None,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing of the loss.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Evaluate on dev every N steps.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ...")] = None,
    set_: SetOpt = None,
) -> None:
    """Prompt-tune a frozen classifier on few-shot data, optionally with synthetic data.

    What trains is a soft prompt (--peft prompt), PEFT prefixes (prefix) or LoRA (lora)."""
    from dawgen.classifier.config import PromptTuneConfig

    api = load_api()
    flags = {
        "task": task, "data": data, "test": test, "model": model, "out": out, "seed": seed,
        "max_steps": steps, "learning_rate": lr, "batch_size": batch_size, "num_virtual_tokens": virtual_tokens,
        "optimizer": optimizer, "label_smoothing": label_smoothing, "eval_every": eval_every,
        "precision": precision, "device": device, "synthetic": synthetic, "combine": combine, "surgery": surgery,
        "eps": eps, "syn_batch_size": syn_batch_size, "peft": peft,
    }  # fmt: skip
    try:
        run, rest = split_run_options(options_of(config, flags, set_), ("task", "data"))
        if "seed" in run:
            rest["seed"] = run.pop("seed")
        tune_config = config_from_dict(PromptTuneConfig, rest, str(config or "options"))
        outcome = api.prompt_tune(tune_config=tune_config, **run)
    except USER_ERRORS as exc:
        fail(exc)
    result = outcome.result
    console.print(result_table([result]))
    if out:
        console.print(f"adapter and metrics in [bold]{out}[/]")


@app.command("evaluate")
def evaluate_command(
    config: ConfigOpt = None,
    task: TaskOpt = None,
    test: TestOpt = None,
    model: ModelOpt = None,
    method: Annotated[
        str | None, typer.Option(help="zero-shot, in-context, or prompt (alias: adapter) with --adapter.")
    ] = None,
    adapter: Annotated[
        Path | None,
        typer.Option(help="A tuned PEFT adapter folder (soft prompt, prefix or LoRA) for method 'prompt'/'adapter'."),
    ] = None,
    data: DataOpt = None,
    seed: SeedOpt = None,
    out: OutOpt = None,
    demonstrations: Annotated[
        int | None,
        typer.Option(
            "--demonstrations-per-label",
            "--demonstrations",
            help="In-context demonstrations per label (default k: the whole k-shot training split; those that "
            "do not fit in the model's input are dropped).",
        ),
    ] = None,
    precision: Annotated[str | None, typer.Option(help="auto, bf16 or fp32.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda, ...")] = None,
) -> None:
    """Score a test set zero-shot, in-context (demonstrations from --data), or with a tuned adapter."""
    api = load_api()
    flags = {
        "task": task, "test": test, "model": model, "method": method, "adapter": adapter, "data": data,
        "seed": seed, "out": out, "demonstrations_per_label": demonstrations, "precision": precision,
        "device": device,
    }  # fmt: skip
    try:
        options = options_of(config, flags, None)
        require(options, "task", "test")
        known = set(inspect.signature(api.evaluate).parameters)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"{config or 'options'}: unknown option(s) {unknown}; known options: {sorted(known)}")
        result = api.evaluate(**options)
    except USER_ERRORS as exc:
        fail(exc)
    console.print(result_table([result]))
