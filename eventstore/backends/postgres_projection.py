"""What projectors and rebuilds need of PostgreSQL: leaders, the gate, backlog, shadows."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final

from typing_extensions import override

from eventstore import errors
from eventstore.backends import postgres_leadership as leadership
from eventstore.backends.postgres_database import PostgresDatabase
from eventstore.backends.postgres_driver import driver_connection
from eventstore.backends.postgres_fold import PostgresExecutionsFold
from eventstore.backends.postgres_leadership import PostgresLeaderLocks
from eventstore.backends.postgres_order import AFTER, in_partition, order_key
from eventstore.backends.postgres_shadow import (
    PostgresShadowTables,
    with_lock_retries,
)
from eventstore.backends.projection_support import ProjectionSupport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.leadership import Holder, HorizonHolder, LeaderLocks
    from eventstore.events.checkpoint import Checkpoint
    from eventstore.partitions import Partition

BACKLOG_SQL: Final = (
    "SELECT count(*), min(recorded_at) FROM execution_events "  # noqa: S608 - constant fragment
    f"WHERE {AFTER}"
)

BACKLOG_PARTITION_SQL: Final = BACKLOG_SQL + " AND " + in_partition("$4", "$5")


class PostgresProjectionSupport(PostgresDatabase, ProjectionSupport):
    """Leaders by session advisory locks, the gate by transaction-level ones."""

    @override
    async def backlog(
        self, after: Checkpoint, partition: Partition | None = None
    ) -> tuple[int, datetime | None]:
        whole = partition is None or partition.count == 1
        async with self.translate_errors(), self.pool.acquire() as connection:
            row = await connection.fetchrow(
                BACKLOG_SQL if whole else BACKLOG_PARTITION_SQL,
                *order_key(after),
                *(
                    ()
                    if whole or partition is None
                    else (partition.count, partition.index)
                ),
            )
        assert row is not None  # noqa: S101 - an aggregate returns one row
        return int(row[0]), row[1]

    @override
    def leader_locks(self) -> LeaderLocks:
        return PostgresLeaderLocks(
            self._dsn,
            connect_timeout=self._settings.connect_timeout,
            server_settings=self._server_settings,
        )

    @override
    async def slot_holders(self, slots: Sequence[str]) -> dict[str, Holder]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            return await leadership.slot_holders(connection, slots)

    @override
    @contextlib.asynccontextmanager
    async def projection_write(self, projection: str) -> AsyncIterator[AsyncConnection]:
        async with self.begin_write() as connection:
            driver = await driver_connection(connection)
            # Tried, never waited for: a batch waits outside the database,
            # holding nothing, so it cannot close a cycle with the rebuild.
            if not await driver.fetchval(leadership.ENTER_GATE_SQL, projection):
                raise errors.RebuildInProgress(projection=projection)
            yield connection

    @override
    @contextlib.asynccontextmanager
    async def rebuild_write(
        self, projection: str, *, lock_timeout: float, attempts: int
    ) -> AsyncIterator[AsyncConnection]:
        async with self.begin_write() as connection:
            driver = await driver_connection(connection)

            async def hold() -> None:
                await driver.execute(leadership.HOLD_GATE_SQL, projection)

            # Bounded waits for the batches in flight, so a stuck one makes
            # the rebuild give up rather than hold the projection for good.
            if not await with_lock_retries(driver, hold, lock_timeout, attempts):
                raise errors.DatabaseError(
                    f"could not hold projection {projection} for the rebuild within "
                    f"{attempts} tries of {lock_timeout:g} s (a projector's "
                    "transaction on it lasted that long); run the rebuild again"
                )
            yield connection

    @override
    async def rebuild_holders(self, projections: Sequence[str]) -> dict[str, Holder]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            return await leadership.gate_holders(connection, projections)

    @override
    async def horizon_holder(self) -> HorizonHolder | None:
        async with self.translate_errors(), self.pool.acquire() as connection:
            return await leadership.horizon_holder(connection)

    @override
    def shadow_tables(self) -> PostgresShadowTables:
        return PostgresShadowTables(self)

    @override
    def executions_fold(self) -> PostgresExecutionsFold:
        return PostgresExecutionsFold(self)
