"""What every command shares: the app, option types, config merging, errors, the results table."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.table import Table

from dawgen.cli.errors import OneLineErrors, print_error
from dawgen.config import ConfigError, load_yaml
from dawgen.data.example import DataError
from dawgen.errors import ModelLoadError
from dawgen.tasks import TaskError

# torch, transformers and the other heavy libraries load only inside the commands that need them (load_api)
HELP = """Few-shot prompt tuning of a classifier with synthetic data from a tuned LLM generator (DawGen).

The whole workflow, from one YAML file:
  run              all stages for every task, seed and method of a config
  report           report.md and report.html of a run folder
Or stage by stage:
  tune-generator   1. tune per-label soft prompts of a generator LM
  generate         2. generate a filtered, labelled synthetic set
  prompt-tune      3. prompt-tune a classifier on real (and synthetic) data
  evaluate         score a test set: zero-shot, in-context or a tuned prompt
"""
app = typer.Typer(
    help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, cls=OneLineErrors
)

# errors caused by what the user gave: shown as one line, exit code 2
USER_ERRORS = (ConfigError, DataError, TaskError, ModelLoadError, FileNotFoundError, ValueError)
RUN_KEYS = ("task", "data", "test", "synthetic", "drop_copies", "model", "out", "seed", "k", "trust_remote_code")
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file of options (flags win).")]
TaskOpt = Annotated[str | None, typer.Option(help="Built-in task name (see `dawgen tasks`) or a task YAML file.")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        help="Hub id, local folder, .gguf file, or a built-in offline model: 'smollm2-135m' (the default) or "
        "'gemma3-270m' (optional extra, Gemma Terms of Use; see the README)."
    ),
]
DataOpt = Annotated[
    str | None, typer.Option(help="k-shot folder, data root (<TASK>/k-shot/<k>-<seed>), training file, or hf:NAME.")
]
TestOpt = Annotated[str | None, typer.Option(help="Evaluation file (tsv/csv/jsonl/json) or hf:NAME[:CONFIG[:SPLIT]].")]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of the k-shot split and of training.")]
OutOpt = Annotated[Path | None, typer.Option(help="Run folder (adapter, metrics, result); resumes if present.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Any config option as KEY=VALUE (repeatable).")]


def load_api() -> ModuleType:
    """``dawgen.api``, imported when a command runs, with transformers' own progress bars and warnings off."""
    from transformers.utils import logging as transformers_logging

    from dawgen import api

    transformers_logging.disable_progress_bar()  # dawgen draws its own progress bars
    transformers_logging.set_verbosity_error()
    return api


def options_of(config_file: Path | None, flags: dict[str, Any], sets: list[str] | None) -> dict[str, Any]:
    """YAML options, then ``--set KEY=VALUE``, then explicit flags (flags left at None are unset)."""
    options = load_yaml(config_file) if config_file else {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        options[key.strip()] = value.strip()
    options.update({key: value for key, value in flags.items() if value is not None})
    return options


def require(options: dict[str, Any], *keys: str) -> None:
    missing = [f"--{key}" for key in keys if options.get(key) is None]
    if missing:
        raise ConfigError(f"missing option(s) {', '.join(missing)} (a flag or a key of the config file)")


def split_run_options(
    options: dict[str, Any], required: tuple[str, ...], keys: tuple[str, ...] = RUN_KEYS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's options (data, model, ...) apart from the training config's; ``required`` must be given."""
    require(options, *required)
    run = {key: options.pop(key) for key in keys if key in options}
    return run, options


def fail(exc: Exception) -> None:
    print_error(str(exc))
    raise typer.Exit(code=2)


def result_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="results (test, %)")
    for column in ("task", "method", "model", "accuracy", "F1", "precision"):
        table.add_column(column)
    for result in results:
        metrics = result.get("test", {})
        accuracy = f"{metrics['accuracy']:.1f}" if "accuracy" in metrics else "-"
        f1 = f"{metrics['f1']:.1f}" if "f1" in metrics else "-"
        table.add_row(result["task"], result["method"], result["model"], accuracy, f1, result.get("precision", ""))
    return table
