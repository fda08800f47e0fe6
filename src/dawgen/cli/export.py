"""`dawgen export`: a synthetic set as a Hugging Face dataset, CSV or JSON Lines, with a dataset card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dawgen.cli.common import USER_ERRORS, TaskOpt, app, fail, load_api
from dawgen.progress import console

SYNTHETIC_HELP = (
    "Synthetic set: dawgen JSONL (its summary and quality.json are read beside it), FewGen gen-train.json, "
    "or an exported folder."
)


@app.command("export")
def export_command(
    synthetic: Annotated[Path, typer.Argument(help=SYNTHETIC_HELP, show_default=False)],
    out: Annotated[Path, typer.Option(help="Output folder (must not exist, or be empty).")],
    format_: Annotated[
        str, typer.Option("--format", help="hf (datasets save_to_disk), csv (train.csv) or jsonl (train.jsonl).")
    ] = "hf",
    task: TaskOpt = None,
    push: Annotated[
        str | None, typer.Option(help="Also upload to this Hugging Face dataset repo (needs the hub and a login).")
    ] = None,
    private: Annotated[bool, typer.Option("--private/--public", help="Visibility of a repo --push creates.")] = False,
    drop_copies: Annotated[
        bool, typer.Option("--drop-copies/--keep-copies", help="Leave out verbatim copies (second sentence = first).")
    ] = False,
) -> None:
    """Export a synthetic set with a dataset card (README.md) recording its provenance: generator, task,
    k-shot split and seed, generation options, filter counts and quality numbers.

    Without --task the task is read from the set's summary or inferred from its path (as inspect-synthetic does).
    """
    api = load_api()
    try:
        outcome = api.export_synthetic(synthetic, out=out, format=format_, task=task, push=push, private=private,
                                       drop_copies=drop_copies)  # fmt: skip
    except (*USER_ERRORS, ModuleNotFoundError) as exc:
        fail(exc)
    provenance = outcome.provenance
    table = Table(title=escape(f"{provenance['task']['name']}: {provenance['rows']} rows ({outcome.format})"))
    for column in ("label", "id", "rows"):
        table.add_column(column)
    for index, (label, count) in enumerate(provenance["per_label"].items()):
        table.add_row(escape(label), str(index), str(count))
    console.print(table)
    console.print(f"exported to [bold]{escape(str(outcome.path))}[/]: {', '.join(outcome.files)}")
    if outcome.url:
        console.print(f"pushed to [bold]{outcome.url}[/]")
