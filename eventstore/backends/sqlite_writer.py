"""SQLite's append path: one stdlib connection on one thread, one hop per append.

aiosqlite hands every statement to its thread and back; an append is five
or more statements. Here the whole append (BEGIN IMMEDIATE, idempotency
check, head, inserts, COMMIT) runs as one function on the writer's thread,
so the event loop waits once per append. The backend's asyncio lock already
lets only one coroutine of the process write at a time.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar
from uuid import UUID

from eventstore import chains, errors, hashing
from eventstore.backends.driver_errors import stream_type_refused
from eventstore.backends.rows import AppendDecision
from eventstore.status import RESULTING_STATUS, ExecutionStatus, is_allowed
from eventstore.times import utc_text

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from datetime import datetime

    from eventstore.events.envelope import NewEvent

T = TypeVar("T")

HEAD_SQL: Final = (
    "SELECT version, hash FROM execution_events WHERE stream_id = ? "
    "ORDER BY version DESC LIMIT 1"
)
# One INSERT per append: SQLite keeps 'now' fixed within a statement, so
# every event of the append gets the one recorded_at that the append trigger
# accepts (migration 0006). A statement takes at most CHUNK rows (SQLite's
# variable limit); only a larger append spans more than one moment.
INSERT_SQL: Final = (
    "INSERT INTO execution_events (stream_id, version, stream_type, event_id, type, "
    "schema_version, data, metadata, occurred_at, recorded_at, hash) VALUES "
)
INSERT_ROW: Final = (
    "(?, ?, ?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now'), ?)"
)
INSERT_RETURNING: Final = " RETURNING version, position"
CHUNK: Final = 3000
OPEN_GUARD_SQL: Final = (
    "INSERT INTO execution_events_archive_guard (id, reason) "
    "VALUES (1, 'system stream append')"
)
CLOSE_GUARD_SQL: Final = "DELETE FROM execution_events_archive_guard"
# The append trigger's messages (RAISE takes only a constant text).
REFUSAL_PREFIX: Final = "eventstore: "
STREAM_TYPE_SQL: Final = (
    "SELECT stream_type FROM execution_events WHERE stream_id = ? "
    "ORDER BY version DESC LIMIT 1"
)
TOMBSTONE_SQL: Final = (
    "SELECT 1 FROM archived_streams WHERE stream_id = ?1 "
    "AND NOT EXISTS (SELECT 1 FROM execution_events WHERE stream_id = ?1)"
)
LAST_STATUS_SQL: Final = (
    "SELECT type FROM execution_events WHERE stream_id = ? AND type IN "
    "('ExecutionCreated', 'ExecutionStarted', 'ExecutionCompleted', "
    "'ExecutionFailed', 'ExecutionCancelled') ORDER BY version DESC LIMIT 1"
)


def to_db_time(moment: datetime) -> str:
    """A UTC datetime as SQLAlchemy's SQLite DateTime stores it."""
    return utc_text(moment, sep=" ")


def configure(connection: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """The pragmas every connection of the store runs with."""
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    connection.execute("PRAGMA foreign_keys=ON")


class Writer:
    """A sqlite3 connection that lives on, and is only used from, its own thread."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="eventstore-sqlite"
        )
        self._connection: sqlite3.Connection | None = None

    async def run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run `function(connection)` on the writer's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, function)

    def _call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            # isolation_level=None: BEGIN and COMMIT are ours.
            self._connection = sqlite3.connect(
                self._path, isolation_level=None, timeout=self._busy_timeout_ms / 1000
            )
            configure(self._connection, self._busy_timeout_ms)
        return function(self._connection)

    async def aclose(self) -> None:
        """Close the connection and stop the thread."""

        def close(connection: sqlite3.Connection) -> None:
            connection.close()

        if self._connection is not None:
            await self.run(close)
            self._connection = None
        self._executor.shutdown(wait=True)


def append(
    connection: sqlite3.Connection,
    stream_id: UUID,
    events: Sequence[NewEvent],
    stream_type: str,
    expected_version: int | None,
    *,
    guarded: bool = False,
) -> AppendDecision:
    """The whole append in one transaction that holds the database's write lock.

    A `guarded` append holds the archive guard row while it writes, as
    system streams need (migration 0006).
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        if guarded:
            connection.execute(OPEN_GUARD_SQL)
        outcome = append_locked(
            connection, stream_id, events, stream_type, expected_version
        )
        if guarded:
            connection.execute(CLOSE_GUARD_SQL)
    except sqlite3.IntegrityError as exc:
        # Explained inside the transaction, so the facts are the ones the
        # trigger saw.
        refusal = _refusal(connection, stream_id, events, stream_type, str(exc))
        connection.execute("ROLLBACK")
        if refusal is None:
            raise
        raise refusal from exc
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT" if outcome.kind == "appended" else "ROLLBACK")
    return outcome


class Statements(Protocol):
    """What the append asks of a connection: sqlite3's `execute` shortcut."""

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        """Run one statement; the result has `fetchone` and `fetchall`."""
        ...


def append_locked(
    connection: Statements,
    stream_id: UUID,
    events: Sequence[NewEvent],
    stream_type: str,
    expected_version: int | None,
) -> AppendDecision:
    """The append's decision and inserts, in the transaction `connection` holds.

    The writer calls it inside its own transaction; the archive inside its
    (on a SQLAlchemy connection, `SqliteLogStorage.append_in`).
    """
    ids = [event.event_id.hex for event in events]
    marks = ", ".join("?" * len(ids))
    recorded = connection.execute(
        "SELECT event_id, stream_id, type, schema_version, data, version, position "  # noqa: S608 - only placeholders
        f"FROM execution_events WHERE event_id IN ({marks}) ORDER BY version",
        ids,
    ).fetchall()
    if recorded:
        return _duplicate_outcome(stream_id, events, recorded)
    head = connection.execute(HEAD_SQL, (stream_id.hex,)).fetchone()
    version, previous = (head[0], head[1]) if head else (0, hashing.GENESIS_HASH)
    if expected_version is not None and expected_version != version:
        return AppendDecision(kind="version_conflict", actual=version)
    rows: list[tuple[object, ...]] = []
    for event in events:
        version += 1
        previous = hashing.chain_hash(
            previous, chains.canonical_for(stream_id, version, event)
        )
        rows.append(
            (
                stream_id.hex,
                version,
                stream_type,
                event.event_id.hex,
                event.type,
                event.schema_version,
                event.data_json,
                event.metadata_json,
                to_db_time(event.occurred_at),
                previous,
            )
        )
    written: list[tuple[int, int]] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        sql = INSERT_SQL + ", ".join([INSERT_ROW] * len(chunk)) + INSERT_RETURNING
        parameters = [value for row in chunk for value in row]
        written.extend(connection.execute(sql, parameters).fetchall())
    written.sort()
    return AppendDecision(
        kind="appended",
        versions=tuple(version for version, _ in written),
        positions=tuple(position for _, position in written),
    )


def _refusal(
    connection: sqlite3.Connection,
    stream_id: UUID,
    events: Sequence[NewEvent],
    stream_type: str,
    message: str,
) -> errors.EventStoreError | None:
    """The typed error for a rule of the append triggers (migrations 0006, 0008), if one."""
    if not message.startswith(REFUSAL_PREFIX):
        return None
    rule = message.removeprefix(REFUSAL_PREFIX)
    if events and connection.execute(TOMBSTONE_SQL, (stream_id.hex,)).fetchone():
        # A new stream under an archived id: whichever of its rules refused
        # it, the tombstone is the reason (as on PostgreSQL).
        return errors.StreamArchived(stream_id=stream_id)
    if rule == "invalid transition":
        row = connection.execute(LAST_STATUS_SQL, (stream_id.hex,)).fetchone()
        status = None if row is None else RESULTING_STATUS[row[0]]
        for event in events:
            if status is None:
                if event.type != "ExecutionCreated":
                    return errors.ExecutionNotFound(execution_id=stream_id)
                status = ExecutionStatus.PENDING
                continue
            if not is_allowed(status, event.type):
                return errors.InvalidTransition(
                    execution_id=stream_id, status=status.value, event_type=event.type
                )
            status = RESULTING_STATUS.get(event.type) or status
        return errors.InvalidTransition(
            execution_id=stream_id, status="unknown", event_type=events[0].type
        )
    if rule == "reference not found":
        for event in events:
            if event.type == "ExecutionCreated":
                missing = _missing_reference(connection, event.data)
                if missing is not None:
                    return missing
    if rule == "archived stream":
        return errors.StreamArchived(stream_id=stream_id)
    if rule == "stream type":
        row = connection.execute(STREAM_TYPE_SQL, (stream_id.hex,)).fetchone()
        held = "unknown" if row is None else str(row[0])
        return stream_type_refused(stream_id, held, stream_type)
    if rule == "system stream":
        return errors.ValidationError(
            f"stream {stream_id} is a system stream: only the store's archive "
            "and anchor paths write system streams"
        )
    return errors.ValidationError(f"the log refused the append: {rule}")


def _missing_reference(
    connection: sqlite3.Connection, data: Mapping[str, object]
) -> errors.ReferenceNotFound | None:
    """The message (of the thread) or graph an ExecutionCreated names that is missing."""
    checks = (
        (
            "message",
            "message_id",
            "SELECT 1 FROM messages WHERE id = ? AND thread_id = ?",
            ("message_id", "thread_id"),
        ),
        ("graph", "graph_id", "SELECT 1 FROM graphs WHERE id = ?", ("graph_id",)),
    )
    for entity, key, sql, keys in checks:
        try:
            ids = [UUID(str(data.get(name))) for name in keys]
        except ValueError:
            return errors.ReferenceNotFound(entity=entity, entity_id=data.get(key))  # type: ignore[arg-type]
        if connection.execute(sql, [value.hex for value in ids]).fetchone() is None:
            return errors.ReferenceNotFound(entity=entity, entity_id=ids[0])
    return None


def _duplicate_outcome(
    stream_id: UUID, events: Sequence[NewEvent], recorded: list[Any]
) -> AppendDecision:
    by_id = {row[0]: row for row in recorded}
    for event in events:
        row = by_id.get(event.event_id.hex)
        if row is None:
            return AppendDecision(
                kind="id_conflict",
                event_id=event.event_id,
                reason="only some of the appended events were recorded before",
            )
        if row[1] != stream_id.hex:
            return AppendDecision(
                kind="id_conflict",
                event_id=event.event_id,
                reason=f"it belongs to stream {UUID(hex=row[1])}",
            )
        if (row[2], row[3], row[4]) != (
            event.type,
            event.schema_version,
            event.data_json,
        ):
            return AppendDecision(
                kind="id_conflict",
                event_id=event.event_id,
                reason="its content differs",
            )
    return AppendDecision(
        kind="duplicate",
        versions=tuple(row[5] for row in recorded),
        positions=tuple(row[6] for row in recorded),
    )
