"""The `eventstore` command line: a typer app behind one error boundary (SPEC §6).

Exit codes: 0 success; 1 the command ran and found a problem, or the
database is unreachable; 2 a user error (bad argument, unknown id, bad time).
Errors are one line on stderr; `--debug` shows the traceback.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar

import typer
from rich.console import Console

from eventstore import errors
from eventstore.store import EventStore

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")
EXIT_PROBLEM: Final = 1
EXIT_USAGE: Final = 2

app = typer.Typer(
    name="eventstore",
    help="The execution event store: migrate, project, audit.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stdout = Console()
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="EVENTSTORE_URL",
        help="database URL (default: $EVENTSTORE_URL, else ./eventstore.db)",
    ),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="show tracebacks")]
# typer takes options as keyword defaults; FBT002 does not apply to commands.

USER_ERRORS: Final = (
    errors.ValidationError,
    errors.ConfigurationError,
    errors.ExecutionNotFound,
    errors.ReferenceNotFound,
    errors.InvalidTransition,
)


def exit_code_for(exc: errors.EventStoreError) -> int:
    """The SPEC's exit code for an error the command could not get past."""
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


@app.callback()
def _group() -> None:
    """The execution event store: migrate, project, audit."""


@app.command()
def migrate(url: UrlOption = None, *, debug: DebugOption = False) -> None:
    """Create or upgrade the schema (alembic upgrade head)."""

    async def command() -> str | None:
        async with EventStore.open(url) as store:
            await store.migrate()
            return await store.schema_revision()

    revision = run(command, debug=debug)
    stdout.print(f"schema at revision {revision}")


def main() -> None:
    """The console script's entry point."""
    sys.exit(app())
