"""Which schema revision a database holds, and which one this code needs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncConnection

SCHEMA_HEAD: Final = "0012"
"""The revision this version of the code needs (a test keeps it equal to alembic's head)."""


async def recorded_revision(connection: AsyncConnection) -> str | None:
    """The schema revision recorded in the database, or None without a schema."""

    def read(sync_connection: Connection) -> str | None:
        if not sa.inspect(sync_connection).has_table("alembic_version"):
            return None
        return sync_connection.execute(
            sa.text("SELECT version_num FROM alembic_version")
        ).scalar()

    return await connection.run_sync(read)
