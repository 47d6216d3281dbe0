"""Commands on the schema: migrate."""

from __future__ import annotations

import typer

from eventstore import EventStore
from eventstore.cli.app import DebugOption, UrlOption, run, stdout


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command()(migrate)


def migrate(url: UrlOption = None, *, debug: DebugOption = False) -> None:
    """Create or upgrade the schema (alembic upgrade head)."""

    async def command() -> str | None:
        async with EventStore.open(url) as store:
            await store.migrate()
            return await store.schema_revision()

    revision = run(command, debug=debug)
    stdout.print(f"schema at revision {revision}")
