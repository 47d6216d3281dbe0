"""Liveness leases: workers heartbeat running executions; the reaper reads the leases.

A heartbeat is a row (`execution_leases`), not an event, so the log does not
fill with them. Times come from the database's clock, so workers and reapers
on different machines agree on what "stale" means.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa

from eventstore import errors
from eventstore.schema import execution_leases as table
from eventstore.sqltypes import UTCDateTime

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.base import Backend


@dataclass(frozen=True)
class Lease:
    """The last sign of life of a running execution."""

    execution_id: UUID
    worker_id: str
    heartbeat_at: datetime


class Leases:
    """Read and write the leases table."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._upsert = backend.upsert(table, guard="heartbeat_at")

    async def now(self, connection: AsyncConnection) -> datetime:
        """The database's clock."""
        moment = await connection.scalar(
            sa.select(sa.type_coerce(self._backend.clock(), UTCDateTime))
        )
        if not isinstance(moment, datetime):
            raise errors.DatabaseError("the database did not tell its time")
        return moment

    async def beat(self, execution_id: UUID, worker_id: str) -> datetime:
        """Record a heartbeat now; returns its time."""
        await self._backend.ensure_schema()
        async with self._backend.begin_write() as connection:
            moment = await self.now(connection)
            await connection.execute(
                self._upsert,
                [
                    {
                        "execution_id": execution_id,
                        "worker_id": worker_id,
                        "heartbeat_at": moment,
                    }
                ],
            )
        return moment

    async def release(self, execution_id: UUID) -> None:
        """Forget an execution's lease (it ended)."""
        async with self._backend.begin_write() as connection:
            await connection.execute(
                sa.delete(table).where(table.c.execution_id == execution_id)
            )

    async def get(self, execution_id: UUID) -> Lease | None:
        """An execution's lease, if it ever heartbeated."""
        async with self._backend.connect_read() as connection:
            row = (
                await connection.execute(
                    sa.select(table).where(table.c.execution_id == execution_id)
                )
            ).first()
        return (
            None
            if row is None
            else Lease(row.execution_id, row.worker_id, row.heartbeat_at)
        )
