"""Run the alembic revision tree that ships with the package (ARCHITECTURE §8)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

from eventstore import errors
from eventstore.revisions import SCHEMA_HEAD, recorded_revision

__all__ = [
    "SCHEMA_HEAD",
    "alembic_config",
    "current_revision",
    "migrations_path",
    "run_migration",
]

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from eventstore.backends.base import Backend


def migrations_path() -> Path:
    """Where the revision tree is: inside the wheel, or beside the source tree.

    Raises:
        ConfigurationError: this installation has no migrations.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise errors.ConfigurationError("the migrations are missing from this installation")


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic Config for the shipped tree, sharing `connection` if given."""
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def run_migration(backend: Backend, *, direction: str, revision: str) -> None:
    """Upgrade or downgrade the database to `revision`.

    Each revision is one transaction (on SQLite the whole run is one),
    except that on PostgreSQL an index over the log is built concurrently,
    outside it, so appends go on meanwhile; a revision whose build failed
    cleans up after it when run again.

    Concurrent runners (processes or tasks) wait for each other: the ones
    after the first find nothing left to do.

    Raises:
        DatabaseUnavailable: the database cannot be reached.
        DatabaseError: a migration failed (nothing of its transaction was
            applied; run it again).
    """

    def run(connection: Connection) -> None:
        config = alembic_config(connection)
        if direction == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    async with backend.migration_connection() as connection:
        await connection.run_sync(run)


async def current_revision(backend: Backend) -> str | None:
    """The schema revision recorded in the database, or None without a schema."""
    async with backend.connect_read() as connection:
        return await recorded_revision(connection)
