"""PostgreSQL's append engine: one round trip per append, hashes chained, NOTIFY coalesced.

The fast path is a plain INSERT for a writer that knows the stream's head,
sent in one statement with the others made at once (`postgres_group_append`);
otherwise the `eventstore_append` function (migrations 0001, 0004) checks
idempotency and the expected version, chains the hashes and inserts, in the
implicit transaction of one statement (ARCHITECTURE §2). The log's guard
trigger checks every row either way (migration 0006).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Final

import asyncpg

from eventstore.backends.postgres_group_append import (
    GroupAppender,
    HeadAppend,
    event_columns,
)
from eventstore.backends.postgres_namespace import APPENDS_CHANNEL_SQL
from eventstore.backends.postgres_refusals import append_refusal
from eventstore.backends.rows import AppendDecision
from eventstore.cache import BoundedCache
from eventstore.chains import canonical_for
from eventstore.hashing import GENESIS_HASH, chain_hash

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from eventstore.events.envelope import NewEvent

logger: Final = logging.getLogger(__name__)
APPEND_RACE_RETRIES: Final = 8

NOTIFY_COALESCE: Final = 0.005  # seconds: at most ~200 NOTIFY/s per process

ANNOUNCE_ON_CLOSE: Final = 2.0  # seconds a closing store waits to send its NOTIFY

NOTIFY_SQL: Final = f"SELECT pg_notify({APPENDS_CHANNEL_SQL}, '')"

APPEND_SQL: Final = (
    "SELECT outcome, version, position, event_id, detail, hash "
    "FROM eventstore_append($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)

HEAD_CACHE_SIZE: Final = 50_000

# The archive guard row, held by a system-stream append's transaction: only
# the archivist may write it (docs/ROLES.md), so only the store's own paths
# write system streams (migration 0006).
OPEN_GUARD_SQL: Final = (
    "INSERT INTO execution_events_archive_guard (id, reason) "
    "VALUES (1, 'system stream append')"
)

CLOSE_GUARD_SQL: Final = "DELETE FROM execution_events_archive_guard"

HEAD_VERSION_SQL: Final = (
    "SELECT coalesce(max(version), 0) FROM execution_events WHERE stream_id = $1"
)


class PostgresAppender:
    """The append engine: a memory of stream heads, the fast path, the function path.

    A writer that knows a stream's head (its version and hash) appends with
    one plain INSERT whose hashes it chained itself (the fast path); any
    other append calls `eventstore_append`, which decides in the server. After
    commits it NOTIFYs other processes, coalesced.
    """

    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool
        self._announcer: asyncio.Task[None] | None = None
        self._announce_pending = False
        # stream -> (version, hash) of a head this process wrote or read.
        self._heads: BoundedCache[UUID, tuple[int, bytes]] = BoundedCache(
            HEAD_CACHE_SIZE
        )
        self._groups = GroupAppender(pool)

    @property
    def pool(self) -> asyncpg.Pool:
        """The backend's asyncpg pool."""
        return self._pool()

    async def append(
        self,
        stream_id: UUID,
        events: Sequence[NewEvent],
        *,
        stream_type: str,
        expected_version: int | None,
        guarded: bool,
    ) -> AppendDecision:
        """Append, or say why not; a rule of the append trigger raises its typed error."""
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

    def remember_head(self, stream_id: UUID, version: int, chain_hash: bytes) -> None:
        """A head read from the log: the next append to the stream may take the fast path."""
        self._heads.put(stream_id, (version, chain_hash))

    def forget_streams(self, stream_ids: Sequence[UUID]) -> None:
        """Forget the heads of streams the archive removed."""
        for stream_id in stream_ids:
            self._heads.discard(stream_id)

    async def aclose(self) -> None:
        """Finish the appends in flight, then send their NOTIFY before the pool closes (briefly).

        Other processes' readers would otherwise wait for their poll.
        """
        await self._groups.aclose()
        if self._announcer is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._announcer, ANNOUNCE_ON_CLOSE)
            self._announcer = None

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
        """The fast path, sent with the others made at once; None when the function path must decide."""
        version, previous = head
        versions, hashes = [], []
        for event in events:
            version += 1
            previous = chain_hash(previous, canonical_for(stream_id, version, event))
            versions.append(version)
            hashes.append(previous)
        written = await self._groups.append(
            HeadAppend(stream_id, stream_type, events, versions, hashes, head)
        )
        if written is None:
            return None  # a concurrent writer, a re-used event id, a moved head
        self._heads.put(stream_id, (version, previous))
        return AppendDecision(
            kind="appended",
            versions=tuple(v for v, _ in written),
            positions=tuple(p for _, p in written),
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
            *event_columns(events),
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


async def append_by_function_on(
    connection: asyncpg.Connection,
    stream_id: UUID,
    events: Sequence[NewEvent],
    stream_type: str,
    expected_version: int | None,
) -> AppendDecision:
    """One call of the append function on `connection`, in its transaction."""
    rows = await connection.fetch(
        APPEND_SQL, stream_id, stream_type, expected_version, *event_columns(events)
    )
    return _outcome(rows)


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
