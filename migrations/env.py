"""Alembic environment: async, one revision tree for PostgreSQL and SQLite.

Run by `eventstore migrate` / `store.migrate()` (which pass the URL in the
config's attributes) or by the alembic CLI with `-x url=...`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from eventstore.revisions import VERSION_TABLE, adopt_legacy_version
from eventstore.schema import metadata

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(
        as_dictionary=True
    ).get("url")
    if not url:
        raise SystemExit("no database URL: pass -x url=... or use `eventstore migrate`")
    return str(url)


def _adopt(connection: Connection) -> None:
    """Move our revision out of `alembic_version`, where earlier versions kept it."""
    if connection.in_transaction():  # SQLite: the whole run is one transaction
        adopt_legacy_version(connection)
        return
    with connection.begin():
        adopt_legacy_version(connection)


def _run(connection: Connection) -> None:
    _adopt(connection)
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # Our own version table: a service's history keeps alembic_version.
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_with_connection(connection: Connection) -> None:
    _run(connection)


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported")

existing = config.attributes.get("connection")
if existing is not None:
    _run_with_connection(existing)
else:
    asyncio.run(_run_async())
