"""PostgreSQL: the production backend, with a raw asyncpg hot path (ARCHITECTURE §1-2).

Appends call one server-side function (`eventstore_append`, created by the
migrations) over a dedicated asyncpg pool: one round trip checks idempotency
and the expected version, chains the hashes and inserts the events, in the
implicit transaction of a single statement. SQLAlchemy on the same server
serves the portable Core queries.

Global order: every event carries the `pg_current_xact_id()` of its writer.
Readers take only events of transactions below the snapshot's xmin, which
have all committed or rolled back, in (transaction_id, position) order, and
resume after that pair: an event whose position was drawn before another's
but committed after it is still read, never skipped (ARCHITECTURE §1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import asyncpg
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from typing_extensions import override

from eventstore import errors
from eventstore.backends import postgres_leadership as leadership
from eventstore.backends.base import (
    AppendDecision,
    Backend,
    ConflictInsert,
    LastStatusChange,
    RawEventRow,
    stream_type_refused,
)
from eventstore.backends.leadership import process_identity
from eventstore.backends.postgres_driver import driver_connection
from eventstore.backends.postgres_leadership import PostgresLeaderLocks
from eventstore.backends.postgres_listener import CHANNEL, PostgresListener
from eventstore.backends.postgres_options import split_options
from eventstore.backends.postgres_shadow import (
    PostgresShadowTables,
    with_lock_retries,
)
from eventstore.backends.postgres_upsert import BulkUpsert
from eventstore.cache import BoundedCache
from eventstore.chains import canonical_for
from eventstore.events.envelope import (
    Checkpoint,
    RecordedEvent,
    stored_metadata_parser,
)
from eventstore.hashing import (
    GENESIS_HASH,
    chain_hash,
    dump_json,
    format_occurred_at,
    parse_json,
    parse_json_object,
)
from eventstore.redaction import redact_url
from eventstore.schema import STATUS_EVENTS_CONDITION

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.leadership import Holder, HorizonHolder, LeaderLocks
    from eventstore.events.envelope import NewEvent
    from eventstore.partitions import Partition
    from eventstore.settings import StoreSettings

IMMUTABLE_LOG_SQLSTATE: Final = "ZE001"  # raised by the log's immutability triggers
UNMIGRATED_SQLSTATES: Final = frozenset({"42P01", "42883"})  # no table / no function
APPEND_RACE_RETRIES: Final = 8
NOTIFY_COALESCE: Final = 0.005  # seconds: at most ~200 NOTIFY/s per process
ANNOUNCE_ON_CLOSE: Final = 2.0  # seconds a closing store waits to send its NOTIFY
NOTIFY_SQL: Final = f"SELECT pg_notify('{CHANNEL}', '')"
logger: Final = logging.getLogger(__name__)
MAX_POSITION: Final = 2**63 - 1
MAX_XID8: Final = 2**64 - 1
MAX_EPOCH: Final = 2**31 - 1
FAR_FUTURE: Final = datetime(9999, 12, 31, tzinfo=UTC)

_COLUMNS: Final = (
    "position, stream_id, version, stream_type, event_id, type, schema_version, "
    "data, metadata, occurred_at, recorded_at, transaction_id, hash, epoch"
)
APPEND_SQL: Final = (
    "SELECT outcome, version, position, event_id, detail, hash "
    "FROM eventstore_append($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
# The fast path, for a writer that knows the stream's head (its version and
# hash): one plain INSERT with hashes chained by the client. The guard
# proves the head is still the expected one; the unique keys refuse a
# concurrent writer and a re-used event id, and the function path then says
# which it was.
FAST_APPEND_SQL: Final = """
INSERT INTO execution_events (stream_id, version, stream_type, event_id, type,
    schema_version, data, metadata, occurred_at, hash)
SELECT $1, e.version, $2, e.event_id, e.type, e.schema_version, e.data::jsonb,
    e.metadata::jsonb, e.occurred_at::timestamptz, e.hash
FROM unnest($3::int[], $4::uuid[], $5::text[], $6::int[], $7::text[], $8::text[],
    $9::text[], $10::bytea[])
    AS e(version, event_id, type, schema_version, data, metadata, occurred_at, hash)
WHERE $11::int = 0 OR EXISTS (
    SELECT FROM execution_events p
    WHERE p.stream_id = $1 AND p.version = $11 AND p.hash = $12)
RETURNING version, position
"""
# The same for the common single event, with scalar parameters (cheaper to
# encode and to plan than arrays).
FAST_APPEND_ONE_SQL: Final = """
INSERT INTO execution_events (stream_id, version, stream_type, event_id, type,
    schema_version, data, metadata, occurred_at, hash)
SELECT $1, $3, $2, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10
WHERE $11::int = 0 OR EXISTS (
    SELECT FROM execution_events p
    WHERE p.stream_id = $1 AND p.version = $11 AND p.hash = $12)
RETURNING version, position
"""
HEAD_CACHE_SIZE: Final = 50_000
# The archive guard row, held by a system-stream append's transaction: only
# the archivist may write it (docs/ROLES.md), so only the store's own paths
# write system streams (migration 0006).
OPEN_GUARD_SQL: Final = (
    "INSERT INTO execution_events_archive_guard (id, reason) "
    "VALUES (1, 'system stream append')"
)
CLOSE_GUARD_SQL: Final = "DELETE FROM execution_events_archive_guard"
READ_STREAM_SQL: Final = (
    f"SELECT {_COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE stream_id = $1 AND version > $2 ORDER BY version LIMIT $3"
)
# The log is ordered by (epoch, transaction_id, position). Only transactions
# below the snapshot's xmin are finished; their events can no longer appear
# behind the checkpoint (ARCHITECTURE §1). Every event of an earlier restore epoch
# was committed on the cluster it came from, so the horizon bounds only the
# current epoch (migration 0006).
_HORIZON: Final = (
    "(epoch, transaction_id) < (pg_sequence_last_value('execution_events_epoch_seq'), "
    "pg_snapshot_xmin(pg_current_snapshot()))"
)
_AFTER: Final = "(epoch, transaction_id, position) > ($1, $2::xid8, $3)"
_ORDER: Final = "ORDER BY epoch, transaction_id, position"
READ_ALL_SQL: Final = (
    f"SELECT {_COLUMNS} FROM execution_events "  # noqa: S608 - constant fragments
    f"WHERE {_HORIZON} AND {_AFTER} {_ORDER} LIMIT $4"
)
# The partition rule of eventstore/partitions.py: the UUID's last 32 bits.
READ_PARTITION_SQL: Final = (
    f"SELECT {_COLUMNS} FROM execution_events "  # noqa: S608 - constant fragments
    f"WHERE {_HORIZON} AND {_AFTER} "
    "AND ('x' || right(stream_id::text, 8))::bit(32)::bigint % $5 = $6 "
    f"{_ORDER} LIMIT $4"
)
BACKLOG_SQL: Final = (
    "SELECT count(*), min(recorded_at) FROM execution_events "  # noqa: S608 - constant fragment
    f"WHERE {_AFTER}"
)
BACKLOG_PARTITION_SQL: Final = (
    BACKLOG_SQL + " AND ('x' || right(stream_id::text, 8))::bit(32)::bigint % $4 = $5"
)
HEAD_VERSION_SQL: Final = (
    "SELECT coalesce(max(version), 0) FROM execution_events WHERE stream_id = $1"
)
READ_STREAMS_SQL: Final = (
    f"SELECT {_COLUMNS} FROM execution_events "  # noqa: S608 - constant column list
    "WHERE stream_id = ANY($1::uuid[]) ORDER BY position"
)
HEAD_CHECKPOINT_SQL: Final = (
    "SELECT epoch, transaction_id, position FROM execution_events "  # noqa: S608 - constant fragment
    f"WHERE {_HORIZON} "
    "ORDER BY epoch DESC, transaction_id DESC, position DESC LIMIT 1"
)
MIGRATION_TRY_LOCK_SQL: Final = (
    "SELECT pg_try_advisory_lock(hashtextextended('eventstore-migrate', 0))"
)
# How often a migration runner waiting for another one asks for the lock again.
MIGRATION_LOCK_POLL: Final = 0.05
MIGRATION_UNLOCK_SQL: Final = (
    "SELECT pg_advisory_unlock(hashtextextended('eventstore-migrate', 0))"
)
# Run by every new connection: starts a new epoch after a restore (0006).
CHECK_EPOCH_SQL: Final = "SELECT eventstore_check_epoch()"
HAS_EPOCHS_SQL: Final = "SELECT to_regprocedure('eventstore_check_epoch()') IS NOT NULL"
# Every transaction that has committed by now has an id below the snapshot's
# xmax; once the horizon (xmin) is there, read_all sees all of them.
HORIZON_MARK_SQL: Final = "SELECT pg_snapshot_xmax(pg_current_snapshot())"
HORIZON_REACHED_SQL: Final = (
    "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8"
)
STREAM_HEADS_SQL: Final = """
SELECT DISTINCT ON (stream_id) stream_id, version, hash FROM execution_events
WHERE stream_type <> 'system'
  AND (epoch, transaction_id, position) <= ($1, $2::xid8, $3)
ORDER BY stream_id, version DESC
"""
# The WHERE repeats the partial index's condition, so the planner uses it;
# the order is the index's, backwards (the caller sorts), so the answer is
# one index-only scan with no sort.
STATUS_EVENTS_SQL: Final = f"""
SELECT DISTINCT ON (stream_id) stream_id, type, version, position, occurred_at,
    recorded_at
FROM execution_events
WHERE {STATUS_EVENTS_CONDITION} AND position <= $1 AND recorded_at <= $2
ORDER BY stream_id DESC, version DESC
"""  # noqa: S608 - constant condition
OPEN_EXECUTIONS_SQL: Final = f"""
SELECT * FROM ({STATUS_EVENTS_SQL}) AS last
WHERE type IN ('ExecutionCreated', 'ExecutionStarted')
"""  # noqa: S608 - constant query
EXCLUDE_APPENDS_SQL: Final = "LOCK TABLE execution_events IN SHARE ROW EXCLUSIVE MODE"
CHECKPOINT_AT_SQL: Final = (
    "SELECT epoch, transaction_id FROM execution_events WHERE position = $1"
)


def _rows_to_events(rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
    """Events from rows of `_COLUMNS`, read by index (the hot path of every read)."""
    metadata = stored_metadata_parser()
    return [
        RecordedEvent.from_log(
            position=row[0],
            stream_id=row[1],
            version=row[2],
            stream_type=row[3],
            event_id=row[4],
            event_type=row[5],
            schema_version=row[6],
            data=parse_json_object(row[7]),
            metadata=metadata(row[8]),
            occurred_at=row[9],
            recorded_at=row[10],
            transaction_id=row[11],
            chain_hash=row[12],
            epoch=row[13],
        )
        for row in rows
    ]


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of an asyncpg error, also when SQLAlchemy wrapped it."""
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(code, str):
            return code
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


class PostgresBackend(Backend):
    """PostgreSQL through asyncpg (hot path) and SQLAlchemy Core (the rest)."""

    def __init__(self, *, url: str, settings: StoreSettings) -> None:
        # The URL's ?options= settings go to every connection (see the module).
        parsed, session_settings = split_options(make_url(url))
        server_settings = {
            **session_settings,
            "idle_in_transaction_session_timeout": str(
                settings.idle_in_transaction_timeout_ms
            ),
            # host:pid lets operators (and tests) tell processes apart.
            "application_name": f"eventstore {process_identity()}"[:63],
        }
        engine = create_async_engine(
            parsed.set(drivername="postgresql+asyncpg"),
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
            pool_pre_ping=False,
            # JSON columns read numbers by value, like the log does.
            json_serializer=dump_json,
            json_deserializer=parse_json,
            connect_args={
                "server_settings": server_settings,
                "timeout": settings.connect_timeout,
            },
        )
        super().__init__(url=redact_url(parsed), engine=engine)
        self._dsn = parsed.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._settings = settings
        self._server_settings = server_settings
        self._pool: asyncpg.Pool | None = None
        self._bulk_upserts: dict[tuple[str, str, tuple[str, ...]], BulkUpsert] = {}
        self._announcer: asyncio.Task[None] | None = None
        self._announce_pending = False
        # stream -> (version, hash) of a head this process wrote or read.
        self._heads: BoundedCache[UUID, tuple[int, bytes]] = BoundedCache(
            HEAD_CACHE_SIZE
        )

    @override
    @property
    def name(self) -> str:
        return "postgresql"

    @override
    async def connect(self) -> None:
        async with self.translate_errors():
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._settings.pool_size,
                timeout=self._settings.connect_timeout,
                server_settings=self._server_settings,
                init=_check_epoch,
            )

    @override
    async def aclose(self) -> None:
        if self._announcer is not None:
            # The last appends' NOTIFY is sent before the pool closes: other
            # processes' readers would otherwise wait for their poll. Briefly.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._announcer, ANNOUNCE_ON_CLOSE)
            self._announcer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await self.engine.dispose()

    @override
    @contextlib.asynccontextmanager
    async def migration_connection(self) -> AsyncIterator[AsyncConnection]:
        # Each revision runs in its own transaction (migrations/env.py), and
        # a revision may step outside it to build an index concurrently, so
        # appends are not held back while it builds. Two migrations at once
        # on an empty database would both find no schema and collide
        # creating it: a session advisory lock (freed by the server if this
        # process dies) makes the others wait, then find nothing to do.
        async with self.translate_errors(), self.engine.connect() as connection:
            await _take_migration_lock(connection)
            try:
                yield connection
                await connection.commit()
            finally:
                # A broken connection has lost its session, and the lock.
                with contextlib.suppress(sa_exc.DBAPIError):
                    await connection.execute(sa.text(MIGRATION_UNLOCK_SQL))
                    await connection.commit()

    @override
    async def listen(self, on_notify: Callable[[], None]) -> PostgresListener:
        listener = PostgresListener(
            dsn=self._dsn,
            on_notify=on_notify,
            connect_timeout=self._settings.connect_timeout,
            server_settings=self._server_settings,
        )
        listener.start()
        return listener

    @property
    def pool(self) -> asyncpg.Pool:
        """The asyncpg pool of the hot path."""
        if self._pool is None:
            raise errors.ConfigurationError("the store is closed")
        return self._pool

    @override
    async def append(
        self,
        stream_id: UUID,
        events: Sequence[NewEvent],
        *,
        stream_type: str,
        expected_version: int | None,
        guarded: bool = False,
    ) -> AppendDecision:
        async with self.translate_errors():
            try:
                outcome = await self._append(
                    stream_id, events, stream_type, expected_version, guarded=guarded
                )
            except asyncpg.PostgresError as exc:
                refusal = append_refusal(stream_id, exc.sqlstate, exc.detail)
                if refusal is None:
                    raise
                raise refusal from exc
        if outcome.kind == "appended":
            self._announce()
        return outcome

    async def _append(
        self,
        stream_id: UUID,
        events: Sequence[NewEvent],
        stream_type: str,
        expected_version: int | None,
        *,
        guarded: bool,
    ) -> AppendDecision:
        outcome = None
        if expected_version is not None and not guarded:
            head = (
                (0, GENESIS_HASH)
                if expected_version == 0
                else self._heads.get(stream_id)
            )
            if head is not None and head[0] == expected_version:
                outcome = await self._append_known_head(
                    stream_id, events, stream_type, head
                )
        if outcome is None:
            outcome = await self._append_by_function(
                stream_id, events, stream_type, expected_version, guarded=guarded
            )
        return outcome

    def _announce(self) -> None:
        """NOTIFY other processes' listeners of appends, coalesced per process.

        Not a trigger in the append: a transaction that notifies holds a
        server-wide lock through its commit, which serialised concurrent
        appenders (-25 to -35 % throughput, measured). One NOTIFY per
        NOTIFY_COALESCE seconds after the commits costs nothing measurable;
        a lost one costs only latency, as readers also poll (ARCHITECTURE §2, §4).
        """
        self._announce_pending = True
        if self._announcer is None or self._announcer.done():
            self._announcer = asyncio.get_running_loop().create_task(
                self._announce_loop()
            )

    async def _announce_loop(self) -> None:
        while self._announce_pending:
            await asyncio.sleep(NOTIFY_COALESCE)
            self._announce_pending = False  # appends from now on notify again
            try:
                async with self.pool.acquire() as connection:
                    await connection.execute(NOTIFY_SQL)
            except Exception:  # a lost hint: readers still poll
                logger.debug("NOTIFY after an append failed", exc_info=True)

    async def _append_known_head(
        self,
        stream_id: UUID,
        events: Sequence[NewEvent],
        stream_type: str,
        head: tuple[int, bytes],
    ) -> AppendDecision | None:
        """The fast path; None when the function path must decide instead."""
        version, previous = head
        versions, hashes = [], []
        for event in events:
            version += 1
            previous = chain_hash(previous, canonical_for(stream_id, version, event))
            versions.append(version)
            hashes.append(previous)
        args: tuple[object, ...]
        if len(events) == 1:
            [event] = events
            query, args = (
                FAST_APPEND_ONE_SQL,
                (
                    stream_id,
                    stream_type,
                    version,
                    event.event_id,
                    event.type,
                    event.schema_version,
                    event.data_json,
                    event.metadata_json,
                    event.occurred_at,
                    previous,
                ),
            )
        else:
            query, args = (
                FAST_APPEND_SQL,
                (
                    stream_id,
                    stream_type,
                    versions,
                    *_event_columns(events),
                    hashes,
                ),
            )
        try:
            async with self.pool.acquire() as connection:
                rows = await connection.fetch(query, *args, head[0], head[1])
        except asyncpg.UniqueViolationError:
            return None  # a concurrent writer, or a re-used event id
        if not rows:
            return None  # the head moved or was never what we thought
        self._heads.put(stream_id, (version, previous))
        ordered = sorted((row["version"], row["position"]) for row in rows)
        return AppendDecision(
            kind="appended",
            versions=tuple(v for v, _ in ordered),
            positions=tuple(p for _, p in ordered),
        )

    async def _append_by_function(
        self,
        stream_id: UUID,
        events: Sequence[NewEvent],
        stream_type: str,
        expected_version: int | None,
        *,
        guarded: bool,
    ) -> AppendDecision:
        args = (
            stream_id,
            stream_type,
            expected_version,
            *_event_columns(events),
        )
        for _ in range(APPEND_RACE_RETRIES):
            try:
                rows = await self._call_append(args, guarded=guarded)
            except asyncpg.UniqueViolationError:
                # A concurrent append took the same version or event id
                # between our read of the head and our insert. Run again:
                # the function now sees the winner and answers with a
                # version conflict, a duplicate, or a fresh version.
                continue
            if rows[-1]["outcome"] in ("appended", "duplicate"):
                last = max(rows, key=lambda row: row["version"])
                self._heads.put(stream_id, (last["version"], last["hash"]))
            return _outcome(rows)
        # Lost every race: a version conflict, which the log turns into its
        # error like any other outcome.
        async with self.pool.acquire() as connection:
            actual = await connection.fetchval(HEAD_VERSION_SQL, stream_id)
        return AppendDecision("version_conflict", actual=int(actual or 0))

    async def _call_append(
        self, args: Sequence[object], *, guarded: bool
    ) -> list[asyncpg.Record]:
        """One call of the append function, inside the archive guard if `guarded`."""
        async with self.pool.acquire() as connection:
            if not guarded:
                return await connection.fetch(APPEND_SQL, *args)
            async with connection.transaction():
                await connection.execute(OPEN_GUARD_SQL)
                rows = await connection.fetch(APPEND_SQL, *args)
                await connection.execute(CLOSE_GUARD_SQL)
                return rows

    @override
    def forget_streams(self, stream_ids: Sequence[UUID]) -> None:
        for stream_id in stream_ids:
            self._heads.discard(stream_id)

    @override
    async def read_stream(
        self, stream_id: UUID, *, after_version: int = 0, limit: int | None = None
    ) -> list[RecordedEvent]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(
                READ_STREAM_SQL, stream_id, after_version, limit
            )
        if rows and limit is None:  # read to the end: the last row is the head
            self._heads.put(stream_id, (rows[-1]["version"], rows[-1]["hash"]))
        return _rows_to_events(rows)

    @override
    async def read_all(
        self,
        after: Checkpoint | None,
        *,
        limit: int,
        partition: Partition | None = None,
    ) -> list[RecordedEvent]:
        after = after or Checkpoint(0, 0)
        async with self.translate_errors(), self.pool.acquire() as connection:
            if partition is None or partition.count == 1:
                rows = await connection.fetch(READ_ALL_SQL, *_after(after), limit)
            else:
                rows = await connection.fetch(
                    READ_PARTITION_SQL,
                    *_after(after),
                    limit,
                    partition.count,
                    partition.index,
                )
        return _rows_to_events(rows)

    @override
    async def read_stored(
        self, after: Checkpoint | None, *, limit: int
    ) -> list[RawEventRow]:
        after = after or Checkpoint(0, 0)
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(READ_ALL_SQL, *_after(after), limit)
        return [
            RawEventRow(
                position=row[0],
                stream_id=row[1],
                version=row[2],
                event_id=row[4],
                type=row[5],
                schema_version=row[6],
                data=row[7],
                metadata=row[8],
                occurred_at=row[9],
                recorded_at=row[10],
                hash=row[12],
                checkpoint=Checkpoint.of(
                    epoch=row[13], transaction_id=row[11], position=row[0]
                ),
            )
            for row in rows
        ]

    @override
    async def read_streams(self, stream_ids: Sequence[UUID]) -> list[RecordedEvent]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(READ_STREAMS_SQL, list(stream_ids))
        return _rows_to_events(rows)

    @override
    async def head_checkpoint(self) -> Checkpoint | None:
        async with self.translate_errors(), self.pool.acquire() as connection:
            row = await connection.fetchrow(HEAD_CHECKPOINT_SQL)
        if row is None:
            return None
        return Checkpoint.of(epoch=row[0], transaction_id=row[1], position=row[2])

    @override
    async def horizon_mark(self) -> int:
        async with self.translate_errors(), self.pool.acquire() as connection:
            mark: int = await connection.fetchval(HORIZON_MARK_SQL)
        return mark

    @override
    async def horizon_reached(self, mark: int) -> bool:
        async with self.translate_errors(), self.pool.acquire() as connection:
            reached: bool = await connection.fetchval(HORIZON_REACHED_SQL, mark)
        return reached

    @override
    async def stream_heads(
        self, at: Checkpoint | None = None
    ) -> dict[UUID, tuple[int, bytes]]:
        at = at or Checkpoint.of(
            epoch=MAX_EPOCH, transaction_id=MAX_XID8, position=MAX_POSITION
        )
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(STREAM_HEADS_SQL, *_after(at))
        return {row[0]: (row[1], row[2]) for row in rows}

    @override
    async def status_events(
        self, *, position: int | None = None, time: datetime | None = None
    ) -> list[LastStatusChange]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(
                STATUS_EVENTS_SQL,
                MAX_POSITION if position is None else position,
                time or FAR_FUTURE,
            )
        return [LastStatusChange(*row) for row in rows]

    @override
    async def open_executions(self) -> list[LastStatusChange]:
        async with self.translate_errors(), self.pool.acquire() as connection:
            rows = await connection.fetch(OPEN_EXECUTIONS_SQL, MAX_POSITION, FAR_FUTURE)
        return [LastStatusChange(*row) for row in rows]

    @override
    async def backlog(
        self, after: Checkpoint, partition: Partition | None = None
    ) -> tuple[int, datetime | None]:
        whole = partition is None or partition.count == 1
        async with self.translate_errors(), self.pool.acquire() as connection:
            row = await connection.fetchrow(
                BACKLOG_SQL if whole else BACKLOG_PARTITION_SQL,
                *_after(after),
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
    async def checkpoint_at(self, position: int) -> Checkpoint:
        async with self.translate_errors(), self.pool.acquire() as connection:
            row = await connection.fetchrow(CHECKPOINT_AT_SQL, position)
        if row is None:
            raise errors.ValidationError(f"no event at position {position}")
        return Checkpoint.of(epoch=row[0], transaction_id=row[1], position=position)

    @override
    def insert(self, table: sa.Table) -> ConflictInsert:
        return postgresql.insert(table)

    @override
    async def exclude_appends(self, connection: AsyncConnection) -> None:
        # Conflicts with the ROW EXCLUSIVE lock every INSERT takes (and that
        # eventstore_append takes before it reads a head), and with itself.
        await connection.execute(sa.text(EXCLUDE_APPENDS_SQL))

    @override
    async def upsert_rows(
        self,
        connection: AsyncConnection,
        table: sa.Table,
        rows: Sequence[Mapping[str, Any]],
        *,
        guard: str,
    ) -> None:
        if not rows:
            return
        shape = (table.name, guard, tuple(table.columns.keys()))
        statement = self._bulk_upserts.get(shape)
        if statement is None:
            statement = self._bulk_upserts[shape] = BulkUpsert(table, guard=guard)
        driver = await driver_connection(connection)
        await driver.execute(statement.sql, *statement.arrays(rows))

    @override
    def clock(self) -> sa.ColumnElement[Any]:
        return sa.func.clock_timestamp()

    @override
    def at_or_before(
        self, table: sa.Table, checkpoint: Checkpoint
    ) -> sa.ColumnElement[bool]:
        return sa.tuple_(
            table.c.epoch, table.c.transaction_id, table.c.position
        ) <= sa.tuple_(
            sa.literal(checkpoint.epoch),
            sa.literal(checkpoint.xid, table.c.transaction_id.type),
            sa.literal(checkpoint.position),
        )

    @override
    async def percentiles(
        self,
        connection: AsyncConnection,
        table: sa.Table,
        *,
        group_by: str,
        columns: Sequence[str],
        fractions: Sequence[float],
    ) -> dict[Any, dict[str, list[float | None]]]:
        group = table.c[group_by]
        selected = [
            sa.func.percentile_cont(fraction)
            .within_group(table.c[name])
            .label(f"{name}_{n}")
            for name in columns
            for n, fraction in enumerate(fractions)
        ]
        rows = await connection.execute(sa.select(group, *selected).group_by(group))
        return {
            mapping[group_by]: {
                name: [
                    _maybe_float(mapping[f"{name}_{n}"]) for n in range(len(fractions))
                ]
                for name in columns
            }
            for mapping in rows.mappings()
        }

    @override
    def classify(self, exc: BaseException) -> errors.EventStoreError | None:
        from eventstore.backends import postgres_errors

        if not isinstance(exc, postgres_errors.DRIVER_ERRORS):
            return None  # a bug or a bad event: not the database's doing
        code = postgres_errors.sqlstate(exc)
        if code == IMMUTABLE_LOG_SQLSTATE:
            return errors.AppendOnlyViolation(
                stream_id=None, position=None, reason="execution_events is append-only"
            )
        if code in UNMIGRATED_SQLSTATES:
            return errors.SchemaNotMigrated(url=self.url, current=None, head="head")
        return postgres_errors.classify(exc, url=self.url)


async def _check_epoch(connection: asyncpg.Connection) -> None:
    """Start a new restore epoch if this server's transaction ids went back.

    Every new connection of the pool runs it before its first use, so no
    append or read of a restored database happens in the old epoch
    (migration 0006). A database not migrated that far has no epochs yet.
    """
    if await connection.fetchval(HAS_EPOCHS_SQL):
        await connection.fetchval(CHECK_EPOCH_SQL)


def append_refusal(
    stream_id: UUID, sqlstate: str | None, detail: str | None
) -> errors.EventStoreError | None:
    """The typed error for a rule of the append trigger (migrations 0006, 0008), if one.

    The trigger's SQLSTATE says which rule refused the row; its DETAIL holds
    the facts (a JSON object, or the stream id).
    """
    facts = parse_json(detail) if detail and detail.startswith("{") else {}
    if not isinstance(facts, dict):
        facts = {}
    match sqlstate:
        case "ZE002":
            return errors.InvalidTransition(
                execution_id=stream_id,
                status=str(facts.get("status")),
                event_type=str(facts.get("event_type")),
            )
        case "ZE003":
            return errors.ValidationError(
                f"stream {stream_id} is a system stream: only the store's archive "
                "and anchor paths write system streams"
            )
        case "ZE004":
            return errors.StreamArchived(stream_id=stream_id)
        case "ZE005":
            entity = str(facts.get("entity", "reference"))
            return errors.ReferenceNotFound(
                entity=entity, entity_id=_maybe_uuid(facts.get("id"))
            )
        case "ZE006":
            return errors.ValidationError(
                f"stream {stream_id}: versions must follow one another without gaps"
            )
        case "ZE007":
            return errors.ValidationError(
                "execution_events.position is drawn by the database, not chosen"
            )
        case "ZE008":
            return errors.ExecutionNotFound(execution_id=stream_id)
        case "ZE009":
            return stream_type_refused(
                stream_id, str(facts.get("stream_type")), str(facts.get("given"))
            )
    return None


def _maybe_uuid(value: object) -> Any:
    try:
        return UUID(str(value))
    except ValueError:
        return value


def _after(checkpoint: Checkpoint) -> tuple[int, int, int]:
    """A checkpoint as the (epoch, xid, position) parameters of the log's order."""
    return checkpoint.epoch, checkpoint.xid, checkpoint.position


def _event_columns(events: Sequence[NewEvent]) -> tuple[list[object], ...]:
    """The events as the array parameters both append statements take."""
    return (
        [event.event_id for event in events],
        [event.type for event in events],
        [event.schema_version for event in events],
        [event.data_json for event in events],
        [event.metadata_json for event in events],
        [format_occurred_at(event.occurred_at) for event in events],
    )


def _maybe_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _outcome(rows: Sequence[asyncpg.Record]) -> AppendDecision:
    first = rows[0]
    kind = first["outcome"]
    if kind == "version_conflict":
        return AppendDecision(kind="version_conflict", actual=first["version"])
    if kind == "id_conflict":
        return AppendDecision(
            kind="id_conflict", event_id=first["event_id"], reason=first["detail"]
        )
    return AppendDecision(
        kind=kind,
        versions=tuple(row["version"] for row in rows),
        positions=tuple(row["position"] for row in rows),
    )


async def _take_migration_lock(connection: AsyncConnection) -> None:
    """Wait for the migration lock, asking again between short transactions.

    Not `pg_advisory_lock`: a session blocked in it holds a snapshot, and a
    running migration's CREATE INDEX CONCURRENTLY waits for every older
    snapshot to end, so the two would deadlock (each waiting on the other).
    """
    while True:
        acquired = (await connection.execute(sa.text(MIGRATION_TRY_LOCK_SQL))).scalar()
        await connection.commit()  # a session lock outlives the transaction
        if acquired:
            return
        await asyncio.sleep(MIGRATION_LOCK_POLL * (0.5 + random.random()))  # noqa: S311 - jitter
