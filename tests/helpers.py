"""Small builders shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import pytest
import sqlalchemy as sa

from eventstore import (
    AppendResult,
    ExecutionCreated,
    ExecutionProgressed,
    ExecutionStatus,
    NewEvent,
    schema,
)
from eventstore.audit.integrity import verify_log
from eventstore.chains import canonical_for
from eventstore.events.envelope import EventMetadata
from eventstore.events.payloads import PAYLOAD_TYPES
from eventstore.hashing import (
    GENESIS_HASH,
    canonical_json,
    chain_hash,
    format_occurred_at,
)
from eventstore.migrating import migrations_location
from projections.queries import ExecutionsView
from tests.cli.runner import run_cli

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from types import ModuleType
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import (
        EventStore,
        ExecutionState,
        Graph,
        Message,
        Thread,
    )
    from eventstore.jsonvalues import JSONObject


@dataclass(frozen=True)
class References:
    thread: Thread
    message: Message
    graph: Graph


async def make_references(store: EventStore) -> References:
    thread = await store.threads.create(title="support chat")
    message = await store.messages.create(
        thread_id=thread.id, role="user", content="summarise the report"
    )
    graph = await store.graphs.create(
        name="summariser", version="1", definition={"agents": ["reader", "writer"]}
    )
    return References(thread=thread, message=message, graph=graph)


async def execution_in(
    store: EventStore, refs: References, status: ExecutionStatus
) -> UUID:
    """A new execution driven to `status` through the lifecycle service."""
    executions = store.executions
    execution_id = await executions.create(
        message_id=refs.message.id, graph_id=refs.graph.id, inputs={"topic": "q3"}
    )
    if status is ExecutionStatus.PENDING:
        return execution_id
    if status is ExecutionStatus.CANCELLED:
        await executions.cancel(execution_id, reason="test")
        return execution_id
    if status is ExecutionStatus.FAILED:
        await executions.fail(execution_id, error={"type": "Boom", "message": "test"})
        return execution_id
    await executions.start(execution_id, worker_id="worker-1")
    if status is ExecutionStatus.COMPLETED:
        await executions.complete(execution_id, result={"ok": True})
    return execution_id


async def count_events(store: EventStore) -> int:
    """How many events the log holds (through SQLAlchemy, not the code under test)."""
    async with store.backend.engine.connect() as connection:
        count = await connection.scalar(
            sa.select(sa.func.count()).select_from(schema.execution_events)
        )
    return int(count or 0)


async def raw_pg(url: str) -> asyncpg.Connection:
    """A plain asyncpg connection to a test database."""
    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))


async def load_made_up_log(
    connection: asyncpg.Connection, streams: int, types: Sequence[str]
) -> None:
    """Bulk-load `streams` streams of one event per type of `types`, for planner tests.

    Made-up rows of stream type ``plan``: their hashes are not a chain, and
    event v of stream s occurred ``s * len(types) + v`` seconds after
    2026-10-01 00:00 UTC.
    """
    await connection.execute(
        """
        INSERT INTO execution_events (stream_id, version, stream_type, event_id,
            type, schema_version, data, metadata, occurred_at, hash)
        SELECT md5(s::text)::uuid, v, 'plan', gen_random_uuid(),
            ($2::text[])[v], 1, '{}', '{}',
            timestamptz '2026-10-01'
                + (s * cardinality($2::text[]) + v) * interval '1 second',
            sha256(s::text::bytea)
        FROM generate_series(1, $1::int) AS s,
            generate_series(1, cardinality($2::text[])) AS v
        ORDER BY s, v
        """,
        streams,
        list(types),
    )


def typed_json(value: object) -> object:
    """`value` with the type of every part in it, so that 1, 1.0 and True differ."""
    if isinstance(value, dict):
        return [(key, typed_json(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [typed_json(item) for item in value]
    return (type(value), value)


# The SQLite immutability triggers as the migrations leave them: 0001 creates
# both, 0003 replaces the DELETE one with the archive-guarded one.
_SQLITE_TRIGGER_MIGRATIONS = (
    "0001_event_log",
    "0003_archive_path",
    "0006_guarded_appends",
    "0008_fixed_stream_types",
    "0010_labels",
)
# The append guards among them (the others keep the log immutable).
_SQLITE_GUARD_MIGRATIONS = (
    "0006_guarded_appends",
    "0008_fixed_stream_types",
    "0010_labels",
)
_LOG_TRIGGERS_SQL = (
    "SELECT name, sql FROM sqlite_master "
    "WHERE type = 'trigger' AND tbl_name = 'execution_events' ORDER BY name"
)
_PG_TRIGGERS_SQL = (
    "SELECT tgname, tgenabled FROM pg_trigger "
    "WHERE tgrelid = 'execution_events'::regclass AND NOT tgisinternal ORDER BY tgname"
)


@functools.cache
def _migration(name: str) -> ModuleType:
    """A revision module of the shipped alembic tree (its name starts with a digit)."""
    path = migrations_location() / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_tests_migration_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sqlite_trigger_statements() -> list[str]:
    """The migrations' own SQL that (re)creates the log's triggers on SQLite."""
    statements: list[str] = []
    for name in _SQLITE_TRIGGER_MIGRATIONS:
        upgrade: list[str] = _migration(name).SQLITE_UPGRADE
        statements.extend(upgrade)
    return statements


def _plain(url: str) -> str:
    """A URL without SQLAlchemy's driver name (as `store.url` gives it)."""
    return url.replace("sqlite+aiosqlite:", "sqlite:", 1).replace(
        "postgresql+asyncpg:", "postgresql:", 1
    )


async def tamper(url: str, sql: str, *more: str) -> None:
    """Run SQL statements on the log behind the immutability triggers' back.

    A superuser's move: on PostgreSQL the user triggers are disabled and enabled
    again, on SQLite they are dropped and recreated from the migrations' SQL;
    either way in the one transaction of the change, so no other session ever
    sees the log unprotected, and the triggers are checked to be back exactly
    as they were (see also `assert_log_refuses_changes`).
    """
    url = _plain(url)
    if url.startswith("sqlite"):
        _tamper_sqlite(url.removeprefix("sqlite:///"), [sql, *more])
        return
    pg = await raw_pg(url)
    try:
        async with pg.transaction():
            before = [tuple(row) for row in await pg.fetch(_PG_TRIGGERS_SQL)]
            assert before, "execution_events has no triggers to disable"
            await pg.execute("ALTER TABLE execution_events DISABLE TRIGGER USER")
            for statement in (sql, *more):
                await pg.execute(statement)
            await pg.execute("ALTER TABLE execution_events ENABLE TRIGGER USER")
            after = [tuple(row) for row in await pg.fetch(_PG_TRIGGERS_SQL)]
            assert after == before, f"triggers not restored: {after} != {before}"
    finally:
        await pg.close()


async def append_behind_the_guards(
    store: EventStore,
    url: str,
    stream_id: UUID,
    events: Sequence[NewEvent],
    *,
    stream_type: str = "execution",
    recorded_at: datetime | None = None,
) -> list[int]:
    """Append events the append trigger would refuse, as an older store wrote them.

    Poison for the fold (an event out of the lifecycle, a reference that is
    gone) can no longer be appended (migration 0006), but a log written
    before it may hold some, and an owner who disables the triggers can
    write anything (a backdated `recorded_at`, a forged receipt). The events
    are chained onto the stream's head with correct hashes and inserted
    behind the triggers (`tamper`).

    Returns:
        Their positions.
    """
    head = [event async for event in store.read_stream(stream_id)]
    version, previous = (head[-1].version, head[-1].hash) if head else (0, GENESIS_HASH)
    recorded = (recorded_at or datetime.now(UTC)).astimezone(UTC)
    statements = []
    for event in events:
        version += 1
        previous = chain_hash(previous, canonical_for(stream_id, version, event))
        occurred = event.occurred_at.astimezone(UTC)
        if store.backend.name == "sqlite":
            values = (
                f"'{stream_id.hex}', {version}, '{stream_type}', "
                f"'{event.event_id.hex}', '{event.type}', {event.schema_version}, "
                f"'{event.data_json}', '{event.metadata_json}', "
                f"'{occurred:%Y-%m-%d %H:%M:%S.%f}', '{recorded:%Y-%m-%d %H:%M:%S.%f}', "
                f"X'{previous.hex()}'"
            )
        else:
            values = (
                f"'{stream_id}', {version}, '{stream_type}', '{event.event_id}', "
                f"'{event.type}', {event.schema_version}, "
                f"'{event.data_json}'::jsonb, '{event.metadata_json}'::jsonb, "
                f"'{occurred.isoformat()}', '{recorded.isoformat()}', "
                f"'\\x{previous.hex()}'"
            )
        statements.append(
            "INSERT INTO execution_events (stream_id, version, stream_type, event_id, "
            "type, schema_version, data, metadata, occurred_at, recorded_at, hash) "
            f"VALUES ({values})"
        )
    await tamper(url, *statements)
    store.backend.forget_streams([stream_id])
    recorded_events = [event async for event in store.read_stream(stream_id)]
    return [event.position for event in recorded_events[len(head) :]]


@contextlib.asynccontextmanager
async def append_guards_lifted(
    connection: AsyncConnection, backend: str
) -> AsyncIterator[None]:
    """Within the caller's transaction, the append trigger (0006) is off.

    For writing rows as a release before it did (old recorded_at times,
    say); the immutability triggers stay on.
    """
    if backend == "postgresql":
        await connection.exec_driver_sql(
            "ALTER TABLE execution_events DISABLE TRIGGER execution_events_guard_append"
        )
        yield
        await connection.exec_driver_sql(
            "ALTER TABLE execution_events ENABLE TRIGGER execution_events_guard_append"
        )
        return
    guards = [_migration(name) for name in _SQLITE_GUARD_MIGRATIONS]
    for guard in reversed(guards):  # as alembic downgrades: the newest first
        for statement in guard.SQLITE_DOWNGRADE:
            await connection.exec_driver_sql(statement)
    yield
    for guard in guards:
        for statement in guard.SQLITE_UPGRADE:
            await connection.exec_driver_sql(statement)


def _tamper_sqlite(path: str, statements: list[str]) -> None:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            before = connection.execute(_LOG_TRIGGERS_SQL).fetchall()
            assert before, "execution_events has no triggers to drop"
            for name, _ in before:
                connection.execute(f'DROP TRIGGER "{name}"')
            for statement in statements:
                connection.execute(statement)
            for statement in sqlite_trigger_statements():
                connection.execute(statement)
            after = connection.execute(_LOG_TRIGGERS_SQL).fetchall()
            assert after == before, (
                "the migrations' trigger SQL no longer recreates the triggers the "
                f"schema has: {after} != {before}"
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    finally:
        connection.close()


async def assert_log_refuses_changes(url: str) -> None:
    """The immutability triggers are in force: UPDATE and DELETE (and TRUNCATE) fail."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        try:
            row = connection.execute(
                "SELECT position FROM execution_events LIMIT 1"
            ).fetchone()
            assert row is not None, "an empty log cannot show its triggers at work"
            for statement in (
                "UPDATE execution_events SET version = version WHERE position = ?",
                "DELETE FROM execution_events WHERE position = ?",
            ):
                try:
                    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                        connection.execute(statement, row)
                finally:
                    connection.rollback()
        finally:
            connection.close()
        return
    pg = await raw_pg(url)
    try:
        position = await pg.fetchval("SELECT position FROM execution_events LIMIT 1")
        assert position is not None, "an empty log cannot show its triggers at work"
        for statement in (
            f"UPDATE execution_events SET version = version WHERE position = {position}",
            f"DELETE FROM execution_events WHERE position = {position}",
            "TRUNCATE execution_events",
        ):
            with pytest.raises(asyncpg.PostgresError, match="append-only") as refused:
                async with pg.transaction():
                    await pg.execute(statement)
            assert refused.value.sqlstate == "ZE001", refused.value
    finally:
        await pg.close()


async def project_everything(store: EventStore, *, within: float = 30) -> None:
    """Run the projector until it has folded every event appended so far.

    On PostgreSQL a transaction still open anywhere on the server (another
    test's database included) holds the gap-safe horizon back, so "caught
    up" may stop short of the newest events for a moment.
    """
    from projections import Projector

    newest = await count_positions(store)
    projector = Projector(store)
    async with asyncio.timeout(within):
        while True:
            await projector.run_until_caught_up()
            async with store.backend.connect_read() as connection:
                position = await connection.scalar(
                    sa.select(sa.func.max(schema.projection_checkpoints.c.position))
                )
            if (position or 0) >= newest:
                return
            await asyncio.sleep(0.05)


async def eventually(
    check: Callable[[], Awaitable[bool] | bool],
    what: str = "held",
    *,
    within: float = 30,
) -> None:
    """Wait until `check()` holds, polling, or fail naming `what` after `within` s.

    Tests wait for a condition instead of sleeping a guessed while and then
    asserting: a busy machine only makes them slower, never wrong.
    """
    deadline = asyncio.get_running_loop().time() + within
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        assert asyncio.get_running_loop().time() < deadline, f"never {what}"
        await asyncio.sleep(0.02)


async def count_positions(store: EventStore) -> int:
    """The largest position in the log (0 when empty)."""
    async with store.backend.connect_read() as connection:
        value = await connection.scalar(
            sa.select(sa.func.max(schema.execution_events.c.position))
        )
    return int(value or 0)


async def wait_for_horizon(store: EventStore, *, within: float = 30) -> None:
    """Wait until every event appended so far lies below the gap-safe horizon."""
    newest = await count_positions(store)
    async with asyncio.timeout(within):
        while True:
            head = await store.backend.head_checkpoint()
            if newest == 0 or (head is not None and head.position >= newest):
                return
            await asyncio.sleep(0.02)


async def all_rows(store: EventStore) -> dict[UUID, ExecutionState]:
    view = ExecutionsView(store)
    rows: dict[UUID, ExecutionState] = {}
    cursor = None
    while True:
        page = await view.list(limit=100, cursor=cursor)
        rows.update((state.id, state) for state in page.items)
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


async def assert_projection_equals_fold(
    store: EventStore,
) -> dict[UUID, ExecutionState]:
    """Through the view: one row per execution stream, each a fresh fold."""
    return await assert_rows_are_the_fold(store, await all_rows(store))


async def assert_rows_are_the_fold(
    store: EventStore, rows: dict[UUID, ExecutionState]
) -> dict[UUID, ExecutionState]:
    """`rows` holds one state per execution stream, each equal to `executions.get()`."""
    async with store.backend.engine.connect() as connection:
        streams = set(
            (
                await connection.execute(
                    sa.select(schema.execution_events.c.stream_id)
                    .where(schema.execution_events.c.stream_type == "execution")
                    .distinct()
                )
            ).scalars()
        )
    assert set(rows) == streams
    for execution_id, row in rows.items():
        assert row == await store.executions.get(execution_id)
    return rows


async def event_token_sum(store: EventStore) -> tuple[int, float]:
    tokens, cost = 0, 0.0
    async for event in store.read_all():
        metrics = event.data.get("metrics") or {}
        assert isinstance(metrics, dict)
        for name in ("prompt_tokens", "completion_tokens"):
            value = metrics.get(name, 0)
            assert isinstance(value, int)
            tokens += value
        price = metrics.get("cost_usd", 0)
        assert isinstance(price, int | float)
        cost += price
    return tokens, cost


async def assert_one_break(
    store: EventStore, stream_id: UUID, position: int, reason: str
) -> None:
    """`verify_log` names this stream at this position, and nothing else.

    `reason` is a part of the reason it must give. Waits first until the
    read horizon has passed every event written so far: another test's
    open transaction on the server may hold it back a moment.
    """
    await wait_for_horizon(store)
    report = await verify_log(store.backend)
    found = [(p.stream_id, p.position) for p in report.problems]
    assert found == [(stream_id, position)], report.problems
    assert reason in report.problems[0].reason, report.problems[0]


def assert_cli_names_break(url: str, stream_id: UUID, position: int) -> None:
    """`eventstore verify` (and `audit ID --verify`) exit 1 naming stream and position."""
    done = run_cli("verify", "--url", url, "--log-only")
    assert done.returncode == 1, done.stdout + done.stderr
    broken = [line for line in done.stdout.splitlines() if "broken chain" in line]
    assert len(broken) == 1, done.stdout
    assert broken[0].startswith(
        f"broken chain: execution {stream_id} at position {position}: "
    ), broken
    report = json.loads(run_cli("verify", "--url", url, "--log-only", "--json").stdout)
    assert report["ok"] is False
    assert [(p["stream_id"], p["position"]) for p in report["chain_problems"]] == [
        (str(stream_id), position)
    ]
    checked = run_cli("audit", str(stream_id), "--verify", "--url", url)
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert checked.stderr.strip().startswith(
        f"error: integrity violation in stream {stream_id} at position {position}: "
    ), checked.stderr
    assert len(checked.stderr.strip().splitlines()) == 1, checked.stderr


# Poison events: what the fold or the executions projection cannot apply.
BIG_METRIC = 2**1023  # twice it is beyond the largest float


@dataclass(frozen=True)
class Poison:
    """An event in the log that no projection of executions can apply."""

    stream_id: UUID
    position: int
    event_id: UUID


def unchecked_event(event_type: str, data: JSONObject) -> NewEvent:
    """A NewEvent whose data its payload model would refuse (as old releases wrote).

    Built without validation, with the canonical texts the append stores.
    """
    event = NewEvent.model_construct(
        type=event_type,
        data=data,
        metadata=EventMetadata(),
        event_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        schema_version=PAYLOAD_TYPES[event_type].schema_version,
    )
    event._data_json = canonical_json(data)
    event._metadata_json = "{}"
    event._occurred_at_text = format_occurred_at(event.occurred_at)
    return event


async def append_unchecked(
    store: EventStore,
    stream_id: UUID,
    events: list[NewEvent],
    *,
    expected_version: int | None = None,
) -> AppendResult:
    """Append events as they are, past every check the store makes at append time.

    The one place the poison tests write their poison. The database refuses
    such events since migration 0006, so they are written behind its
    triggers, as an older release or an owner could have left them.
    """
    del expected_version  # the rows go at the stream's head, whatever it is
    positions = await append_behind_the_guards(store, store.url, stream_id, events)
    head = [event async for event in store.read_stream(stream_id)][-1]
    return AppendResult(version=head.version, positions=tuple(positions))


async def poison_unknown_message(store: EventStore, refs: References) -> Poison:
    """A run whose ExecutionCreated names a message that does not exist."""
    created = NewEvent.of(
        ExecutionCreated(
            message_id=uuid.uuid4(), graph_id=refs.graph.id, thread_id=refs.thread.id
        )
    )
    stream_id = uuid.uuid4()
    result = await append_unchecked(store, stream_id, [created], expected_version=0)
    return Poison(stream_id, result.positions[0], created.event_id)


async def poison_metric_overflow(store: EventStore, refs: References) -> Poison:
    """A running run whose metric sums beyond the largest float (issue 10's recipe).

    Progress with x = 2**1023 (accepted), again (the poison: the total leaves
    the range of a float), then x = 0.5.
    """
    stream_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    first, poison, after = (
        unchecked_event(
            "ExecutionProgressed", {"step": "a", "metrics": {"x": BIG_METRIC}}
        ),
        unchecked_event(
            "ExecutionProgressed", {"step": "b", "metrics": {"x": BIG_METRIC}}
        ),
        NewEvent.of(ExecutionProgressed(step="c", metrics={"x": 0.5})),
    )
    result = await append_unchecked(store, stream_id, [first, poison, after])
    return Poison(stream_id, result.positions[1], poison.event_id)
