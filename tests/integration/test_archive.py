"""The archive path: export with a manifest, remove with a receipt, replay from the file."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from eventstore import (
    AppendOnlyViolation,
    ArchiveError,
    EventStore,
    ExecutionNotFound,
    ExecutionStatus,
    RecordAltered,
    fold_events,
)
from eventstore.audit.archive_files import (
    ArchivedStream,
    ArchiveManifest,
    file_sha256,
    manifest_path_for,
    read_archive,
    write_events,
    write_manifest,
)
from eventstore.audit.archive_reading import verify_archive
from eventstore.audit.archiving import archive_finished_before
from eventstore.audit.integrity import verify_log
from eventstore.events.system_payloads import ARCHIVE_RECEIPTS_STREAM
from eventstore.schema import execution_events, execution_leases, executions
from projections.executions import ExecutionsProjection
from projections.queries import ExecutionsView
from projections.verify import verify_executions
from tests.helpers import References, count_events, execution_in, project_everything

if TYPE_CHECKING:
    import uuid
    from pathlib import Path

    from eventstore import ExecutionState


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    """An empty directory for archive files (the SQLite store lives in tmp_path)."""
    directory = tmp_path / "archives"
    directory.mkdir()
    return directory


async def _finished_and_live(
    store: EventStore, refs: References
) -> tuple[dict[uuid.UUID, ExecutionState], list[uuid.UUID], datetime]:
    """Five finished executions, then a cutoff, then one finished late and two live."""
    old = [
        await execution_in(store, refs, status)
        for status in (
            ExecutionStatus.COMPLETED,
            ExecutionStatus.COMPLETED,
            ExecutionStatus.FAILED,
            ExecutionStatus.CANCELLED,
        )
    ]
    progressed = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await store.executions.progress(
        progressed, step="plan", metrics={"prompt_tokens": 7, "cost_usd": 0.25}
    )
    await store.executions.heartbeat(progressed, worker_id="worker-1")
    await store.executions.complete(progressed, result={"answer": 42})
    old.append(progressed)
    await asyncio.sleep(0.01)
    cutoff = datetime.now(UTC)
    await asyncio.sleep(0.01)
    kept = [
        await execution_in(store, refs, ExecutionStatus.COMPLETED),
        await execution_in(store, refs, ExecutionStatus.RUNNING),
        await execution_in(store, refs, ExecutionStatus.PENDING),
    ]
    states = {
        execution_id: await store.executions.get(execution_id) for execution_id in old
    }
    return states, kept, cutoff


async def test_archive_round_trip(
    store: EventStore, refs: References, archive_dir: Path
) -> None:
    states, kept, cutoff = await _finished_and_live(store, refs)
    await project_everything(store)
    before = await count_events(store)
    archived_events = sum(state.version for state in states.values())

    result = await archive_finished_before(store, cutoff, archive_dir)

    assert result is not None
    assert {s.stream_id for s in result.manifest.streams} == set(states)
    assert result.manifest.events == archived_events
    assert result.data_path.exists()
    assert result.manifest_path.exists()
    # The log and the projection no longer hold them; the rest is untouched.
    assert await count_events(store) == before - archived_events + 1  # + the receipt
    view = ExecutionsView(store)
    for execution_id in states:
        assert [e async for e in store.read_stream(execution_id)] == []
        with pytest.raises(ExecutionNotFound):
            await view.get(execution_id)
        with pytest.raises(ExecutionNotFound):
            await store.executions.get(execution_id)
    for execution_id in kept:
        assert await view.get(execution_id) == await store.executions.get(execution_id)
    async with store.backend.engine.connect() as connection:
        leases = await connection.scalar(
            sa.select(sa.func.count()).select_from(execution_leases)
        )
    assert leases == 0
    # The removal is on record, and the whole log still verifies.
    receipts = [e async for e in store.read_stream(ARCHIVE_RECEIPTS_STREAM)]
    assert [r.type for r in receipts] == ["ArchiveReceipt"]
    assert receipts[0].position == result.receipt_position
    assert receipts[0].data["file_sha256"] == result.manifest.file_sha256
    assert receipts[0].data["events"] == archived_events
    assert (await verify_log(store.backend)).ok
    assert await verify_executions(store) == []
    # The file verifies against its manifest and receipt, and replays each
    # execution to the state it had before it was archived.
    verified = await verify_archive(store, result.data_path)
    assert verified.receipt_position == result.receipt_position
    assert verified.states() == states
    for execution_id, state in states.items():
        assert fold_events(verified.history(execution_id)) == state
    with pytest.raises(ExecutionNotFound):
        verified.history(kept[0])
    # The manifest may also be named instead of the data file.
    assert (
        await verify_archive(store, result.manifest_path)
    ).manifest == result.manifest


async def test_a_projection_folding_the_receipt_forgets_the_archived_executions(
    store: EventStore, refs: References, archive_dir: Path
) -> None:
    """A table the archive did not clean (a rebuild's shadow) learns from the receipt."""
    states, kept, cutoff = await _finished_and_live(store, refs)
    await project_everything(store)
    async with store.backend.engine.connect() as connection:
        rows = (
            (
                await connection.execute(
                    sa.select(executions).where(executions.c.id.in_(states))
                )
            )
            .mappings()
            .all()
        )
    assert len(rows) == len(states)
    assert await archive_finished_before(store, cutoff, archive_dir) is not None
    [receipt] = [e async for e in store.read_stream(ARCHIVE_RECEIPTS_STREAM)]
    # The rows come back, as in a shadow that folded them before the archive.
    async with store.backend.begin_write() as connection:
        await connection.execute(sa.insert(executions), [dict(row) for row in rows])

    async with store.backend.begin_write() as connection:
        await ExecutionsProjection(store.backend).apply(connection, [receipt])

    async with store.backend.engine.connect() as connection:
        left = set((await connection.execute(sa.select(executions.c.id))).scalars())
    assert left == set(kept)
    assert await verify_executions(store) == []


async def test_nothing_to_archive_writes_nothing(
    store: EventStore, refs: References, archive_dir: Path
) -> None:
    await execution_in(store, refs, ExecutionStatus.RUNNING)
    assert await archive_finished_before(store, datetime.now(UTC), archive_dir) is None
    assert list(archive_dir.iterdir()) == []


async def test_a_lagging_projection_refuses_the_archive_and_nothing_is_removed(
    store: EventStore, refs: References, archive_dir: Path
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await project_everything(store)
    late = await execution_in(store, refs, ExecutionStatus.FAILED)  # not projected
    before = await count_events(store)
    with pytest.raises(ArchiveError, match="has not folded position"):
        await archive_finished_before(
            store, datetime.now(UTC) + timedelta(minutes=1), archive_dir
        )
    assert await count_events(store) == before
    assert (await store.executions.get(late)).status is ExecutionStatus.FAILED
    assert list(archive_dir.iterdir()) == []  # the exported files were taken back


async def test_a_corrupted_archive_is_refused(
    store: EventStore, refs: References, archive_dir: Path
) -> None:
    await execution_in(store, refs, ExecutionStatus.COMPLETED)
    await execution_in(store, refs, ExecutionStatus.CANCELLED)
    await project_everything(store)
    result = await archive_finished_before(
        store, datetime.now(UTC) + timedelta(minutes=1), archive_dir
    )
    assert result is not None
    original = result.data_path.read_bytes()

    # One flipped byte: the file no longer has the manifest's digest.
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    result.data_path.write_bytes(bytes(damaged))
    with pytest.raises(RecordAltered, match="differs from the manifest"):
        await verify_archive(store, result.data_path)

    # A re-written file with a matching manifest: the chain gives it away.
    lines = gzip.decompress(original).decode().splitlines()
    forged = json.loads(lines[1])
    forged["data"] = {"worker_id": "someone-else"}
    lines[1] = json.dumps(forged)
    result.data_path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    manifest = json.loads(result.manifest_path.read_text())
    manifest["file_sha256"] = file_sha256(result.data_path)
    result.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RecordAltered, match="does not match its content"):
        read_archive(result.data_path)

    # The original file with a different manifest: the receipt disagrees.
    result.data_path.write_bytes(original)
    manifest["file_sha256"] = file_sha256(result.data_path)
    manifest["created_at"] = "2000-01-01T00:00:00Z"
    result.manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(RecordAltered, match="does not match its manifest"):
        await verify_archive(store, result.data_path)


async def test_an_archive_without_a_receipt_is_refused(
    store: EventStore, refs: References, archive_dir: Path
) -> None:
    """A well-formed file whose removal this log never recorded is not trusted."""
    execution_id = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    events = await store.backend.read_stream_as_stored(execution_id)
    data_path = archive_dir / "archive-unrecorded.jsonl.gz"
    write_events(data_path, events)
    write_manifest(
        ArchiveManifest(
            file=data_path.name,
            file_sha256=file_sha256(data_path),
            created_at=datetime.now(UTC),
            finished_before=datetime.now(UTC),
            events=len(events),
            streams=[
                ArchivedStream(
                    stream_id=execution_id,
                    events=len(events),
                    head_version=events[-1].version,
                    head_hash=events[-1].hash.hex(),
                )
            ],
        ),
        manifest_path_for(data_path),
    )
    assert read_archive(data_path)[1] == events  # the file itself is sound
    with pytest.raises(RecordAltered, match="holds no archive receipt"):
        await verify_archive(store, data_path)


async def test_the_log_refuses_deletes_outside_the_archive_path(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    with pytest.raises(AppendOnlyViolation, match="append-only"):
        async with store.backend.begin_write() as connection:
            await connection.execute(
                sa.delete(execution_events).where(
                    execution_events.c.stream_id == execution_id
                )
            )
    assert len(await store.executions.history(execution_id)) == 3
    async with store.backend.engine.connect() as connection:
        assert (
            await connection.scalar(sa.select(sa.func.count()).select_from(executions))
            == 0
        )
