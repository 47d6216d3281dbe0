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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar
from uuid import UUID

from eventstore import hashing
from eventstore.backends.base import AppendOutcome

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventstore.events.envelope import NewEvent

T = TypeVar("T")

HEAD_SQL: Final = (
    "SELECT version, hash FROM execution_events WHERE stream_id = ? "
    "ORDER BY version DESC LIMIT 1"
)
INSERT_SQL: Final = (
    "INSERT INTO execution_events (stream_id, version, stream_type, event_id, type, "
    "schema_version, data, metadata, occurred_at, recorded_at, hash) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def to_db_time(moment: datetime) -> str:
    """A UTC datetime as SQLAlchemy's SQLite DateTime stores it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


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
) -> AppendOutcome:
    """The whole append in one transaction that holds the database's write lock."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        outcome = _append_locked(
            connection, stream_id, events, stream_type, expected_version
        )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT" if outcome.kind == "appended" else "ROLLBACK")
    return outcome


def _append_locked(
    connection: sqlite3.Connection,
    stream_id: UUID,
    events: Sequence[NewEvent],
    stream_type: str,
    expected_version: int | None,
) -> AppendOutcome:
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
        return AppendOutcome(kind="version_conflict", actual=version)
    recorded_at = to_db_time(datetime.now(UTC))
    versions: list[int] = []
    positions: list[int] = []
    for event in events:
        version += 1
        previous = hashing.chain_hash(
            previous, hashing.canonical_for(stream_id, version, event)
        )
        cursor = connection.execute(
            INSERT_SQL,
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
                recorded_at,
                previous,
            ),
        )
        versions.append(version)
        positions.append(cursor.lastrowid or 0)
    return AppendOutcome(
        kind="appended", versions=tuple(versions), positions=tuple(positions)
    )


def _duplicate_outcome(
    stream_id: UUID, events: Sequence[NewEvent], recorded: list[Any]
) -> AppendOutcome:
    by_id = {row[0]: row for row in recorded}
    for event in events:
        row = by_id.get(event.event_id.hex)
        if row is None:
            return AppendOutcome(
                kind="id_conflict",
                event_id=event.event_id,
                reason="only some of the appended events were recorded before",
            )
        if row[1] != stream_id.hex:
            return AppendOutcome(
                kind="id_conflict",
                event_id=event.event_id,
                reason=f"it belongs to stream {UUID(hex=row[1])}",
            )
        if (row[2], row[3], row[4]) != (
            event.type,
            event.schema_version,
            event.data_json,
        ):
            return AppendOutcome(
                kind="id_conflict",
                event_id=event.event_id,
                reason="its content differs",
            )
    return AppendOutcome(
        kind="duplicate",
        versions=tuple(row[5] for row in recorded),
        positions=tuple(row[6] for row in recorded),
    )
