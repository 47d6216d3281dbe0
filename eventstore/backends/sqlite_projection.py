"""What projectors and rebuilds need of SQLite: file locks for leaders and the gate."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

from typing_extensions import override

from eventstore import errors
from eventstore.backends import sqlite_leadership as leadership
from eventstore.backends.projection_support import ProjectionSupport
from eventstore.backends.sqlite_database import SqliteDatabase
from eventstore.backends.sqlite_leadership import SqliteLeaderLocks
from eventstore.backends.sqlite_rows import from_db_time

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.leadership import Holder, HorizonHolder, LeaderLocks
    from eventstore.events.checkpoint import Checkpoint
    from eventstore.partitions import Partition

BACKLOG_SQL: Final = (
    "SELECT count(*), min(recorded_at) FROM execution_events WHERE position > ?"
)

BACKLOG_PARTITION_SQL: Final = (
    BACKLOG_SQL + " AND eventstore_partition_key(stream_id) % ? = ?"
)


class SqliteProjectionSupport(SqliteDatabase, ProjectionSupport):
    """Leaders and the rebuild gate by advisory file locks beside the database."""

    @override
    @contextlib.asynccontextmanager
    async def projection_write(self, projection: str) -> AsyncIterator[AsyncConnection]:
        # The writer lock alone keeps a batch out of a rebuild's transaction
        # (the rebuild replays in one); the gate turns the batch away before
        # it queues for that lock for as long as the rebuild lasts, and tells
        # `project --status` why it waits. Peeked before and after this
        # process's own writers, one of which may be the rebuild.
        def check() -> None:
            if leadership.gate_holders(self._database, [projection]):
                raise errors.RebuildInProgress(projection=projection)

        check()
        async with self._begin_immediate(check) as connection:
            yield connection

    @override
    @contextlib.asynccontextmanager
    async def rebuild_write(
        self, projection: str, *, lock_timeout: float, attempts: int
    ) -> AsyncIterator[AsyncConnection]:
        # Only another rebuild holds the gate for long (a peek lasts
        # microseconds); the gate comes before the writer lock, as on
        # PostgreSQL it comes before the checkpoint rows.
        descriptor = leadership.hold_gate(self._database, projection)
        for _ in range(attempts - 1):
            if descriptor is not None:
                break
            await asyncio.sleep(lock_timeout)
            descriptor = leadership.hold_gate(self._database, projection)
        if descriptor is None:
            raise errors.DatabaseError(
                f"could not hold projection {projection} for the rebuild within "
                f"{attempts} tries of {lock_timeout:g} s: another rebuild of it "
                "is running"
            )
        try:
            async with self._begin_immediate(foreign_keys_at_commit=True) as connection:
                yield connection
        finally:
            leadership.release_gate(descriptor)

    @override
    async def rebuild_holders(self, projections: Sequence[str]) -> dict[str, Holder]:
        return leadership.gate_holders(self._database, projections)

    @override
    async def backlog(
        self, after: Checkpoint, partition: Partition | None = None
    ) -> tuple[int, datetime | None]:
        if partition is None or partition.count == 1:
            rows = await self._fetch(BACKLOG_SQL, (after.position,))
        else:
            rows = await self._fetch(
                BACKLOG_PARTITION_SQL,
                (after.position, partition.count, partition.index),
            )
        count, oldest = rows[0]
        return int(count), from_db_time(oldest) if oldest else None

    @override
    def leader_locks(self) -> LeaderLocks:
        return SqliteLeaderLocks(self._database)

    @override
    async def slot_holders(self, slots: Sequence[str]) -> dict[str, Holder]:
        return leadership.slot_holders(self._database, slots)

    @override
    async def horizon_holder(self) -> HorizonHolder | None:
        return None  # one writer at a time: position order is commit order
