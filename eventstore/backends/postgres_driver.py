"""The asyncpg connection under a SQLAlchemy connection, for what Core cannot say fast."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection


async def driver_connection(connection: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under SQLAlchemy's, inside the same transaction."""
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    if not driver.is_in_transaction():
        # SQLAlchemy sends BEGIN with its first statement; send one, so that
        # what goes straight to asyncpg joins the caller's transaction.
        await connection.exec_driver_sql("SELECT 1")
    return driver
