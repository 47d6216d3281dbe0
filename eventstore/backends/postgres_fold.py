"""The executions fold run in PostgreSQL, set-based, for a rebuild from the start (ARCHITECTURE §5).

Repeatable-read passes over the log, grouped by stream
(`postgres_fold_sql`), one per partition of the streams, each in a session
of its own and read by a cursor a part at a time: the database aggregates
the next parts while this process builds the rows of the last
(`postgres_fold_rows`) and the caller writes them with COPY. Streams it
cannot fold are handed back, for the reference fold. Each session sees
every event up to the checkpoint (they are committed), and no archive
removes one meanwhile: it waits for the shadow's checkpoint to pass them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from typing_extensions import override

from eventstore.backends.database_fold import ExecutionsFold, FoldedStreams
from eventstore.backends.postgres_driver import driver_connection
from eventstore.backends.postgres_fold_rows import ROW_COLUMNS, folded_row
from eventstore.backends.postgres_fold_sql import (
    FOLD_SQL,
    READ_STREAMS_SQL,
    SCAN_WHOLE_LOG_SQL,
)
from eventstore.backends.postgres_log import rows_to_events

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from uuid import UUID

    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.postgres_shadow import PoolOwner
    from eventstore.events.checkpoint import Checkpoint
    from eventstore.events.envelope import RecordedEvent


# Sessions that fold at once, each the streams of one partition: the
# database sorts and aggregates on two cores while this process builds rows.
READERS: Final = 2


class PostgresExecutionsFold(ExecutionsFold):
    """The fold in repeatable-read passes over the log, read by cursors."""

    def __init__(self, backend: PoolOwner) -> None:
        self._backend = backend

    @override
    async def fold(
        self, until: Checkpoint, *, part: int
    ) -> AsyncIterator[FoldedStreams]:
        parts: asyncio.Queue[list[asyncpg.Record] | Exception | None] = asyncio.Queue(
            maxsize=READERS
        )
        readers = [
            asyncio.ensure_future(self._read(until, part, index, parts))
            for index in range(READERS)
        ]
        try:
            finished = 0
            while finished < READERS:
                records = await parts.get()
                if records is None:
                    finished += 1
                elif isinstance(records, Exception):
                    raise records
                else:
                    yield _folded(records)
        finally:
            for reader in readers:
                reader.cancel()
            # Not awaited themselves: the caller's own cancellation must
            # not be taken for theirs, nor swallowed with it.
            await asyncio.wait(readers)
            for reader in readers:
                if not reader.cancelled():
                    reader.exception()  # retrieved: the error raised is the first

    async def _read(
        self,
        until: Checkpoint,
        part: int,
        index: int,
        parts: asyncio.Queue[list[asyncpg.Record] | Exception | None],
    ) -> None:
        """Read one partition's rows into `parts`, then None (or the error)."""
        backend = self._backend
        try:
            # Read only, so it holds back no gap-safe reader of the log.
            async with (
                backend.translate_errors(),
                backend.pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                await connection.execute(SCAN_WHOLE_LOG_SQL)
                cursor = await connection.cursor(
                    FOLD_SQL, until.epoch, until.xid, until.position, READERS, index
                )
                while records := await cursor.fetch(part):
                    await parts.put(records)
                    if len(records) < part:
                        break
        except Exception as exc:
            await parts.put(exc)
        else:
            await parts.put(None)

    @override
    async def write(
        self, connection: AsyncConnection, table: str, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        driver = await driver_connection(connection)
        async with self._backend.translate_errors():
            await driver.copy_records_to_table(table, records=rows, columns=ROW_COLUMNS)

    @override
    async def read_streams(
        self, stream_ids: Sequence[UUID], until: Checkpoint
    ) -> list[RecordedEvent]:
        backend = self._backend
        async with backend.translate_errors(), backend.pool.acquire() as connection:
            rows = await connection.fetch(
                READ_STREAMS_SQL,
                list(stream_ids),
                until.epoch,
                until.xid,
                until.position,
            )
        return rows_to_events(rows)


def _folded(records: list[asyncpg.Record]) -> FoldedStreams:
    rows: list[tuple[Any, ...]] = []
    unfolded: list[UUID] = []
    events = 0
    for record in records:
        events += record["events"]
        if not record["execution"]:
            continue  # a system stream: it folds into no row
        row = folded_row(record) if record["plain"] else None
        if row is None:
            unfolded.append(record["stream_id"])
        else:
            rows.append(row)
    return FoldedStreams(rows, events, unfolded)
