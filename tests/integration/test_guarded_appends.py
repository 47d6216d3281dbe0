"""The database guards every append (migration 0006), whoever writes.

Lifecycle transitions, references, stamps, system streams and tombstones are
checked by the log itself, so `store.append`, the store's own fast path and
function path, and a raw INSERT all meet the same rules on both backends.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg
import pytest

from eventstore import (
    EventStore,
    ExecutionNotFound,
    ExecutionStatus,
    InvalidTransition,
    NewEvent,
    ReferenceNotFound,
    StreamArchived,
    ValidationError,
)
from eventstore.audit.anchors import verify_anchors
from eventstore.audit.archiving import archive_finished_before
from eventstore.audit.integrity import verify_log
from eventstore.events import payloads
from eventstore.events.system_payloads import (
    ARCHIVE_RECEIPTS_STREAM,
    ArchiveReceipt,
    StreamHead,
)
from eventstore.status import ALLOWED_FROM, is_allowed
from projections import Projector
from tests.cli.runner import run_cli
from tests.helpers import (
    append_behind_the_guards,
    count_events,
    execution_in,
    make_references,
    raw_pg,
    wait_for_horizon,
)

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

    from tests.helpers import References

SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"  # the stamp SQLite's trigger takes
LIFECYCLE_EVENTS = {
    "ExecutionStarted": payloads.ExecutionStarted(worker_id="w"),
    "ExecutionProgressed": payloads.ExecutionProgressed(step="s"),
    "ExecutionCompleted": payloads.ExecutionCompleted(result=1),
    "ExecutionFailed": payloads.ExecutionFailed(
        error=payloads.ErrorInfo(type="Boom", message="m")
    ),
    "ExecutionCancellationRequested": payloads.ExecutionCancellationRequested(),
    "ExecutionCancelled": payloads.ExecutionCancelled(),
    "ExecutionLabelled": payloads.ExecutionLabelled(set={"checked": "yes"}),
}


def created(refs: References) -> NewEvent:
    return NewEvent.of(
        payloads.ExecutionCreated(
            message_id=refs.message.id, graph_id=refs.graph.id, thread_id=refs.thread.id
        )
    )


@pytest.mark.parametrize("status", list(ExecutionStatus))
async def test_store_append_follows_the_transition_table(
    url: str, status: ExecutionStatus
) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        for event_type, payload in LIFECYCLE_EVENTS.items():
            run = await execution_in(store, refs, status)
            before = await count_events(store)
            event = NewEvent.of(payload)
            if is_allowed(status, event_type):
                await store.append(run, [event])
                assert await count_events(store) == before + 1
                continue
            with pytest.raises(InvalidTransition) as caught:
                await store.append(run, [event])  # any version: only the DB decides
            assert (caught.value.status, caught.value.event_type) == (
                status.value,
                event_type,
            )
            assert caught.value.execution_id == run
            assert await count_events(store) == before
    assert set(LIFECYCLE_EVENTS) == set(ALLOWED_FROM)


async def test_an_append_is_refused_whole_at_its_first_bad_event(url: str) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        before = await count_events(store)
        completed = NewEvent.of(LIFECYCLE_EVENTS["ExecutionCompleted"])
        started = NewEvent.of(LIFECYCLE_EVENTS["ExecutionStarted"])
        with pytest.raises(InvalidTransition) as caught:
            await store.append(run, [completed, started], expected_version=2)
        assert (caught.value.status, caught.value.event_type) == (
            "completed",
            "ExecutionStarted",
        )
        assert await count_events(store) == before
        assert (await store.executions.get(run)).status is ExecutionStatus.RUNNING


async def test_streams_start_with_a_valid_creation(url: str) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        with pytest.raises(ExecutionNotFound):
            await store.append(
                uuid.uuid4(), [NewEvent.of(LIFECYCLE_EVENTS["ExecutionStarted"])]
            )
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        with pytest.raises(InvalidTransition, match="ExecutionCreated"):
            await store.append(run, [created(refs)])
        with pytest.raises(InvalidTransition, match="Note"):
            await store.append(run, [NewEvent(type="Note", data={})])
        missing_message = NewEvent.of(
            payloads.ExecutionCreated(
                message_id=uuid.uuid4(),
                graph_id=refs.graph.id,
                thread_id=refs.thread.id,
            )
        )
        with pytest.raises(ReferenceNotFound) as caught:
            await store.append(uuid.uuid4(), [missing_message])
        assert caught.value.entity == "message"
        missing_graph = NewEvent.of(
            payloads.ExecutionCreated(
                message_id=refs.message.id,
                graph_id=uuid.uuid4(),
                thread_id=refs.thread.id,
            )
        )
        with pytest.raises(ReferenceNotFound) as caught:
            await store.append(uuid.uuid4(), [missing_graph])
        assert caught.value.entity == "graph"
        other_thread = await store.threads.create(title="another")
        wrong_thread = NewEvent.of(
            payloads.ExecutionCreated(
                message_id=refs.message.id,
                graph_id=refs.graph.id,
                thread_id=other_thread.id,
            )
        )
        with pytest.raises(ReferenceNotFound):
            await store.append(uuid.uuid4(), [wrong_thread])
        assert await count_events(store) == 2  # the running execution's


async def _raw_insert(
    url: str,
    stream: UUID,
    version: int,
    event_type: str,
    stream_type: str = "execution",
) -> None:
    """A plain INSERT of a lifecycle event with a well-formed chain hash slot."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            with connection:
                connection.execute(
                    "INSERT INTO execution_events (stream_id, version, stream_type, "
                    "event_id, type, schema_version, data, metadata, occurred_at, "
                    "recorded_at, hash) VALUES (?, ?, ?, ?, ?, 1, '{}', '{}', "
                    f"'2026-01-01 00:00:00.000000', {SQLITE_NOW}, zeroblob(32))",
                    (stream.hex, version, stream_type, uuid.uuid4().hex, event_type),
                )
        finally:
            connection.close()
        return
    pg = await raw_pg(url)
    try:
        await pg.execute(
            "INSERT INTO execution_events (stream_id, version, stream_type, event_id, "
            "type, schema_version, data, metadata, occurred_at, hash) VALUES "
            "($1, $2, $4, gen_random_uuid(), $3, 1, '{}', '{}', now(), "
            "'\\x00')",
            stream,
            version,
            event_type,
            stream_type,
        )
    finally:
        await pg.close()


async def test_a_stream_keeps_the_type_of_its_first_event(url: str) -> None:
    """Migration 0008: a note appended to a run broke its fold (found by tests/properties)."""
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        note = uuid.uuid4()
        await store.append(note, [NewEvent(type="Note", data={})], stream_type="note")
        before = await count_events(store)
        with pytest.raises(ValidationError, match="holds execution events") as caught:
            await store.append(
                run,
                [NewEvent.of(LIFECYCLE_EVENTS["ExecutionCompleted"])],
                stream_type="note",
            )
        assert f"stream {run} holds execution events: it cannot take note" in str(
            caught.value
        )
        with pytest.raises(ValidationError, match="holds note events"):
            await store.append(
                note, [NewEvent.of(LIFECYCLE_EVENTS["ExecutionStarted"])]
            )
        assert await count_events(store) == before
        assert (await store.executions.get(run)).status is ExecutionStatus.RUNNING
    with pytest.raises((sqlite3.IntegrityError, asyncpg.PostgresError)) as raw:
        await _raw_insert(url, run, 3, "ExecutionCompleted", stream_type="note")
    if isinstance(raw.value, asyncpg.PostgresError):
        assert raw.value.sqlstate == "ZE009"
    else:
        assert "stream type" in str(raw.value)
    async with EventStore.open(url) as store:
        assert await count_events(store) == before


async def test_a_raw_insert_meets_the_same_lifecycle(url: str) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.COMPLETED)
        before = await count_events(store)
    for event_type in ("ExecutionFailed", "ExecutionStarted", "ExecutionCompleted"):
        with pytest.raises((sqlite3.IntegrityError, asyncpg.PostgresError)) as caught:
            await _raw_insert(url, run, 4, event_type)
        refused = caught.value
        if isinstance(refused, asyncpg.PostgresError):
            assert refused.sqlstate == "ZE002"
        else:
            assert "invalid transition" in str(refused)
    with pytest.raises((sqlite3.IntegrityError, asyncpg.PostgresError)):
        await _raw_insert(url, run, 9, "ExecutionProgressed")  # a gap
    async with EventStore.open(url) as store:
        assert await count_events(store) == before


async def test_history_cannot_be_backdated_or_placed(pg_url: str) -> None:
    async with EventStore.open(pg_url) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        [*_, head] = await store.executions.history(run)
    connection = await raw_pg(pg_url)
    try:
        await connection.execute(
            "INSERT INTO execution_events (stream_id, version, stream_type, event_id, "
            "type, schema_version, data, metadata, occurred_at, hash, recorded_at, "
            "transaction_id, epoch) VALUES ($1, 3, 'execution', gen_random_uuid(), "
            "'ExecutionProgressed', 1, '{\"step\": \"s\"}', '{}', now(), '\\x00', "
            "'2020-01-01', '5'::xid8, 7)",
            run,
        )
        row = await connection.fetchrow(
            "SELECT recorded_at, transaction_id::text::bigint AS xid, epoch "
            "FROM execution_events WHERE stream_id = $1 AND version = 3",
            run,
        )
        assert row is not None
        assert row["recorded_at"] >= head.recorded_at
        assert row["recorded_at"].year >= datetime.now(UTC).year
        assert row["xid"] > 5
        assert row["epoch"] == 0
        with pytest.raises(asyncpg.PostgresError) as caught:
            await connection.execute(
                "INSERT INTO execution_events (position, stream_id, version, "
                "stream_type, event_id, type, schema_version, data, metadata, "
                "occurred_at, hash) VALUES (1, $1, 4, 'execution', gen_random_uuid(), "
                "'ExecutionProgressed', 1, '{\"step\": \"s\"}', '{}', now(), '\\x00')",
                run,
            )
        assert caught.value.sqlstate in {"ZE007", "55000"}
    finally:
        await connection.close()


async def test_sqlite_refuses_a_backdated_or_placed_row(sqlite_url: str) -> None:
    async with EventStore.open(sqlite_url) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        before = await count_events(store)
    connection = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    row = {
        "stream_id": "?",
        "version": "3",
        "stream_type": "'execution'",
        "event_id": "?",
        "type": "'ExecutionProgressed'",
        "schema_version": "1",
        "data": '\'{"step": "s"}\'',
        "metadata": "'{}'",
        "occurred_at": "'2026-01-01 00:00:00.000000'",
        "recorded_at": SQLITE_NOW,
        "hash": "zeroblob(32)",
    }
    try:
        # One wrong column at a time: each alone is refused.
        for column, value in (
            ("recorded_at", "'2020-01-01 00:00:00.000000'"),
            ("recorded_at", "CURRENT_TIMESTAMP"),
            ("transaction_id", "5"),
            ("epoch", "7"),
            ("position", "1"),
        ):
            changed = {**row, column: value}
            with pytest.raises(sqlite3.IntegrityError), connection:
                connection.execute(
                    f"INSERT INTO execution_events ({', '.join(changed)}) "
                    f"VALUES ({', '.join(changed.values())})",
                    (run.hex, uuid.uuid4().hex),
                )
        # The same row with the database's own values is taken.
        with connection:
            connection.execute(
                f"INSERT INTO execution_events ({', '.join(row)}) "
                f"VALUES ({', '.join(row.values())})",
                (run.hex, uuid.uuid4().hex),
            )
    finally:
        connection.close()
    async with EventStore.open(sqlite_url) as store:
        assert await count_events(store) == before + 1


async def test_an_archived_id_cannot_come_back(url: str, tmp_path: Path) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        executions = store.executions
        run = await executions.create(
            message_id=refs.message.id,
            graph_id=refs.graph.id,
            idempotency_key="order-42",
        )
        await executions.start(run, worker_id="w")
        await executions.complete(run, result={"ok": True})
        await Projector(store).run_until_caught_up()
        result = await archive_finished_before(
            store, datetime(9999, 1, 1, tzinfo=UTC), tmp_path
        )
        assert result is not None
        before = await count_events(store)
        with pytest.raises(StreamArchived):
            await executions.create(
                message_id=refs.message.id,
                graph_id=refs.graph.id,
                idempotency_key="order-42",
            )
        with pytest.raises(StreamArchived):
            await store.append(run, [created(refs)])
        assert await count_events(store) == before
        assert [e async for e in store.read_stream(run)] == []


async def test_system_streams_need_the_guard(url: str) -> None:
    async with EventStore.open(url) as store:
        with pytest.raises(ValidationError, match="system"):
            await store.append(
                uuid.uuid4(), [NewEvent(type="Note", data={})], stream_type="system"
            )
        before = await count_events(store)
    stream = uuid.uuid4()
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            with (
                pytest.raises(sqlite3.IntegrityError, match="system stream"),
                connection,
            ):
                connection.execute(
                    "INSERT INTO execution_events (stream_id, version, stream_type, "
                    "event_id, type, schema_version, data, metadata, occurred_at, hash) "
                    "VALUES (?, 1, 'system', ?, 'ArchiveReceipt', 1, '{}', '{}', "
                    "'2026-01-01 00:00:00.000000', zeroblob(32))",
                    (stream.hex, uuid.uuid4().hex),
                )
        finally:
            connection.close()
    else:
        pg = await raw_pg(url)
        try:
            with pytest.raises(asyncpg.PostgresError) as caught:
                await pg.execute(
                    "INSERT INTO execution_events (stream_id, version, stream_type, "
                    "event_id, type, schema_version, data, metadata, occurred_at, hash) "
                    "VALUES ($1, 1, 'system', gen_random_uuid(), 'ArchiveReceipt', 1, "
                    "'{}', '{}', now(), '\\x00')",
                    stream,
                )
            assert caught.value.sqlstate == "ZE003"
        finally:
            await pg.close()
    async with EventStore.open(url) as store:
        assert await count_events(store) == before


async def test_verify_reports_a_receipt_forged_behind_the_guards(url: str) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        await execution_in(store, refs, ExecutionStatus.COMPLETED)
        await Projector(store).run_until_caught_up()
        invented = uuid.uuid4()
        forged = ArchiveReceipt(
            file="fake.jsonl.gz",
            file_sha256="a" * 64,
            manifest_sha256="b" * 64,
            finished_before=datetime.now(UTC),
            events=4,
            streams=[StreamHead(stream_id=invented, version=4, hash="c" * 64)],
        )
        # What only an owner with the triggers off could still write.
        await append_behind_the_guards(
            store,
            url,
            ARCHIVE_RECEIPTS_STREAM,
            [NewEvent.of(forged, metadata={"actor": "archivist"})],
            stream_type="system",
        )
        report = await verify_anchors(store.backend)
        assert [p.stream_id for p in report.problems] == [ARCHIVE_RECEIPTS_STREAM]
        assert str(invented) in report.problems[0].reason
    result = run_cli("verify", "--url", url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert str(invented) in result.stdout + result.stderr


async def test_verify_reports_a_backdated_event(url: str) -> None:
    async with EventStore.open(url) as store:
        refs = await make_references(store)
        run = await execution_in(store, refs, ExecutionStatus.RUNNING)
        await Projector(store).run_until_caught_up()
        progressed = NewEvent.of(payloads.ExecutionProgressed(step="s"))
        [position] = await append_behind_the_guards(
            store, url, run, [progressed], recorded_at=datetime(2020, 1, 1, tzinfo=UTC)
        )
        await wait_for_horizon(store)
        report = await verify_log(store.backend)
        assert [(p.stream_id, p.position) for p in report.problems] == [(run, position)]
        assert "recorded before" in report.problems[0].reason
    result = run_cli("verify", "--log-only", "--url", url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "recorded before" in result.stdout + result.stderr
