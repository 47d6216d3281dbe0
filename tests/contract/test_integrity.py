"""The hash chain and the immutability triggers, on both backends."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from eventstore import (
    AppendOnlyViolation,
    EventStore,
    IntegrityError,
    NewEvent,
    RecordAltered,
)
from eventstore.audit.integrity import verify_log
from eventstore.audit.replay import verify_stream
from eventstore.hashing import GENESIS_HASH, canonical_event, canonical_json, chain_hash
from tests.helpers import raw_pg, tamper, wait_for_horizon

AWKWARD_PAYLOADS: list[dict[str, object]] = [
    {"big": 10**30, "negative_big": -(2**63), "limit": 2**53 + 1},
    {"float": 1e20, "huge": 1.5e300, "tiny": 5e-324, "small": 1.5e-7, "third": 1 / 3},
    {"integral_float": 100.0, "minus_zero": -0.0, "half": 0.5, "neg": -2.75},
    {"unicode": "héllo wörld ☃ 日本語 🚀 \u2028 \u00e9 e\u0301", "quote": 'a "b" \\ c'},
    {"controls": "\t\n\r\b\f\x01\x1f\x7f", "empty": "", "emoji_key_🙂": 1},
    {
        "z": 1,
        "a": 2,
        "é": 3,
        "E": 4,
        "\U0001f600": 5,
        "\uff61": 6,
        "aa": {"b": 1, "a": 2},
    },
    {"deep": {"b": [{"y": None, "x": True}, [False, [], {}]], "a": {"d": {}, "c": []}}},
    {"list": [1, 1.0, "1", None, True, [1.25e-5, 3e21]]},
]


@pytest.mark.parametrize("data", AWKWARD_PAYLOADS)
async def test_awkward_payloads_survive_the_round_trip_and_verify(
    store: EventStore, data: dict[str, object]
) -> None:
    stream = uuid.uuid4()
    occurred = datetime(
        2026, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=5))
    )
    events = [
        NewEvent(type="Odd", data=data, metadata={"actor": "ü", "nested": data}),
        NewEvent(type="Odd", data={"wrapped": data}, occurred_at=occurred),
        NewEvent(type="Odd", data={}),
    ]
    await store.append(stream, events[:2], expected_version=0, stream_type="note")
    await store.append(stream, events[2:], expected_version=2, stream_type="note")
    head = await verify_stream(store.backend, stream)
    recorded = [e async for e in store.read_stream(stream)]
    assert recorded[-1].hash == head
    # Numbers come back by value, as JSON decimals: compare canonical forms.
    assert canonical_json(recorded[0].data) == canonical_json(data)
    assert recorded[1].occurred_at == occurred


async def test_the_chain_is_the_documented_sha256_of_the_canonical_form(
    store: EventStore,
) -> None:
    stream = uuid.uuid4()
    event = NewEvent(
        type="Note",
        data={"b": 1.0, "a": "x"},
        metadata={"actor": "auditor"},
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    await store.append(stream, [event], stream_type="note")
    [recorded] = [e async for e in store.read_stream(stream)]
    canonical = (
        '{"data":{"a":"x","b":1},"event_id":"' + str(event.event_id) + '",'
        '"metadata":{"actor":"auditor"},"occurred_at":"2026-01-01T00:00:00.000000Z",'
        '"schema_version":1,"stream_id":"'
        + str(stream)
        + '","type":"Note","version":1}'
    )
    assert (
        canonical_event(
            stream_id=stream,
            version=1,
            event_id=event.event_id,
            event_type="Note",
            schema_version=1,
            data_json='{"a":"x","b":1}',
            metadata_json='{"actor":"auditor"}',
            occurred_at=event.occurred_at,
        )
        == canonical
    )
    assert recorded.hash == chain_hash(GENESIS_HASH, canonical)


async def test_a_changed_event_breaks_the_chain_at_its_position(url: str) -> None:
    """Tampering with the triggers out of the way is detected (more in the audit issue)."""
    stream = uuid.uuid4()
    async with EventStore.open(url) as store:
        await store.append(
            stream,
            [NewEvent(type="Note", data={"n": n}) for n in range(3)],
            stream_type="note",
        )
        second = [e async for e in store.read_stream(stream)][1]
        await store.aclose()
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        connection = sqlite3.connect(path)
        connection.execute("DROP TRIGGER execution_events_refuse_update")
        connection.execute(
            "UPDATE execution_events SET data = ? WHERE position = ?",
            ('{"n":99}', second.position),
        )
        connection.commit()
        connection.close()
    else:
        pg = await raw_pg(url)
        try:
            await pg.execute("ALTER TABLE execution_events DISABLE TRIGGER USER")
            await pg.execute(
                "UPDATE execution_events SET data = '{\"n\": 99}' WHERE position = $1",
                second.position,
            )
        finally:
            await pg.close()
    async with EventStore.open(url) as store:
        with pytest.raises(RecordAltered) as caught:
            await verify_stream(store.backend, stream)
    assert caught.value.stream_id == stream
    assert caught.value.position == second.position


async def test_postgres_refuses_update_delete_and_truncate(
    pg_store: EventStore, pg_url: str
) -> None:
    await pg_store.append(
        uuid.uuid4(), [NewEvent(type="Note", data={"n": 1})], stream_type="note"
    )
    connection = await raw_pg(pg_url)
    try:
        for statement in (
            "UPDATE execution_events SET type = 'Forged'",
            "DELETE FROM execution_events",
            "TRUNCATE execution_events",
            "TRUNCATE execution_events CASCADE",
        ):
            with pytest.raises(asyncpg.PostgresError, match="append-only") as caught:
                await connection.execute(statement)
            assert caught.value.sqlstate == "ZE001"
        assert await connection.fetchval("SELECT count(*) FROM execution_events") == 1
        assert await connection.fetchval("SELECT type FROM execution_events") == "Note"
    finally:
        await connection.close()


async def test_sqlite_refuses_update_and_delete(sqlite_url: str) -> None:
    async with EventStore.open(sqlite_url) as store:
        await store.append(
            uuid.uuid4(), [NewEvent(type="Note", data={"n": 1})], stream_type="note"
        )
    connection = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        for statement in (
            "UPDATE execution_events SET type = 'Forged'",
            "DELETE FROM execution_events",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only") as caught:
                connection.execute(statement)
            assert caught.value.sqlite_errorname == "SQLITE_CONSTRAINT_TRIGGER"
        assert connection.execute(
            "SELECT count(*), min(type) FROM execution_events"
        ).fetchone() == (
            1,
            "Note",
        )
    finally:
        connection.close()


async def test_the_store_reports_a_refused_change_as_an_integrity_error(
    store: EventStore,
) -> None:
    """Through the store's own connections the refusal is translated, not leaked."""
    await store.append(
        uuid.uuid4(), [NewEvent(type="Note", data={"n": 1})], stream_type="note"
    )
    with pytest.raises(AppendOnlyViolation, match="append-only") as refused:
        async with store.backend.begin_write() as connection:
            await connection.exec_driver_sql("DELETE FROM execution_events")
    assert isinstance(refused.value, IntegrityError)
    assert not isinstance(refused.value, RecordAltered)


async def test_numbers_come_back_by_value_alike_on_both_backends(
    store: EventStore,
) -> None:
    stream = uuid.uuid4()
    data = {"int": 10**30, "odd": 10**30 + 1, "tenth": 0.1, "one": 1.0, "e": 1.5e-7}
    await store.append(
        stream, [NewEvent(type="Numbers", data=data)], stream_type="note"
    )
    [event] = [e async for e in store.read_stream(stream)]
    assert event.data == {
        "int": 10**30,
        "odd": 10**30 + 1,
        "tenth": 0.1,
        "one": 1,
        "e": 1.5e-7,
    }
    assert [type(event.data[k]) for k in ("int", "odd", "tenth", "one", "e")] == [
        int,
        int,
        float,
        int,
        float,
    ]


async def test_stored_data_that_cannot_be_canonical_is_a_break_not_a_crash(
    url: str, store: EventStore
) -> None:
    stream, other = uuid.uuid4(), uuid.uuid4()
    await store.append(
        stream,
        [NewEvent(type="Note", data={"n": n}) for n in range(3)],
        stream_type="note",
    )
    await store.append(
        other, [NewEvent(type="Note", data={"n": 1})], stream_type="note"
    )
    second = [e async for e in store.read_stream(stream)][1]
    too_deep = "[" * 70 + "]" * 70  # JSON, but deeper than the canonical form allows
    await tamper(
        url,
        f"""UPDATE execution_events SET data = '{{"n": {too_deep}}}' """
        f"WHERE position = {second.position}",
    )

    report = await verify_log(store.backend)

    assert [(p.stream_id, p.position) for p in report.problems] == [
        (stream, second.position)
    ]
    assert "not canonical JSON" in report.problems[0].reason
    assert report.events == 4


async def test_verify_reads_what_committed_before_it_while_others_run(
    pg_store: EventStore, pg_url: str
) -> None:
    """A transaction running anywhere holds the read horizon back: verify waits it out.

    Otherwise the events appended just before verify lie above the horizon,
    and verify would pass them over unchecked.
    """
    holder = await raw_pg(pg_url)
    held = holder.transaction()
    await held.start()
    try:
        await holder.fetchval("SELECT pg_current_xact_id()")  # now it has an id
        stream = uuid.uuid4()
        await pg_store.append(
            stream,
            [NewEvent(type="Note", data={"n": n}) for n in range(3)],
            stream_type="note",
        )
        verifying = asyncio.ensure_future(verify_log(pg_store.backend))
        # While the older transaction runs, verify cannot have read the events.
        done, _ = await asyncio.wait({verifying}, timeout=1.0)
        assert not done
    finally:
        await held.rollback()
        await holder.close()
    report = await asyncio.wait_for(verifying, timeout=60)
    assert report.ok
    assert report.events == 3


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ("'{\"n\": '", "not JSON"),  # cut short
        ("'{\"n\": 1e999999999}'", "more digits than JSON readers accept"),
        ("CAST('{\"n\": 1}' AS BLOB)", "stored JSON is bytes, not text"),
    ],
)
async def test_sqlite_data_that_is_not_json_text_is_a_break(
    sqlite_url: str, stored: str, reason: str
) -> None:
    # SQLite's column takes any text or a BLOB behind the triggers' back;
    # jsonb on PostgreSQL holds only JSON. The chain breaks; verify goes on.
    async with EventStore.open(sqlite_url) as store:
        stream, other = uuid.uuid4(), uuid.uuid4()
        await store.append(
            stream, [NewEvent(type="Note", data={"n": 1})], stream_type="note"
        )
        await store.append(
            other, [NewEvent(type="Note", data={"n": 2})], stream_type="note"
        )
        (first,) = [e async for e in store.read_stream(stream)]
        await tamper(
            sqlite_url,
            f"UPDATE execution_events SET data = {stored} WHERE position = {first.position}",
        )
        report = await verify_log(store.backend)
    assert [(p.stream_id, p.position) for p in report.problems] == [
        (stream, first.position)
    ]
    assert "not canonical JSON" in report.problems[0].reason
    assert reason in report.problems[0].reason
    assert report.events == 2


@pytest.mark.postgres
async def test_a_year_moved_before_the_era_breaks_the_chain(
    pg_store: EventStore, pg_url: str
) -> None:
    """to_char writes year 1 BC as 0001 too: verify must not read it as year 1 AD."""
    stream = uuid.uuid4()
    ancient = datetime(1, 6, 1, 12, tzinfo=UTC)
    await pg_store.append(
        stream,
        [NewEvent(type="Note", data={}, occurred_at=ancient)],
        stream_type="note",
    )
    [event] = [e async for e in pg_store.read_stream(stream)]
    await wait_for_horizon(pg_store)
    assert (await verify_log(pg_store.backend)).ok
    await tamper(
        pg_url,
        "UPDATE execution_events SET occurred_at = '0001-06-01 12:00:00+00 BC' "
        f"WHERE position = {event.position}",
    )
    report = await verify_log(pg_store.backend)
    assert [(p.stream_id, p.position) for p in report.problems] == [
        (stream, event.position)
    ]
