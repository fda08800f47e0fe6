"""The whole workflow: `dawgen run`, `dawgen demo`, `dawgen report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from dawgen.cli.common import USER_ERRORS, ConfigOpt, SetOpt, app, fail, load_api, options_of, require
from dawgen.config import ConfigError, config_from_dict
from dawgen.progress import console

LIST_KEYS = ("tasks", "seeds", "methods")


def nest(options: dict[str, Any]) -> dict[str, Any]:
    """``--set classifier.max_steps=10`` into ``{"classifier": {"max_steps": "10"}}``; ``seeds=13,42`` into a list."""
    nested: dict[str, Any] = {}
    for key, value in options.items():
        section, dot, name = key.partition(".")
        if dot:
            if not isinstance(nested.setdefault(section, {}), dict):
                raise ConfigError(f"option {key!r}: {section!r} is not a section of options")
            nested[section][name] = value
        elif key in LIST_KEYS and isinstance(value, str):
            nested[key] = [item.strip() for item in value.split(",") if item.strip()]
        elif isinstance(value, dict) and isinstance(nested.get(key), dict):
            nested[key] = {**value, **nested[key]}
        else:
            nested[key] = value
    return nested


def results_by_method(records: list[dict[str, Any]]) -> Group:
    """Mean test accuracy (F1 where reported) and balanced accuracy over seeds, one row per method, one
    column per task, collapsed classifiers flagged (``dawgen.evaluation.tables.metric_cell``); below it
    the precision the records ran in (one line per precision where they differ)."""
    from dawgen.evaluation.tables import COLLAPSED_SHARE, metric_cell, precision_lines

    tasks = list(dict.fromkeys(r["task"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    title = f"test accuracy % (/ F1) / bal: balanced accuracy; top N%*: >= {COLLAPSED_SHARE:.0f}% on one label"
    table = Table(title=title)
    for column in ("method", *tasks):
        table.add_column(column)
    for method in methods:
        cells = [metric_cell([r["test"] for r in records if (r["method"], r["task"]) == (method, t)]) for t in tasks]
        table.add_row(method, *cells)
    return Group(table, Text("\n".join(precision_lines(records))))


@app.command("run")
def run_command(
    config: ConfigOpt = None,
    tasks: Annotated[str | None, typer.Option(help="Comma-separated task names or task YAML files.")] = None,
    data: Annotated[str | None, typer.Option(help="Data root (<TASK>/k-shot/<k>-<seed>) or k-shot folder.")] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default 13).")] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods: pt, ours, dawgen+paired, fewgen+merged, ...")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder; a rerun skips finished stages.")] = None,
    generator_model: Annotated[str | None, typer.Option(help="Generator LM (stage 1 and 2).")] = None,
    classifier_model: Annotated[str | None, typer.Option(help="Classifier LM (stage 3).")] = None,
    set_: SetOpt = None,
) -> None:
    """All stages for every task, seed and method of a config: tune generators, generate, prompt-tune, evaluate.

    Stage options go in the config's `generator`, `generation`, `classifier` sections, or as
    `--set classifier.max_steps=100`. See configs/small.yaml and configs/paper.yaml.
    """
    from dawgen.pipeline import RunConfig

    api = load_api()
    flags = {
        "tasks": tasks, "data": data, "seeds": seeds, "methods": methods, "out": out,
        "generator_model": generator_model, "classifier_model": classifier_model,
    }  # fmt: skip
    try:
        options = nest(options_of(config, flags, set_))
        require(options, "tasks", "data")
        run_config = config_from_dict(RunConfig, options, str(config or "options"))
        records = api.run(run_config)
    except USER_ERRORS as exc:
        fail(exc)
    console.print(results_by_method(records))
    console.print(f"run folder [bold]{run_config.out}[/]; write its report with `dawgen report {run_config.out}`")


@app.command("demo")
def demo_command(
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/demo"),
    precision: Annotated[
        str, typer.Option(help="auto (bf16 autocast where the CPU has native bf16), fp32 or bf16.")
    ] = "auto",
) -> None:
    """Offline end-to-end demo on the shipped dataset with SmolLM2-135M as generator and classifier:
    tune a DawGen generator, generate, and compare prompt tuning on real data with ours."""
    api = load_api()
    try:
        records = api.demo(out, precision=precision)
        report = api.report(out)
    except USER_ERRORS as exc:
        fail(exc)
    console.print(results_by_method(records))
    console.print(f"report: [bold]{report}[/]")


@app.command("report")
def report_command(run_dir: Annotated[Path, typer.Argument(help="A `dawgen run` folder.")]) -> None:
    """Write RUN_DIR/report.md and report.html: results, training curves, conflicts, synthetic data."""
    api = load_api()
    try:
        path = api.report(run_dir)
    except USER_ERRORS as exc:
        fail(exc)
    console.print(f"report: [bold]{path}[/] (and report.html)")
