"""The archive against writers and readers in other stores, and its failure paths.

Each failure must leave the log, the projection and the archive directory as
they were; each race must leave every chain whole.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from eventstore import (
    ArchiveError,
    ConcurrencyError,
    EventStore,
    ExecutionNotFound,
    ExecutionStatus,
    NewEvent,
    RecordAltered,
    StreamArchived,
)
from eventstore.audit import archive_files, archiving
from eventstore.audit.archiving import archive_finished_before
from eventstore.audit.integrity import verify_log
from eventstore.events.system_payloads import ARCHIVE_RECEIPTS_STREAM
from tests.helpers import (
    References,
    append_behind_the_guards,
    count_events,
    execution_in,
    project_everything,
    tamper,
)

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.base import Backend
    from eventstore.events.system_payloads import ArchiveReceipt

# Long enough for an append that is not held back to commit on a loaded machine.
UNBLOCKED_APPEND_SECONDS = 0.5


def _soon() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=1)


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "archives"
    directory.mkdir()
    return directory


async def _finished(store: EventStore, refs: References, count: int = 3) -> list[UUID]:
    finished = [
        await execution_in(store, refs, ExecutionStatus.COMPLETED) for _ in range(count)
    ]
    await project_everything(store)
    return finished


@pytest.mark.parametrize("expected", ["head", "any"])
async def test_an_append_racing_the_removal_never_leaves_an_orphan_event(
    url: str,
    store: EventStore,
    refs: References,
    archive_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    expected: str,
) -> None:
    victim, *_ = await _finished(store, refs)
    head = (await store.executions.get(victim)).version
    late = NewEvent(type="AuditNote", data={"late": True})
    async with EventStore.open(url) as other:
        appended: asyncio.Task[object] | None = None
        landed_before_commit: bool | None = None
        append_receipt = archiving._append_receipt

        async def append_during_removal(
            backend: Backend, connection: AsyncConnection, receipt: ArchiveReceipt
        ) -> int:
            # The streams are deleted but not yet committed: a writer that
            # read the victim's head before must wait, then see it gone.
            nonlocal appended, landed_before_commit
            appended = asyncio.create_task(
                other.append(
                    victim,
                    [late],
                    expected_version=head if expected == "head" else None,
                )
            )
            await asyncio.sleep(UNBLOCKED_APPEND_SECONDS)
            landed_before_commit = appended.done()
            return await append_receipt(backend, connection, receipt)

        monkeypatch.setattr(archiving, "_append_receipt", append_during_removal)
        result = await archive_finished_before(store, _soon(), archive_dir)

        assert result is not None
        assert victim in {stream.stream_id for stream in result.manifest.streams}
        assert landed_before_commit is False
        assert appended is not None
        if expected == "head":
            with pytest.raises(ConcurrencyError):
                await appended
            assert [e async for e in store.read_stream(victim)] == []
        else:
            # Not an orphan at version head + 1, and no fresh stream under the
            # archived id either (its tombstone refuses it).
            with pytest.raises(StreamArchived):
                await appended
            assert [e async for e in store.read_stream(victim)] == []
    report = await verify_log(store.backend)
    assert report.ok, report.problems


async def test_another_store_does_not_serve_an_archived_execution_from_memory(
    url: str, store: EventStore, refs: References, archive_dir: Path
) -> None:
    archived, *_ = await _finished(store, refs)
    async with EventStore.open(url) as other:
        remembered = await other.executions.get(archived)
        assert remembered.status is ExecutionStatus.COMPLETED

        assert await archive_finished_before(store, _soon(), archive_dir) is not None

        with pytest.raises(ExecutionNotFound):
            await other.executions.get(archived)
        with pytest.raises(ExecutionNotFound):
            await other.executions.request_cancel(archived)
        with pytest.raises(ExecutionNotFound):
            await other.executions.wait(archived, timeout=1)


async def test_two_archives_at_once_remove_each_stream_once(
    url: str, store: EventStore, refs: References, tmp_path: Path
) -> None:
    finished = await _finished(store, refs, count=4)
    before = await count_events(store)
    directories = [tmp_path / "first", tmp_path / "second"]
    for directory in directories:
        directory.mkdir()
    async with EventStore.open(url) as other:
        outcomes = await asyncio.gather(
            archive_finished_before(store, _soon(), directories[0]),
            archive_finished_before(other, _soon(), directories[1]),
            return_exceptions=True,
        )
    won = [o for o in outcomes if o is not None and not isinstance(o, BaseException)]
    lost = [o for o in outcomes if o is None or isinstance(o, BaseException)]
    # The loser is refused in its transaction, or finds the streams gone.
    assert len(won) == 1, outcomes
    assert len(lost) == 1
    assert lost[0] is None or isinstance(lost[0], ArchiveError), lost
    assert not isinstance(won[0], BaseException)
    assert {s.stream_id for s in won[0].manifest.streams} == set(finished)
    # The loser took its files back; one receipt; the chains are whole.
    loser_directory = directories[outcomes.index(lost[0])]
    assert list(loser_directory.iterdir()) == []
    receipts = [e async for e in store.read_stream(ARCHIVE_RECEIPTS_STREAM)]
    assert len(receipts) == 1
    removed = sum(stream.events for stream in won[0].manifest.streams)
    assert await count_events(store) == before - removed + 1
    assert (await verify_log(store.backend)).ok


async def test_an_event_appended_after_the_export_refuses_the_removal(
    url: str,
    store: EventStore,
    refs: References,
    archive_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    victim, *_ = await _finished(store, refs)
    write = archiving._write

    def write_then_append(*arguments: object) -> object:
        written = write(*arguments)  # type: ignore[arg-type]
        # The export is on disk; the stream moves on before the removal (no
        # lifecycle event may follow a terminal one: only a writer behind
        # the append trigger could do this).
        asyncio.run_coroutine_threadsafe(
            append_behind_the_guards(
                store, url, victim, [NewEvent(type="AuditNote", data={})]
            ),
            loop,
        ).result()
        return written

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(archiving, "_write", write_then_append)
    before = await count_events(store)

    with pytest.raises(ArchiveError, match="the log changed while archiving"):
        await archive_finished_before(store, _soon(), archive_dir)

    assert await count_events(store) == before + 1  # the late event, nothing removed
    assert [e.type async for e in store.read_stream(victim)][-2:] == [
        "ExecutionCompleted",
        "AuditNote",
    ]
    assert [e async for e in store.read_stream(ARCHIVE_RECEIPTS_STREAM)] == []
    assert list(archive_dir.iterdir()) == []


async def test_a_broken_chain_is_never_archived(
    url: str, store: EventStore, refs: References, archive_dir: Path
) -> None:
    victim, *_ = await _finished(store, refs)
    started = (await store.executions.history(victim))[1]
    before = await count_events(store)
    await tamper(
        url,
        'UPDATE execution_events SET data = \'{"worker_id": "mallory"}\' '
        f"WHERE position = {started.position}",
    )

    with pytest.raises(RecordAltered) as refused:
        await archive_finished_before(store, _soon(), archive_dir)

    assert refused.value.stream_id == victim
    assert refused.value.position == started.position
    assert await count_events(store) == before
    assert list(archive_dir.iterdir()) == []


async def test_a_failed_write_removes_nothing(
    store: EventStore,
    refs: References,
    archive_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _finished(store, refs)
    before = await count_events(store)
    write_events = archive_files.write_events

    def write_then_fail(*arguments: object) -> None:
        write_events(*arguments)  # type: ignore[arg-type]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("eventstore.audit.archiving.write_events", write_then_fail)

    with pytest.raises(OSError, match="No space left"):
        await archive_finished_before(store, _soon(), archive_dir)

    assert await count_events(store) == before
    assert list(archive_dir.iterdir()) == []
