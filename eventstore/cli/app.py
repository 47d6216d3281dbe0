"""The typer app, its shared options and the error boundary of every command."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer
from rich.console import Console

from eventstore import errors

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")
EXIT_PROBLEM: Final = 1
EXIT_USAGE: Final = 2

app = typer.Typer(
    name="eventstore",
    help="The execution event store: migrate, project, rebuild, audit, stats, demo.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (no terminal) gets wide lines instead of folded table cells.
PIPED_WIDTH: Final = 160
stdout = Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

# typer takes options as keyword defaults, so they are annotated aliases here.
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="EVENTSTORE_URL",
        help="database URL (default: $EVENTSTORE_URL, else ./eventstore.db)",
        show_default=False,
    ),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="show tracebacks")]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for machines")]

USER_ERRORS: Final = (
    errors.ValidationError,
    errors.ConfigurationError,
    errors.ExecutionNotFound,
    errors.ReferenceNotFound,
    errors.InvalidTransition,
)


@app.callback()
def _group() -> None:
    """The execution event store: migrate, project, rebuild, audit, stats, demo."""


def exit_code_for(exc: errors.EventStoreError) -> int:
    """The SPEC's exit code for an error the command could not get past.

    An event the fold cannot apply is a ValidationError, but of what is
    stored, not of what the user typed: a problem found, like a broken chain.
    """
    if isinstance(exc, errors.EventNotApplicable):
        return EXIT_PROBLEM
    return EXIT_USAGE if isinstance(exc, USER_ERRORS) else EXIT_PROBLEM


def run(command: Callable[[], Coroutine[Any, Any, T]], *, debug: bool) -> T:
    """Run an async command behind the error boundary: one line, an exit code."""
    try:
        return asyncio.run(command())
    except errors.EventStoreError as exc:
        if debug:
            raise
        stderr.print(f"error: {exc}", markup=False)
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def print_json(value: Any) -> None:
    """JSON on stdout, for `--json`."""
    stdout.out(
        json.dumps(value, indent=2, sort_keys=True, default=str), highlight=False
    )
