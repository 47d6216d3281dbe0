"""The typer app, its shared options and the error boundary of every command."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer
from rich.console import Console

from eventstore import errors, scrub
from eventstore.cli.display import safe

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")
EXIT_PROBLEM: Final = 1
EXIT_USAGE: Final = 2
SQLITE_THREAD: Final = "_connection_worker_thread"
THREAD_SETTLE_SECONDS: Final = 2.0

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


def _given_url(value: str | None) -> str | None:
    # An empty $EVENTSTORE_URL counts as unset; an empty --url (say, of an
    # unset variable) must not quietly open ./eventstore.db instead.
    if value is not None and not value.strip():
        raise typer.BadParameter("the database URL is empty", param_hint="--url")
    return value


# typer takes options as keyword defaults, so they are annotated aliases here.
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="EVENTSTORE_URL",
        help="database URL (default: $EVENTSTORE_URL, else ./eventstore.db)",
        show_default=False,
        callback=_given_url,
    ),
]
DebugOption = Annotated[
    bool, typer.Option("--debug", help="show the traceback of an error (no secrets)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON for machines")]

USER_ERRORS: Final = (
    errors.ValidationError,
    errors.ConfigurationError,
    errors.ExecutionNotFound,
    errors.ReferenceNotFound,
    errors.ReferenceConflict,
    errors.InvalidTransition,
    errors.IdempotencyConflict,
)


def _print_version(given: bool) -> None:  # noqa: FBT001 - click's callback signature
    if given:
        stdout.out(
            f"eventstore {importlib.metadata.version('eventstore')}", highlight=False
        )
        raise typer.Exit


@app.callback()
def _group(
    *,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """The execution event store: migrate, project, rebuild, audit, stats, demo."""
    del version


def exit_code_for(exc: errors.EventStoreError) -> int:
    """The exit code (ARCHITECTURE §9) for an error the command could not get past."""
    return EXIT_USAGE if isinstance(exc, USER_ERRORS) else EXIT_PROBLEM


def run(command: Callable[[], Coroutine[Any, Any, T]], *, debug: bool) -> T:
    """Run an async command behind the error boundary: one line, an exit code."""
    try:
        return asyncio.run(_settled(command()))
    except errors.EventStoreError as exc:
        if debug:
            debug_traceback(exc)
        error_line(str(exc))
        raise typer.Exit(exit_code_for(exc)) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


async def _settled(command: Coroutine[Any, Any, T]) -> T:
    """The command, then a moment for the SQLite threads to end before the loop does.

    aiosqlite stops a connection that failed to open (a file that cannot be
    created) without waiting; its thread then reports to the event loop,
    and if asyncio.run has closed it, prints a RuntimeError traceback.
    """
    try:
        return await command
    finally:
        deadline = time.monotonic() + THREAD_SETTLE_SECONDS
        for thread in threading.enumerate():
            if (
                SQLITE_THREAD in thread.name
                and thread is not threading.current_thread()
            ):
                await asyncio.to_thread(
                    thread.join, max(0.0, deadline - time.monotonic())
                )


def debug_traceback(exc: BaseException) -> None:
    """`--debug`: the traceback on stderr, through `scrub`.

    A driver's message may quote the URL's secrets. The one-line error and
    the exit code follow it as without `--debug`.
    """
    sys.stderr.write(scrub("".join(traceback.format_exception(exc))))


def error_line(message: str) -> None:
    """`error: MESSAGE` on stderr: one line, no secret, no control character."""
    stderr.print(safe(f"error: {scrub(message)}"))


def warning_line(message: str) -> None:
    """`warning: MESSAGE` on stderr, as safe as `error_line`."""
    stderr.print(safe(f"warning: {scrub(message)}"))


def print_json(value: Any) -> None:
    """JSON on stdout, for `--json`."""
    stdout.out(
        json.dumps(value, indent=2, sort_keys=True, default=str), highlight=False
    )
