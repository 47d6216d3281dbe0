"""Run the alembic revision tree that ships with the package (ARCHITECTURE §8)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from eventstore import errors
from eventstore.backends.shadow import ShadowTables
from eventstore.revisions import SCHEMA_HEAD, VERSION_TABLE, recorded_revision
from eventstore.schema import executions, metadata

__all__ = [
    "SCHEMA_HEAD",
    "alembic_config",
    "current_revision",
    "include_object",
    "migrations_location",
    "run_migration",
]

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

    from eventstore.backends.base import Backend


def migrations_location() -> Path:
    """The directory of the store's alembic revisions (docs/MIGRATIONS.md).

    Inside the wheel, or beside the source tree. A service runs them beside
    its own history (docs/MIGRATIONS.md): they record their revision in
    their own table, `eventstore_alembic_version`.

    Raises:
        ConfigurationError: this installation has no migrations.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise errors.ConfigurationError("the migrations are missing from this installation")


def include_object(
    item: object,
    name: str | None,
    kind: str,
    reflected: bool,  # noqa: FBT001 - alembic's hook signature
    compare_to: object,
) -> bool:
    """An alembic `include_object` hook that leaves the store's objects out.

    For a service's autogenerate: without it, alembic proposes to drop
    every table of the store (its tables are not in the service's
    metadata). Pass it as `context.configure(include_object=...)`, or call
    it from the service's own hook.
    """
    del reflected, compare_to
    if kind == "table":
        return name not in _store_tables()
    table = getattr(item, "table", None)
    return not (isinstance(table, sa.Table) and table.name in _store_tables())


@functools.cache
def _store_tables() -> frozenset[str]:
    # The schema's tables, our version table, and a rebuild's shadow and
    # retired copies of the projection (they come and go).
    live = executions.name
    return frozenset(
        {*metadata.tables, VERSION_TABLE}
        | {live + ShadowTables.SHADOW_SUFFIX, live + ShadowTables.RETIRED_SUFFIX}
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic Config for the shipped tree, sharing `connection` if given."""
    # Imported here: only migrations need alembic, and importing it costs
    # every command and service start 70 ms.
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_location()))
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
    from alembic import command  # imported here, as in alembic_config

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
