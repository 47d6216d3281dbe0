"""Appends made at once go in one statement and one commit, each keeping its own outcome (PostgreSQL).

`eventstore/backends/postgres_group_append.py` sends the fast-path appends
that arrive while others are in flight together. These tests run real
concurrent writers and check that grouping happens, that each append still
gets exactly its own result or typed error, and that a group whose
statement fails leaves nothing of it behind for the appends to redo alone.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import asyncpg
import pytest
import sqlalchemy as sa

from eventstore import (
    ConcurrencyError,
    EventStore,
    ExecutionStatus,
    InvalidTransition,
    NewEvent,
    StoreSettings,
)
from eventstore.audit.integrity import verify_log
from eventstore.backends import postgres_group_append
from eventstore.backends.postgres import PostgresBackend
from eventstore.backends.postgres_database import keep_session
from eventstore.backends.postgres_group_append import (
    GROUP_APPEND_SQL,
    GROUP_ROWS,
    GROUPS_PER_CONNECTION,
    GroupAppender,
    HeadAppend,
)
from eventstore.chains import canonical_for
from eventstore.hashing import GENESIS_HASH, chain_hash
from eventstore.schema import execution_events
from tests.helpers import (
    References,
    execution_in,
    load_made_up_log,
    make_references,
    raw_pg,
)

if TYPE_CHECKING:
    from eventstore.backends.postgres_group_append import Positions

pytestmark = pytest.mark.postgres

WITHIN = 120  # seconds: a deadline, never an expected duration


def _first(stream_id: uuid.UUID, event: NewEvent, stream_type: str) -> HeadAppend:
    """The append of a stream's first event."""
    chained = chain_hash(GENESIS_HASH, canonical_for(stream_id, 1, event))
    return HeadAppend(
        stream_id, stream_type, [event], [1], [chained], (0, GENESIS_HASH)
    )


def _one_sender(store: EventStore) -> GroupAppender:
    """A group appender on the store's pool that sends one statement at a time."""
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    return GroupAppender(lambda: backend.pool, senders=1)


async def _in_flight(
    groups: GroupAppender, append: HeadAppend
) -> asyncio.Task[Positions | None]:
    """Start `append` and return once a sender has taken it: appends made now queue."""
    task = asyncio.create_task(groups.append(append))
    async with asyncio.timeout(WITHIN):
        # Nothing to wait on but the loop's next turns, where the sender starts.
        while groups._waiting or not groups._senders:  # noqa: ASYNC110
            await asyncio.sleep(0)
    return task


async def _transactions_of(
    store: EventStore, streams: list[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """The transaction that wrote each stream (of one event each here), by stream."""
    async with store.backend.connect_read() as connection:
        rows = await connection.execute(
            sa.select(
                execution_events.c.stream_id, execution_events.c.transaction_id
            ).where(execution_events.c.stream_id.in_(streams))
        )
        return {row.stream_id: row.transaction_id for row in rows}


async def _rows_of(store: EventStore, streams: list[uuid.UUID]) -> int:
    async with store.backend.connect_read() as connection:
        count = await connection.scalar(
            sa.select(sa.func.count())
            .select_from(execution_events)
            .where(execution_events.c.stream_id.in_(streams))
        )
    return int(count or 0)


async def test_appends_queued_behind_one_in_flight_go_in_one_transaction(
    pg_store: EventStore,
) -> None:
    groups = _one_sender(pg_store)
    streams = [uuid.uuid4() for _ in range(5)]
    appends = [
        _first(stream, NewEvent(type="Noted", data={"n": n}), "note")
        for n, stream in enumerate(streams)
    ]
    # The first is sent alone; the other four wait for the one sender and
    # go together.
    first = await _in_flight(groups, appends[0])
    written = [
        await first,
        *await asyncio.gather(*(groups.append(a) for a in appends[1:])),
    ]
    await groups.aclose()
    assert all(rows is not None and [v for v, _ in rows] == [1] for rows in written)
    by_stream = await _transactions_of(pg_store, streams)
    assert len(by_stream) == 5
    assert by_stream[streams[0]] not in {by_stream[s] for s in streams[1:]}
    assert len({by_stream[s] for s in streams[1:]}) == 1
    positions = [rows[0][1] for rows in written if rows is not None]
    assert len(set(positions)) == 5


async def test_appends_made_together_go_in_two_statements_one_behind_the_other(
    pg_store: EventStore,
) -> None:
    # Nothing in flight: the first half is sent, and the second goes in its
    # own statement while the first is on its way (a pipeline of two).
    backend = pg_store.backend
    assert isinstance(backend, PostgresBackend)
    groups = GroupAppender(lambda: backend.pool)
    streams = [uuid.uuid4() for _ in range(10)]
    written = await asyncio.gather(
        *(
            groups.append(_first(stream, NewEvent(type="Noted", data={}), "note"))
            for stream in streams
        )
    )
    await groups.aclose()
    assert all(rows is not None for rows in written)
    transactions = await _transactions_of(pg_store, streams)
    assert sorted(Counter(transactions.values()).values()) == [5, 5]


@pytest.mark.parametrize("rows", [30, GROUP_ROWS])
async def test_a_group_checks_each_head_by_one_index_probe_never_a_scan(
    pg_url: str, rows: int
) -> None:
    # On a small log, checking many heads at once by hashing the whole log
    # looks cheap to the planner, and grows with the log: each group would
    # read every row (the head check's EXISTS form did, from 30 rows on).
    connection = await raw_pg(pg_url)
    try:
        await load_made_up_log(connection, 400, ["Noted"] * 4)
        await connection.execute("ANALYZE execution_events")
        ids = [uuid.uuid4() for _ in range(rows)]
        columns = [
            ids, [5] * rows, ["plan"] * rows, [uuid.uuid4() for _ in ids],
            ["Noted"] * rows, [1] * rows, ["{}"] * rows, ["{}"] * rows,
            ["2026-12-05T00:00:00Z"] * rows, [b"h"] * rows, [4] * rows,
            [b"h"] * rows,
        ]  # fmt: skip
        plan = "\n".join(
            row[0]
            for row in await connection.fetch(f"EXPLAIN {GROUP_APPEND_SQL}", *columns)
        )
    finally:
        await connection.close()
    assert "Index Scan using uq_execution_events_stream_id_version" in plan, plan
    assert "Seq Scan" not in plan, plan
    assert "hashed" not in plan, plan


async def test_a_group_whose_statement_fails_writes_nothing_and_each_goes_alone(
    pg_store: EventStore,
) -> None:
    groups = _one_sender(pg_store)
    streams = [uuid.uuid4() for _ in range(4)]
    appends = [
        _first(streams[0], NewEvent(type="Noted", data={}), "note"),
        _first(streams[1], NewEvent(type="Noted", data={}), "note"),
        # The guard refuses an execution stream that does not start
        # with ExecutionCreated: the whole statement fails.
        _first(streams[2], NewEvent(type="Noted", data={}), "execution"),
        _first(streams[3], NewEvent(type="Noted", data={}), "note"),
    ]
    first = await _in_flight(groups, appends[0])
    written: list[Positions | None] = [
        await first,
        *await asyncio.gather(*(groups.append(a) for a in appends[1:])),
    ]
    await groups.aclose()
    assert written[0] is not None  # alone, before the others
    assert written[1:] == [None, None, None]
    assert await _rows_of(pg_store, streams[1:]) == 0
    # Through the pg_store the same appends each get their own outcome.
    outcomes = await asyncio.gather(
        *(
            pg_store.append(s, [NewEvent(type="Noted", data={})], expected_version=0,
                         stream_type=t)
            for s, t in zip(streams[1:], ("note", "execution", "note"), strict=True)
        ),
        return_exceptions=True,
    )  # fmt: skip
    assert [type(o).__name__ for o in outcomes] == [
        "AppendResult",
        "ExecutionNotFound",
        "AppendResult",
    ]


async def test_many_writers_each_get_their_own_outcome_and_the_chains_hold(
    pg_url: str,
) -> None:
    async with EventStore.open(pg_url, settings=StoreSettings(pool_size=16)) as store:
        refs: References = await make_references(store)
        rng = random.Random(11)
        running = [
            await execution_in(store, refs, ExecutionStatus.RUNNING) for _ in range(40)
        ]
        pending = [
            await execution_in(store, refs, ExecutionStatus.PENDING) for _ in range(20)
        ]
        executions = store.executions
        expected: dict[str, int] = {"ok": 0, "refused": 0, "conflict": 0}
        outcomes: dict[str, int] = {"ok": 0, "refused": 0, "conflict": 0}

        async def progress(execution_id: uuid.UUID) -> None:
            for step in range(5):
                await executions.progress(
                    execution_id, step=str(step), metrics={"t": 1}
                )
                outcomes["ok"] += 1

        async def bad_complete(execution_id: uuid.UUID) -> None:
            # Pending: completing it is not allowed (the guard refuses it
            # inside whatever group it lands in).
            try:
                await executions.complete(execution_id, result=None)
            except InvalidTransition:
                outcomes["refused"] += 1

        async def stale(stream_id: uuid.UUID) -> None:
            try:
                await store.append(
                    stream_id,
                    [NewEvent(type="Noted", data={})],
                    expected_version=0,
                    stream_type="note",
                )
                outcomes["ok"] += 1
            except ConcurrencyError:
                outcomes["conflict"] += 1

        tasks = []
        for execution_id in running:
            tasks.append(progress(execution_id))
            expected["ok"] += 5
        for execution_id in pending:
            tasks.append(bad_complete(execution_id))
            expected["refused"] += 1
        contested = [uuid.uuid4() for _ in range(10)]
        for stream_id in contested:
            # Two writers at version 0 of one stream: one wins.
            tasks += [stale(stream_id), stale(stream_id)]
            expected["ok"] += 1
            expected["conflict"] += 1
        rng.shuffle(tasks)
        async with asyncio.timeout(WITHIN):
            await asyncio.gather(*tasks)
        assert outcomes == expected
        for execution_id in running:
            state = await executions.get(execution_id)
            assert state.steps_completed == 5
            assert state.metrics == {"t": 5}
        for execution_id in pending:
            assert (
                await executions.get(execution_id)
            ).status is ExecutionStatus.PENDING
        assert await _rows_of(store, contested) == len(contested)
        report = await verify_log(store.backend)
        assert report.ok, report
        # Grouping happened: some transaction holds events of several streams.
        async with store.backend.connect_read() as connection:
            shared = await connection.scalar(
                sa.text(
                    "SELECT count(*) FROM (SELECT transaction_id FROM execution_events "
                    "GROUP BY transaction_id HAVING count(DISTINCT stream_id) > 1) t"
                )
            )
        assert int(shared or 0) > 0


async def test_a_sender_gives_its_connection_back_after_a_bounded_number_of_groups(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One append per group and a pool of one connection: the sender could
    # send everything waiting without ever letting anyone else use the pool.
    monkeypatch.setattr(postgres_group_append, "GROUP_ROWS", 1)
    pool = await asyncpg.create_pool(
        pg_url.replace("postgresql+asyncpg://", "postgresql://"),
        min_size=1,
        max_size=1,
        reset=keep_session,
    )
    try:
        groups = GroupAppender(lambda: pool, senders=1)
        appends = [
            _first(uuid.uuid4(), NewEvent(type="Noted", data={}), "note")
            for _ in range(3 * GROUPS_PER_CONNECTION)
        ]
        first = await _in_flight(groups, appends[0])
        rest = [asyncio.create_task(groups.append(a)) for a in appends[1:]]
        async with asyncio.timeout(WITHIN), pool.acquire():
            settled = sum(append.done.done() for append in appends)
        written = [await first, *await asyncio.gather(*rest)]
        await groups.aclose()
    finally:
        await pool.close()
    # The reader queued behind the first group got the connection after
    # the sender's bound, not after everything waiting.
    assert settled == GROUPS_PER_CONNECTION
    assert all(rows is not None for rows in written)


async def test_an_append_whose_caller_stops_waiting_before_it_is_sent_is_never_sent(
    pg_store: EventStore,
) -> None:
    groups = _one_sender(pg_store)
    first, second = uuid.uuid4(), uuid.uuid4()
    sent = asyncio.create_task(
        groups.append(_first(first, NewEvent(type="Noted", data={}), "note"))
    )
    waiting = asyncio.create_task(
        groups.append(_first(second, NewEvent(type="Noted", data={}), "note"))
    )
    await asyncio.sleep(0)  # both start: the first is sent, the second waits
    waiting.cancel()
    assert await sent is not None
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await groups.aclose()
    assert await _rows_of(pg_store, [first]) == 1
    assert await _rows_of(pg_store, [second]) == 0
