"""How the command line reports bad input: one line, ``error: ...``, exit code 2.

Errors of dawgen's own checks go through ``common.fail``; errors of the option parser itself (an unknown
flag, a value that is not a number) are reported the same way by ``OneLineErrors``, the app's group.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from dawgen.progress import console

USAGE_EXIT_CODE = 2


def print_error(message: str) -> None:
    """``error: <message>`` on one line of stderr (line breaks in the message become spaces)."""
    text = " ".join(line.strip() for line in str(message).splitlines() if line.strip())
    console.print(f"[bold red]error:[/] {escape(text)}", soft_wrap=True, highlight=False)


class OneLineErrors(TyperGroup):
    """The app's command group: parser errors become one ``error:`` line with a pointer to ``--help``."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # the parser's errors (typer's own copy of click's)
            if type(exc).__name__ == "NoArgsIsHelpError":  # `dawgen` alone: typer printed the help
                if self.rich_markup_mode is None:
                    exc.show()
            else:
                ctx = getattr(exc, "ctx", None)
                hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                print_error(exc.format_message() + hint)
            sys.exit(getattr(exc, "exit_code", 1))
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)
