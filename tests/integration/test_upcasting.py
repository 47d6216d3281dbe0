"""Stored v1 ExecutionProgressed events, as an earlier release wrote them, read as v2.

The old events are inserted with plain SQL (the current writers refuse v1)
with a correct hash chain over their stored v1 form. Every reader sees the
v2 shape; the integrity checks keep verifying the stored form.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from eventstore import (
    EventStore,
    EventStoreError,
    ExecutionCreated,
    ExecutionStatus,
    RecordedEvent,
    ValidationError,
    schema,
)
from eventstore.audit.archive_reading import verify_archive
from eventstore.audit.archiving import archive_finished_before
from eventstore.audit.integrity import verify_log
from eventstore.audit.replay import verify_stream
from eventstore.hashing import GENESIS_HASH, canonical_event, canonical_json, chain_hash
from projections.executions import ExecutionsProjection
from projections.projector import Projector
from projections.queries import ExecutionsView
from projections.rebuild import rebuild
from projections.verify import verify_executions
from tests.cli.runner import run_cli
from tests.helpers import append_guards_lifted

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers import References

OLD_RELEASE = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
# v1 kept usage flat beside the step; costs are binary fractions so sums are exact.
RETRIEVE_V1: dict[str, Any] = {
    "step": "retrieve",
    "detail": {"docs": 4},
    "prompt_tokens": 120,
    "completion_tokens": 30,
    "cost_usd": 0.25,
}
SUMMARISE_V1: dict[str, Any] = {
    "step": "summarise",
    "prompt_tokens": 80,
    "completion_tokens": 45,
    "cost_usd": 0.125,
}
CHECK_V1: dict[str, Any] = {"step": 3, "detail": "no model call"}
PROGRESSED_V2 = [
    {
        "step": "retrieve",
        "detail": {"docs": 4},
        "metrics": {"prompt_tokens": 120, "completion_tokens": 30, "cost_usd": 0.25},
    },
    {
        "step": "summarise",
        "detail": None,
        "metrics": {"prompt_tokens": 80, "completion_tokens": 45, "cost_usd": 0.125},
    },
    {"step": 3, "detail": "no model call", "metrics": {}},
]
OLD_METRICS = {"prompt_tokens": 200, "completion_tokens": 75, "cost_usd": 0.375}


@dataclass(frozen=True)
class Stored:
    """An event as an old release stored it."""

    type: str
    schema_version: int
    data: dict[str, Any]


async def insert_stored(
    store: EventStore, stream_id: uuid.UUID, events: list[Stored]
) -> None:
    """Insert a new stream's events with SQL, hash-chained over the stored form."""
    previous = GENESIS_HASH
    rows = []
    for version, event in enumerate(events, start=1):
        event_id = uuid.uuid4()
        occurred = OLD_RELEASE + timedelta(seconds=version)
        metadata = {"actor": "worker-2025"}
        previous = chain_hash(
            previous,
            canonical_event(
                stream_id=stream_id,
                version=version,
                event_id=event_id,
                event_type=event.type,
                schema_version=event.schema_version,
                data_json=canonical_json(event.data),
                metadata_json=canonical_json(metadata),
                occurred_at=occurred,
            ),
        )
        rows.append(
            {
                "recorded_at": occurred,  # as the old release's clock stamped it
                "stream_id": stream_id,
                "version": version,
                "stream_type": "execution",
                "event_id": event_id,
                "type": event.type,
                "schema_version": event.schema_version,
                "data": event.data,
                "metadata": metadata,
                "occurred_at": occurred,
                "hash": previous,
            }
        )
    async with (
        store.backend.engine.begin() as connection,
        append_guards_lifted(connection, store.backend.name),
    ):
        await connection.execute(schema.execution_events.insert(), rows)


async def until_visible(store: EventStore, count: int) -> None:
    """Wait until the global log shows `count` events.

    On PostgreSQL read_all stops below the oldest transaction still open on
    the server (ARCHITECTURE §1), which sessions of other tests may hold a moment.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len(await store.backend.read_all_as_stored(None, limit=1000)) < count:
        assert loop.time() < deadline, f"the log never showed {count} events"
        await asyncio.sleep(0.05)


def old_stream(refs: References, *progressed: dict[str, Any]) -> list[Stored]:
    """Created and started (still v1 today), then v1 progress reports."""
    created = ExecutionCreated(
        message_id=refs.message.id,
        graph_id=refs.graph.id,
        thread_id=refs.thread.id,
        inputs={"topic": "q3"},
    ).model_dump(mode="json")
    return [
        Stored("ExecutionCreated", 1, created),
        Stored("ExecutionStarted", 1, {"worker_id": "worker-2025"}),
        *(Stored("ExecutionProgressed", 1, data) for data in progressed),
    ]


@pytest.fixture
async def old_execution(store: EventStore, refs: References) -> uuid.UUID:
    """A running execution whose three progress reports are stored as v1."""
    execution_id = uuid.uuid4()
    await insert_stored(
        store, execution_id, old_stream(refs, RETRIEVE_V1, SUMMARISE_V1, CHECK_V1)
    )
    return execution_id


def progressed(events: list[RecordedEvent]) -> list[RecordedEvent]:
    return [event for event in events if event.type == "ExecutionProgressed"]


def assert_current_shape(events: list[RecordedEvent]) -> None:
    old = progressed(events)[:3]
    assert [event.schema_version for event in old] == [2, 2, 2]
    assert [event.data for event in old] == PROGRESSED_V2
    for event in old:
        event.payload()  # fits the current model
    assert {event.type: event.schema_version for event in events[:2]} == {
        "ExecutionCreated": 1,
        "ExecutionStarted": 1,
    }


async def test_reads_return_the_v2_shape(
    store: EventStore, old_execution: uuid.UUID
) -> None:
    assert_current_shape([e async for e in store.read_stream(old_execution)])
    await until_visible(store, 5)
    assert_current_shape([e async for e in store.read_all()])
    assert_current_shape(await store.executions.history(old_execution))
    tail = [e async for e in store.read_stream(old_execution, after_version=3)]
    assert [e.data for e in tail] == PROGRESSED_V2[1:]


async def test_subscribers_receive_the_v2_shape(
    store: EventStore, old_execution: uuid.UUID
) -> None:
    received: list[RecordedEvent] = []

    async def collect() -> None:
        async with store.subscribe(
            stream_id=old_execution, types=["ExecutionProgressed"]
        ) as events:
            async for event in events:
                received.append(event)
                if len(received) == 3:
                    return

    await asyncio.wait_for(collect(), timeout=10)
    assert [e.schema_version for e in received] == [2, 2, 2]
    assert [e.data for e in received] == PROGRESSED_V2


async def test_the_fold_sums_v1_usage_with_what_new_releases_write(
    store: EventStore, old_execution: uuid.UUID
) -> None:
    state = await store.executions.get(old_execution)
    assert state.status is ExecutionStatus.RUNNING
    assert state.steps_completed == 3
    assert state.metrics == OLD_METRICS
    # The current release carries on where the old one stopped.
    await store.executions.progress(
        old_execution, step="write", metrics={"prompt_tokens": 10, "cost_usd": 0.5}
    )
    await store.executions.complete(
        old_execution, result={"summary": "ok"}, metrics={"completion_tokens": 5}
    )
    done = await store.executions.wait(old_execution, timeout=5)
    assert done.status is ExecutionStatus.COMPLETED
    assert done.steps_completed == 4
    assert done.metrics == {
        "prompt_tokens": 210,
        "completion_tokens": 80,
        "cost_usd": 0.875,
    }
    async with EventStore.open(store.url) as fresh:  # no cached state
        assert await fresh.executions.get(old_execution) == done
    versions = [
        e.schema_version
        for e in progressed(await store.executions.history(old_execution))
    ]
    assert versions == [2, 2, 2, 2]


async def test_the_projection_equals_the_fold(
    store: EventStore, old_execution: uuid.UUID
) -> None:
    await until_visible(store, 5)
    await Projector(store).run_until_caught_up()
    view = ExecutionsView(store)
    assert await view.get(old_execution) == await store.executions.get(old_execution)
    assert await verify_executions(store) == []
    await store.executions.complete(old_execution, metrics={"prompt_tokens": 1})
    await until_visible(store, 6)
    await Projector(store).run_until_caught_up()
    assert await view.get(old_execution) == await store.executions.get(old_execution)
    replayed = await rebuild(store, ExecutionsProjection(store.backend))
    assert replayed == await store.log.count_events()
    row = await view.get(old_execution)
    assert row == await store.executions.get(old_execution)
    assert row.steps_completed == 3
    assert row.metrics == {**OLD_METRICS, "prompt_tokens": 201}
    assert await verify_executions(store) == []


async def test_the_hash_chain_covers_the_stored_v1_form(
    store: EventStore, old_execution: uuid.UUID, url: str
) -> None:
    await store.executions.complete(old_execution, result={"ok": True})
    await until_visible(store, 6)
    report = await verify_log(store.backend)
    assert report.ok, report.problems
    assert report.events == 6
    await verify_stream(store.backend, old_execution)
    # The stored rows still hold v1: the log was never rewritten.
    stored = await store.backend.read_stream_as_stored(old_execution, after_version=0)
    assert [e.schema_version for e in stored[2:5]] == [1, 1, 1]
    assert stored[2].data == RETRIEVE_V1
    await Projector(store).run_until_caught_up()
    done = run_cli("verify", "--url", url, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    verified = json.loads(done.stdout)
    assert verified["ok"] is True
    assert verified["events"] == 6
    audit = run_cli("audit", str(old_execution), "--verify", "--url", url)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "hash chain verified: 6 events intact" in audit.stdout


async def test_audit_shows_the_v2_shape_now_and_as_of(
    store: EventStore, old_execution: uuid.UUID, url: str
) -> None:
    await store.executions.complete(old_execution, metrics={"prompt_tokens": 7})
    done = run_cli("audit", str(old_execution), "--json", "--url", url)
    assert done.returncode == 0, done.stdout + done.stderr
    audit = json.loads(done.stdout)
    shown = [e["data"] for e in audit["events"] if e["type"] == "ExecutionProgressed"]
    assert shown == PROGRESSED_V2
    assert audit["state"]["status"] == "completed"
    assert audit["state"]["steps_completed"] == 3
    assert audit["state"]["metrics"] == {**OLD_METRICS, "prompt_tokens": 207}

    history = await store.executions.history(old_execution)
    last_old = history[4].position
    after_old_release = (OLD_RELEASE + timedelta(days=1)).isoformat()
    for moment in (str(last_old), after_old_release):
        as_of = run_cli(
            "audit", str(old_execution), "--as-of", moment, "--json", "--url", url
        )
        assert as_of.returncode == 0, as_of.stdout + as_of.stderr
        audit = json.loads(as_of.stdout)
        assert [e["data"] for e in audit["events"][2:]] == PROGRESSED_V2
        assert audit["state"]["status"] == "running"
        assert audit["state"]["steps_completed"] == 3
        assert audit["state"]["metrics"] == OLD_METRICS
    timeline = run_cli("audit", str(old_execution), "--url", url)
    assert timeline.returncode == 0, timeline.stdout + timeline.stderr
    assert "step retrieve" in timeline.stdout


async def test_a_v1_payload_that_cannot_be_lifted_is_a_clear_error(
    store: EventStore, refs: References, url: str
) -> None:
    # An old release that wrote the token count as text: not the v1 shape.
    broken = uuid.uuid4()
    await insert_stored(
        store, broken, old_stream(refs, {"step": "retrieve", "prompt_tokens": "12"})
    )
    expected = (
        r"invalid ExecutionProgressed v1 data \(cannot upcast it to v2\): prompt_tokens"
    )
    with pytest.raises(ValidationError, match=expected):
        [e async for e in store.read_stream(broken)]
    with pytest.raises(ValidationError, match=expected):
        await store.executions.get(broken)
    with pytest.raises(ValidationError, match=expected):
        await store.executions.history(broken)
    await until_visible(store, 3)
    with pytest.raises(EventStoreError, match=expected):
        await Projector(store).run_until_caught_up()
    # The stored form is intact: the chain verifies, nothing was rewritten.
    assert (await verify_log(store.backend)).ok
    await verify_stream(store.backend, broken)
    audit = run_cli("audit", str(broken), "--url", url)
    assert audit.returncode != 0
    assert "ExecutionProgressed v1 data (cannot upcast it to v2): prompt_tokens" in (
        audit.stderr
    )
    assert "Traceback" not in audit.stderr


async def test_archive_replay_reads_the_v2_shape(
    store: EventStore, old_execution: uuid.UUID, tmp_path: Path
) -> None:
    """An archived stream keeps its stored v1 form; replaying it upcasts."""
    await store.executions.complete(old_execution, result={"ok": True})
    final = await store.executions.get(old_execution)
    await until_visible(store, 6)
    await Projector(store).run_until_caught_up()
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    result = await archive_finished_before(
        store, datetime.now(UTC) + timedelta(minutes=1), archive_dir
    )
    assert result is not None
    verified = await verify_archive(store, result.data_path)
    stored = [e for e in verified.events if e.type == "ExecutionProgressed"]
    assert [e.schema_version for e in stored] == [1, 1, 1]  # the file keeps v1
    replayed = verified.history(old_execution)
    assert_current_shape(replayed)
    assert verified.states()[old_execution] == final
    assert final.metrics == OLD_METRICS
