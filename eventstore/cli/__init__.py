"""The `eventstore` command line: a typer app behind one error boundary (ARCHITECTURE §9).

Exit codes: 0 success; 1 the command ran and found a problem, or the
database is unreachable; 2 a user error (bad argument, unknown id, bad time).
Errors are one line on stderr; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys
import warnings
from typing import TextIO

import typer

from eventstore.cli import (
    audit_commands,
    demo,
    list_command,
    maintenance_commands,
    projection_commands,
    rebuild_command,
    serve_command,
    stats_command,
    store_commands,
    verify_commands,
)
from eventstore.cli.app import EXIT_PROBLEM, app, error_line, stdout, warning_line

for module in (
    store_commands,
    list_command,
    stats_command,
    audit_commands,
    projection_commands,
    rebuild_command,
    verify_commands,
    maintenance_commands,
    serve_command,
    demo,
):
    module.register(app)


def main() -> None:
    """The console script's entry point.

    Click's usage errors (an unknown option, a value out of its range) end
    like the commands' own: one line on stderr and exit code 2, not a box
    with the usage above it.
    """
    warnings.showwarning = _warning_line
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            # Bare `eventstore`: the help, as before (click names no class for it).
            stdout.out(exc.format_message(), highlight=False)
        else:
            error_line(exc.format_message())
        sys.exit(exc.exit_code)
    except typer.Abort:
        error_line("aborted")
        sys.exit(EXIT_PROBLEM)
    sys.exit(code if isinstance(code, int) else 0)


def _warning_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A library's warning as one line on stderr, like an error, not two with code."""
    del category, filename, lineno, file, line
    warning_line(str(message))


__all__ = ["app", "main"]
