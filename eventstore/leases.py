"""Liveness leases: workers heartbeat running executions; the reaper claims stale ones.

A heartbeat is a row (`execution_leases`), not an event, so the log does not
fill with them. Times come from the database's clock, so workers and reapers
on different machines agree on what "stale" means.

A heartbeat and a reaper race for the same row, and exactly one wins: the
reaper claims a lease with one conditional write (still stale, or claimed
before) and a heartbeat renews only an unclaimed lease. A heartbeat that
returned is therefore never followed by a failure decided on an older
lease, and a claimed run refuses heartbeats until the reaper has failed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from eventstore import errors
from eventstore.schema import execution_leases as table
from eventstore.sqltypes import UTCDateTime

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.base import Backend
    from eventstore.backends.dialect import ConflictInsert


@dataclass(frozen=True)
class Lease:
    """The last sign of life of a running execution."""

    execution_id: UUID
    worker_id: str
    heartbeat_at: datetime
    reaped_at: datetime | None = None


class Leases:
    """Read and write the leases table."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._beat = _renewal(backend.insert(table))

    async def now(self, connection: AsyncConnection) -> datetime:
        """The database's clock."""
        moment = await connection.scalar(
            sa.select(sa.type_coerce(self._backend.clock(), UTCDateTime))
        )
        if not isinstance(moment, datetime):
            raise errors.DatabaseError("the database did not tell its time")
        return moment

    async def beat(self, execution_id: UUID, worker_id: str) -> bool:
        """Record a heartbeat now; False when a reaper has claimed the lease."""
        await self._backend.ensure_schema()
        async with self._backend.begin_write() as connection:
            moment = await self.now(connection)
            renewed = await connection.execute(
                self._beat,
                {
                    "execution_id": execution_id,
                    "worker_id": worker_id,
                    "heartbeat_at": moment,
                },
            )
            return renewed.first() is not None

    async def claim(
        self,
        execution_id: UUID,
        *,
        worker_id: str,
        quiet_since: datetime,
        stale_before: datetime,
    ) -> bool:
        """Claim a lease for the reaper if it is still stale (or claimed already).

        A run without a lease row gets one, dated `quiet_since` (its start).
        """
        insert = self._backend.insert(table)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.execution_id],
            set_={
                "reaped_at": sa.func.coalesce(
                    table.c.reaped_at, insert.excluded.reaped_at
                )
            },
            where=(table.c.heartbeat_at < stale_before)
            | table.c.reaped_at.is_not(None),
        ).returning(table.c.execution_id)
        async with self._backend.begin_write() as connection:
            moment = await self.now(connection)
            claimed = await connection.execute(
                statement,
                {
                    "execution_id": execution_id,
                    "worker_id": worker_id,
                    "heartbeat_at": quiet_since,
                    "reaped_at": moment,
                },
            )
            return claimed.first() is not None

    async def forget_ended(self, open_ids: set[UUID], *, quiet_before: datetime) -> int:
        """Delete the unclaimed leases, quiet since `quiet_before`, of runs not open.

        A claimed lease stays until its run is archived, so a heartbeat that
        read the run as running before the reaper failed it is still refused.
        """
        stale = sa.select(table.c.execution_id).where(
            table.c.heartbeat_at < quiet_before, table.c.reaped_at.is_(None)
        )
        async with self._backend.connect_read() as connection:
            ended = [
                i
                for i in (await connection.execute(stale)).scalars()
                if i not in open_ids
            ]
        for start in range(0, len(ended), FORGET_BATCH):
            async with self._backend.begin_write() as connection:
                await connection.execute(
                    sa.delete(table).where(
                        table.c.execution_id.in_(ended[start : start + FORGET_BATCH]),
                        table.c.heartbeat_at < quiet_before,
                        table.c.reaped_at.is_(None),
                    )
                )
        return len(ended)

    async def get(self, execution_id: UUID) -> Lease | None:
        """An execution's lease, if it has one."""
        async with self._backend.connect_read() as connection:
            row = (
                await connection.execute(
                    sa.select(table).where(table.c.execution_id == execution_id)
                )
            ).first()
        return (
            None
            if row is None
            else Lease(row.execution_id, row.worker_id, row.heartbeat_at, row.reaped_at)
        )

    async def all(self) -> dict[UUID, Lease]:
        """Every lease, by execution."""
        async with self._backend.connect_read() as connection:
            rows = (await connection.execute(sa.select(table))).all()
        return {
            row.execution_id: Lease(
                row.execution_id, row.worker_id, row.heartbeat_at, row.reaped_at
            )
            for row in rows
        }


# Ids per DELETE: well under SQLite's limit of bound parameters.
FORGET_BATCH: Final = 500


def _renewal(insert: ConflictInsert) -> sa.Executable:
    """A heartbeat: insert the lease, or move an unclaimed one forward; returns its id."""
    return insert.on_conflict_do_update(
        index_elements=[table.c.execution_id],
        set_={
            "worker_id": insert.excluded.worker_id,
            # Never backwards, should the database's clock step back.
            "heartbeat_at": sa.case(
                (
                    table.c.heartbeat_at < insert.excluded.heartbeat_at,
                    insert.excluded.heartbeat_at,
                ),
                else_=table.c.heartbeat_at,
            ),
        },
        where=table.c.reaped_at.is_(None),
    ).returning(table.c.execution_id)
