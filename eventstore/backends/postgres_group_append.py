"""Fast-path appends made at once, sent together: one INSERT and one commit (PostgreSQL).

A writer that knows its stream's head appends with one plain INSERT
(`postgres_append`). When many do so at once, each pays a round trip, a
statement and a commit (a WAL flush) of its own. Here the appends that
arrive while earlier ones are in flight wait for the next free sender and
go together, as one INSERT in one transaction (a group commit; ARCHITECTURE
§2). Nothing waits for a group to fill: an append alone is sent at once,
with the single-event statement it would have had anyway. A sender takes
what waits when it starts (the loop's next turn, when the writers of the
same turn have queued too) and again after each statement, on the one
connection it holds for at most GROUPS_PER_CONNECTION statements. With no
other group in flight it takes only half, and another sender the rest, so
that two statements alternate: one half of the writers works while the
other half's commit is made.

Each append keeps its own head check (its rows go in only if the row at
its head version still has the hash it chained from) and learns which of
its rows went in. An error of the statement (a unique key, a rule of the
guard trigger, a lost connection) fails the whole group: each append of
it then goes its own way, as if alone, by the append function, which
says what was wrong with it, or that its rows are in after all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    import asyncpg

    from eventstore.events.envelope import NewEvent

# At most this many statements in flight: with two cores shared with the
# server, more only queue; fewer leave one idle while the other commits.
SENDERS: Final = 4
# Rows per statement at most: bounds a group's parameters and its latency.
GROUP_ROWS: Final = 1000
# Groups a sender sends on one connection at most before it gives it back,
# so that the pool's other users (reads, the append function) wait at most
# this many groups for it when the senders hold all of it.
GROUPS_PER_CONNECTION: Final = 8

# The head check compares with a scalar subquery, one index probe per row:
# as an EXISTS the planner may turn it into a hash of the whole log, which
# looks cheap on a small log and then reads every row for each group.
GROUP_APPEND_SQL: Final = """
INSERT INTO execution_events (stream_id, version, stream_type, event_id, type,
    schema_version, data, metadata, occurred_at, hash)
SELECT e.stream_id, e.version, e.stream_type, e.event_id, e.type,
    e.schema_version, e.data::jsonb, e.metadata::jsonb, e.occurred_at::timestamptz,
    e.hash
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::uuid[], $5::text[], $6::int[],
    $7::text[], $8::text[], $9::text[], $10::bytea[], $11::int[], $12::bytea[])
    AS e(stream_id, version, stream_type, event_id, type, schema_version, data,
        metadata, occurred_at, hash, head_version, head_hash)
WHERE e.head_version = 0 OR e.head_hash = (
    SELECT p.hash FROM execution_events p
    WHERE p.stream_id = e.stream_id AND p.version = e.head_version)
RETURNING stream_id, version, position
"""

# One append alone: scalar parameters (cheaper to encode and to plan than
# arrays).
ONE_EVENT_SQL: Final = """
INSERT INTO execution_events (stream_id, version, stream_type, event_id, type,
    schema_version, data, metadata, occurred_at, hash)
SELECT $1, $3, $2, $4, $5, $6, $7::jsonb, $8::jsonb, $9, $10
WHERE $11::int = 0 OR EXISTS (
    SELECT FROM execution_events p
    WHERE p.stream_id = $1 AND p.version = $11 AND p.hash = $12)
RETURNING stream_id, version, position
"""

Positions = list[tuple[int, int]]
"""(version, position) of each row an append wrote, in version order."""


@dataclass(slots=True)
class HeadAppend:
    """One append to a stream whose head the writer knows, its hashes chained."""

    stream_id: UUID
    stream_type: str
    events: Sequence[NewEvent]
    versions: list[int]
    hashes: list[bytes]
    head: tuple[int, bytes]
    done: asyncio.Future[Positions | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupAppender:
    """Sends the head appends made at once together (see the module's doc)."""

    def __init__(
        self, pool: Callable[[], asyncpg.Pool], *, senders: int = SENDERS
    ) -> None:
        self._pool = pool
        self._most = senders
        self._waiting: deque[HeadAppend] = deque()
        self._senders: set[asyncio.Task[None]] = set()
        self._in_flight = 0  # groups taken and not yet answered

    async def append(self, append: HeadAppend) -> Positions | None:
        """Its rows' (version, position), or None: the append function must decide."""
        self._waiting.append(append)
        self._send_waiting()
        try:
            # A caller that stops waiting cancels `done`, which its sender
            # then leaves as it is.
            return await append.done
        except asyncio.CancelledError:
            # Not sent yet: it never will be. Sent: it may be in the log,
            # as for any append whose caller stopped waiting.
            with contextlib.suppress(ValueError):
                self._waiting.remove(append)
            raise

    async def aclose(self) -> None:
        """Wait for the groups in flight (the pool closes after them)."""
        while self._senders:
            await asyncio.wait(list(self._senders))

    def _send_waiting(self) -> None:
        while self._waiting and len(self._senders) < self._most:
            sender = asyncio.get_running_loop().create_task(self._send())
            self._senders.add(sender)
            sender.add_done_callback(self._sent)

    def _sent(self, sender: asyncio.Task[None]) -> None:
        self._senders.discard(sender)
        self._send_waiting()

    def _next_group(self) -> list[HeadAppend]:
        """The appends waiting longest, up to GROUP_ROWS rows (at least one append).

        With no other group taken, only the first half of them: the rest
        go in a second statement (another sender's) while this one is on
        its way, so the writers of one half work while the other half's
        commit is made (a pipeline of two), instead of all waiting for one.
        The group counts as taken until `_answered`.
        """
        group: list[HeadAppend] = []
        rows = 0
        most = len(self._waiting)
        if not self._in_flight and self._most > 1:
            most = -(-most // 2)
        while (
            self._waiting
            and len(group) < most
            and (not group or rows + len(self._waiting[0].events) <= GROUP_ROWS)
        ):
            append = self._waiting.popleft()
            if not append.done.done():  # else its caller stopped waiting: drop it
                group.append(append)
                rows += len(append.events)
        self._in_flight += bool(group)
        self._send_waiting()  # the rest, if any
        return group

    def _answered(
        self, group: list[HeadAppend], written: dict[tuple[UUID, int], int]
    ) -> None:
        """Tell each append of a taken group its rows' positions, or None if any is missing."""
        if group:
            self._in_flight -= 1
        for append in group:
            # asyncpg's UUIDs hash and compare as the standard library's.
            rows = [
                (version, written.get((append.stream_id, version)))
                for version in append.versions
            ]
            if not append.done.done():
                append.done.set_result(
                    None
                    if any(position is None for _, position in rows)
                    else cast("Positions", rows)
                )

    async def _send(self) -> None:
        """Send groups on one connection for as long as appends wait (up to a bound).

        A pool's acquire and release cost more CPU than building a group;
        a failed statement (or connection) ends the sender, and its
        successor takes a fresh connection.
        """
        group = self._next_group()
        if not group:
            return
        try:
            async with self._pool().acquire() as connection:
                sent = 0
                while group:
                    self._answered(group, await _insert(connection, group))
                    sent += 1
                    # At the bound, a successor (`_sent`) takes what waits,
                    # after the pool's other waiters.
                    group = self._next_group() if sent < GROUPS_PER_CONNECTION else []
        except Exception:  # the statement failed: each goes its own way
            self._answered(group, {})
        except BaseException:  # cancelled (the loop is closing): so are they
            for append in group:
                append.done.cancel()
            self._answered(group, {})
            raise


async def _insert(
    connection: asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
    group: list[HeadAppend],
) -> dict[tuple[UUID, int], int]:
    """Insert the group's rows; (stream, version) -> position of those written."""
    if len(group) == 1 and len(group[0].events) == 1:
        [append] = group
        [event] = append.events
        rows = await connection.fetch(
            ONE_EVENT_SQL,
            append.stream_id,
            append.stream_type,
            append.versions[0],
            event.event_id,
            event.type,
            event.schema_version,
            event.data_json,
            event.metadata_json,
            event.occurred_at,
            append.hashes[0],
            *append.head,
        )
    else:
        rows = await connection.fetch(GROUP_APPEND_SQL, *_columns(group))
    return {(row["stream_id"], row["version"]): row["position"] for row in rows}


def _columns(group: Sequence[HeadAppend]) -> tuple[list[object], ...]:
    """The group's rows as the twelve arrays of GROUP_APPEND_SQL, by stream id.

    Every statement inserts its keys in (stream id, version) order, so two
    groups that contend for a key wait one for the other, never in a cycle
    (a deadlock, which PostgreSQL takes a second to find).
    """
    rows = [
        (
            append.stream_id,
            version,
            append.stream_type,
            *_event_row(event),
            chained,
            *append.head,
        )
        for append in sorted(group, key=lambda append: append.stream_id)
        for event, version, chained in zip(
            append.events, append.versions, append.hashes, strict=True
        )
    ]
    return tuple(list(column) for column in zip(*rows, strict=True))


def event_columns(events: Sequence[NewEvent]) -> tuple[list[object], ...]:
    """The six arrays of the events, event id to time, that the append function takes."""
    columns: tuple[list[object], ...] = tuple([] for _ in range(6))
    for row in map(_event_row, events):
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _event_row(event: NewEvent) -> tuple[object, ...]:
    """An event's values as both append statements take them, event id to time."""
    return (
        event.event_id,
        event.type,
        event.schema_version,
        event.data_json,
        event.metadata_json,
        event.occurred_at_text,
    )
