"""Wake-ups across processes: LISTEN/NOTIFY on PostgreSQL, always with a poll.

Two store objects on one database stand for two processes: each has its own
connection pools, so the reader hears the writer's appends only through the
database. The readers poll every 30 s here, so an event that arrives within
a few seconds was delivered by a wake-up, not by the poll (the tests that
need the poll say so and shorten it).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from eventstore import EventStore, ExecutionStatus, NewEvent, StoreSettings
from eventstore.backends.postgres import PostgresBackend
from eventstore.backends.postgres_listener import APPLICATION_NAME
from projections import ExecutionsView, Projector
from tests.conftest import ADMIN_URL
from tests.helpers import eventually, make_references, raw_pg

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from contextlib import AbstractAsyncContextManager

    from eventstore import RecordedEvent
    from projections import BatchReport

LONG_POLL = 30.0
PROMPTLY = 5.0  # well under LONG_POLL: only a wake-up delivers this fast
GENEROUS = 30.0  # for what waits on a reconnect's backoff


def open_store(
    url: str, *, poll_interval: float = LONG_POLL
) -> AbstractAsyncContextManager[EventStore]:
    return EventStore.open(url, settings=StoreSettings(poll_interval=poll_interval))


async def listener_pids(url: str) -> set[int]:
    """The server pids of the listener connections on this test's database."""
    connection = await raw_pg(url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity "
            "WHERE application_name LIKE $1 AND datname = current_database()",
            f"{APPLICATION_NAME} %",
        )
    finally:
        await connection.close()
    return {row["pid"] for row in rows}


async def one_listener_pid(url: str, *, other_than: int | None = None) -> int:
    """Wait until exactly one listener (not `other_than`) serves the database."""
    async with asyncio.timeout(GENEROUS):
        while True:
            pids = await listener_pids(url)
            if len(pids) == 1 and other_than not in pids:
                return pids.pop()
            await asyncio.sleep(0.05)


async def admin(sql: str, *args: object) -> object:
    connection = await asyncpg.connect(ADMIN_URL)
    try:
        return await connection.fetchval(sql, *args)
    finally:
        await connection.close()


class Follower:
    """A subscription to the whole log, running in a task, its events in a queue."""

    def __init__(self, store: EventStore) -> None:
        self.events: asyncio.Queue[RecordedEvent] = asyncio.Queue()
        self._store = store
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        async with self._store.subscribe() as events:
            async for event in events:
                self.events.put_nowait(event)

    async def take(self, count: int, *, within: float) -> list[RecordedEvent]:
        async with asyncio.timeout(within):
            return [await self.events.get() for _ in range(count)]

    async def stop(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def reader(pg_url: str) -> AsyncIterator[EventStore]:
    async with open_store(pg_url) as store:
        yield store


@pytest.fixture
async def writer(pg_url: str) -> AsyncIterator[EventStore]:
    async with open_store(pg_url) as store:
        yield store


def note(n: int) -> list[NewEvent]:
    return [NewEvent(type="Note", data={"n": n})]


@pytest.mark.postgres
async def test_a_subscriber_wakes_on_another_stores_append(
    reader: EventStore, writer: EventStore
) -> None:
    follower = Follower(reader)
    await eventually(lambda: reader.wakeups.listening, within=GENEROUS)
    before = reader.wakeups.generation
    stream = uuid.uuid4()
    await writer.append(stream, note(1), expected_version=0, stream_type="note")
    [event] = await follower.take(1, within=PROMPTLY)
    assert event.stream_id == stream
    assert event.data == {"n": 1}
    # The reader never appended: only a NOTIFY moves its generation. The
    # event itself may come first, read after the wake-up the listener gives
    # on connecting, so wait for the NOTIFY rather than expect it already.
    await eventually(lambda: reader.wakeups.generation > before, within=PROMPTLY)
    await follower.stop()


@pytest.mark.postgres
async def test_wait_wakes_on_another_stores_completion(
    reader: EventStore, writer: EventStore
) -> None:
    refs = await make_references(writer)
    execution_id = await writer.executions.create(
        message_id=refs.message.id, graph_id=refs.graph.id
    )
    await writer.executions.start(execution_id, worker_id="w1")
    waiting = asyncio.create_task(reader.executions.wait(execution_id, timeout=60))
    await eventually(lambda: reader.wakeups.listening, within=GENEROUS)
    before = reader.wakeups.generation
    await writer.executions.complete(execution_id, result={"ok": True})
    async with asyncio.timeout(PROMPTLY):
        state = await waiting
    assert state.status is ExecutionStatus.COMPLETED
    await eventually(lambda: reader.wakeups.generation > before, within=PROMPTLY)


@pytest.mark.postgres
async def test_the_listener_starts_lazily_and_closes_with_the_store(
    pg_url: str, writer: EventStore
) -> None:
    async with open_store(pg_url) as store:
        await store.append(uuid.uuid4(), note(1), stream_type="note")
        assert await listener_pids(pg_url) == set()  # appending needs no listener
        follower = Follower(store)
        await one_listener_pid(pg_url)
        await follower.take(1, within=PROMPTLY)
        await follower.stop()
    assert await listener_pids(pg_url) == set()


@pytest.mark.postgres
async def test_the_listener_reconnects_after_its_backend_is_terminated(
    pg_url: str, reader: EventStore, writer: EventStore
) -> None:
    follower = Follower(reader)
    first = await one_listener_pid(pg_url)
    stream = uuid.uuid4()
    await writer.append(stream, note(1), expected_version=0, stream_type="note")
    await follower.take(1, within=PROMPTLY)

    assert await admin("SELECT pg_terminate_backend($1)", first)
    second = await one_listener_pid(pg_url, other_than=first)
    assert second != first
    await eventually(lambda: reader.wakeups.listening, within=GENEROUS)

    before = reader.wakeups.generation
    await writer.append(stream, note(2), expected_version=1, stream_type="note")
    [event] = await follower.take(1, within=PROMPTLY)
    assert event.data == {"n": 2}
    await eventually(lambda: reader.wakeups.generation > before, within=PROMPTLY)
    await follower.stop()


@pytest.mark.postgres
async def test_appends_missed_while_disconnected_arrive_once_in_order(
    pg_url: str, reader: EventStore, writer: EventStore
) -> None:
    """Nobody listens while the database refuses new sessions: the reconnect delivers."""
    database = make_url(pg_url).database
    follower = Follower(reader)
    first = await one_listener_pid(pg_url)
    stream = uuid.uuid4()
    await writer.append(
        stream, note(0), expected_version=0, stream_type="note"
    )  # also warms its pool
    await follower.take(1, within=PROMPTLY)
    # Connections enough for the appends below and their NOTIFY, which may
    # overlap: no new session can open while the database refuses them.
    assert isinstance(writer.backend, PostgresBackend)
    pool = writer.backend.pool
    async with pool.acquire(), pool.acquire(), pool.acquire():
        pass

    await admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
    try:
        assert await admin("SELECT pg_terminate_backend($1)", first)
        await eventually(lambda: not reader.wakeups.listening, within=GENEROUS)
        for n in range(1, 6):  # their notifications reach no listener
            await writer.append(stream, note(n), expected_version=n, stream_type="note")
    finally:
        await admin(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')

    missed = await follower.take(5, within=GENEROUS)
    assert [e.data["n"] for e in missed] == [1, 2, 3, 4, 5]
    # Exactly once: the next event read is the next one appended.
    await writer.append(stream, note(6), expected_version=6, stream_type="note")
    [after] = await follower.take(1, within=GENEROUS)
    assert after.data == {"n": 6}
    assert follower.events.empty()
    await follower.stop()


@pytest.mark.postgres
async def test_without_notifications_the_poll_delivers_every_event_once(
    pg_url: str,
) -> None:
    """A writer that never notifies (another tool inserting rows) is still read."""
    async with open_store(pg_url, poll_interval=0.5) as reader:
        follower = Follower(reader)
        await eventually(lambda: reader.wakeups.listening, within=GENEROUS)
        before = reader.wakeups.generation
        stream = uuid.uuid4()
        connection = await raw_pg(pg_url)
        try:
            for n in range(6):
                await connection.execute(
                    "INSERT INTO execution_events (stream_id, version, stream_type, "
                    "event_id, type, schema_version, data, metadata, occurred_at, "
                    "hash) VALUES ($1, $2, 'note', gen_random_uuid(), 'Note', 1, "
                    "$3::jsonb, '{}', now(), '\\x00')",
                    stream,
                    n + 1,
                    f'{{"n": {n}}}',
                )
        finally:
            await connection.close()
        got = await follower.take(6, within=GENEROUS)
        assert [e.data["n"] for e in got] == list(range(6))
        assert reader.wakeups.generation == before  # no NOTIFY: the poll did it
        await follower.stop()


@pytest.mark.postgres
async def test_a_wake_up_behind_the_horizon_is_read_again_soon(
    pg_url: str, reader: EventStore, writer: EventStore
) -> None:
    """An older transaction in flight hides a notified append; its end sends nothing.

    The subscriber re-reads at short, growing intervals after a wake-up whose
    read showed nothing, instead of waiting for the 30 s poll. The held
    transaction stalls gap-safe readers server-wide, so it stays short.
    """
    follower = Follower(reader)
    await eventually(lambda: reader.wakeups.listening, within=GENEROUS)
    blocker = await raw_pg(pg_url)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.fetchval("SELECT pg_current_xact_id()")  # holds the horizon
        before = reader.wakeups.generation
        await writer.append(
            uuid.uuid4(), note(1), expected_version=0, stream_type="note"
        )
        await eventually(lambda: reader.wakeups.generation > before, within=PROMPTLY)
        await transaction.rollback()
    finally:
        await blocker.close()
    [event] = await follower.take(1, within=PROMPTLY)
    assert event.data == {"n": 1}
    await follower.stop()


@pytest.mark.postgres
async def test_the_projector_daemon_wakes_on_another_stores_append(
    reader: EventStore, writer: EventStore
) -> None:
    refs = await make_references(writer)
    projector = Projector(reader, poll_interval=LONG_POLL)
    stop = asyncio.Event()
    daemon = asyncio.create_task(projector.run(stop))
    try:
        await eventually(lambda: reader.wakeups.listening, within=GENEROUS)
        execution_id = await writer.executions.create(
            message_id=refs.message.id, graph_id=refs.graph.id
        )
        view = ExecutionsView(reader)
        async with asyncio.timeout(PROMPTLY):
            while True:
                try:
                    row = await view.get(execution_id)
                except LookupError:
                    await asyncio.sleep(0.02)
                else:
                    break
        assert row.status is ExecutionStatus.PENDING
    finally:
        stop.set()
        async with asyncio.timeout(GENEROUS):
            await daemon


class CountingProjector(Projector):
    """A projector that counts the batches it ran."""

    batches = 0

    async def run_once(self) -> BatchReport:
        report = await super().run_once()
        self.batches += 1
        return report


@pytest.mark.postgres
async def test_the_projector_daemon_looks_again_soon_behind_a_held_horizon(
    pg_url: str, reader: EventStore, writer: EventStore
) -> None:
    """A wake-up whose read finds nothing (an older transaction holds the read
    horizon) is followed by a quick re-read, not by a whole poll interval."""
    refs = await make_references(writer)
    projector = CountingProjector(reader, poll_interval=LONG_POLL)
    stop = asyncio.Event()
    daemon = asyncio.create_task(projector.run(stop))
    blocker = await raw_pg(pg_url)
    try:
        await eventually(lambda: reader.wakeups.listening, within=GENEROUS)
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.fetchval("SELECT pg_current_xact_id()")
        woken_at = reader.wakeups.generation
        execution_id = await writer.executions.create(
            message_id=refs.message.id, graph_id=refs.graph.id
        )
        await eventually(lambda: reader.wakeups.generation > woken_at, within=PROMPTLY)
        ran = projector.batches
        # The woken read ran and found nothing behind the blocker.
        await eventually(lambda: projector.batches > ran, within=PROMPTLY)
        await transaction.rollback()
        view = ExecutionsView(reader)

        async def projected() -> bool:
            try:
                await view.get(execution_id)
            except LookupError:
                return False
            return True

        await eventually(projected, "projected", within=PROMPTLY)
    finally:
        await blocker.close()
        stop.set()
        async with asyncio.timeout(GENEROUS):
            await daemon


@pytest.mark.sqlite
async def test_sqlite_subscribe_and_wait_work_by_signal_and_poll(
    sqlite_url: str,
) -> None:
    async with (
        open_store(sqlite_url, poll_interval=0.05) as store,
        open_store(sqlite_url, poll_interval=0.05) as other,
    ):
        refs = await make_references(store)
        follower = Follower(store)
        await store.append(
            uuid.uuid4(), note(1), stream_type="note"
        )  # in process: the signal
        await other.append(
            uuid.uuid4(), note(2), stream_type="note"
        )  # another store: the poll
        got = await follower.take(2, within=GENEROUS)
        assert [e.data["n"] for e in got] == [1, 2]
        assert not store.wakeups.listening

        execution_id = await store.executions.create(
            message_id=refs.message.id, graph_id=refs.graph.id
        )
        waiting = asyncio.create_task(store.executions.wait(execution_id, timeout=60))
        await other.executions.cancel(execution_id, reason="test")
        async with asyncio.timeout(GENEROUS):
            state = await waiting
        assert state.status is ExecutionStatus.CANCELLED
        await follower.stop()
