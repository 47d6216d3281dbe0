"""`eventstore serve`: the read-only console and JSON API (README, "Web console")."""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Annotated, Final

import typer

from eventstore import EventStore
from eventstore.cli.app import EXIT_USAGE, DebugOption, UrlOption, error_line, run
from projections import ExecutionsView

logger = logging.getLogger(__name__)

# `token=...` in a request line of the access log.
TOKEN_IN_QUERY: Final = re.compile(r"([?&]token=)[^&\s]*")
TOKEN_VARIABLE: Final = "EVENTSTORE_CONSOLE_TOKEN"  # noqa: S105 - a variable's name


def register(app: typer.Typer) -> None:
    """Add this module's command to the app."""
    app.command("serve")(serve)


class HideToken(logging.Filter):
    """Keeps the token of ``?token=`` out of the server's access log."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the token in the record's arguments; always keep the record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                TOKEN_IN_QUERY.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to any address


def serve(
    url: UrlOption = None,
    *,
    host: Annotated[
        str, typer.Option("--host", help="address to listen on")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="port to listen on")
    ] = 8700,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_VARIABLE,
            help=f"required on a non-loopback address (default: ${TOKEN_VARIABLE})",
            show_default=False,
        ),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Serve the console (/) and its JSON API (/api/...) until Ctrl-C; it never writes."""
    if token is not None and not token.strip():
        error_line("the console token is empty")
        raise typer.Exit(EXIT_USAGE)
    if token is None and not is_loopback(host):
        error_line(
            f"refusing to serve on {host} without a token: anyone who reaches "
            f"it would read every run; give --token or ${TOKEN_VARIABLE}"
        )
        raise typer.Exit(EXIT_USAGE)

    async def command() -> None:
        # Imported here: every other command would pay for the server's import.
        import uvicorn

        from eventstore.console import create_app

        # Fail here, as one line with the right exit code, rather than in
        # the server's startup: a bad URL, a database that cannot be
        # reached or is not migrated.
        async with EventStore.open(url) as store:
            await ExecutionsView(store).count()

        config = uvicorn.Config(
            create_app(url, token=token),
            host=host,
            port=port,
            log_level="debug" if debug else "info",
            # The console's own log lines go through the `eventstore` loggers.
            log_config=None,
        )
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("uvicorn.access").addFilter(HideToken())
        logger.info("console on http://%s:%d/ (Ctrl-C stops it)", host, port)
        await uvicorn.Server(config).serve()

    run(command, debug=debug)
