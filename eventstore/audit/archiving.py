"""The archive path: export finished executions, then remove them with a receipt.

1. Choose the executions whose terminal event occurred before the cutoff
   (one scan of the status-history index).
2. Export their events, as stored, to ``DIR/NAME.jsonl.gz`` with a manifest,
   and read the file back: its digest, every chain, every count.
3. In one transaction: check that every projection has folded past them
   (so no projector batch in flight can write their rows back), open the
   immutability trigger with the guard row, delete their events, close it,
   delete their projection rows and leases, and append an `ArchiveReceipt`
   to the receipts system stream. The delete must remove exactly the
   exported events, or the transaction rolls back.

Nothing is removed if any step fails, and the files of a failed archive are
deleted again (ARCHITECTURE §6).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from eventstore import chains, errors
from eventstore.audit.archive_files import (
    DATA_SUFFIX,
    ArchivedStream,
    ArchiveManifest,
    file_sha256,
    manifest_path_for,
    read_archive,
    write_events,
    write_manifest,
)
from eventstore.events.checkpoint import Checkpoint
from eventstore.events.envelope import NewEvent
from eventstore.events.system_payloads import (
    ARCHIVE_RECEIPTS_STREAM,
    ArchiveReceipt,
    StreamHead,
)
from eventstore.schema import (
    SHADOW_CHECKPOINT_SUFFIX,
    archived_streams,
    execution_events,
    execution_events_archive_guard,
    execution_leases,
    executions,
    projection_checkpoints,
)
from eventstore.status import RESULTING_STATUS
from eventstore.times import as_utc

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.audit.parts import AuditedStore
    from eventstore.backends.base import Backend
    from eventstore.events.envelope import RecordedEvent

ARCHIVIST: Final = "archivist"
_ID_CHUNK: Final = 500  # ids per IN (...) list: well under SQLite's variable limit


@dataclass(frozen=True)
class ArchiveResult:
    """What an archive run wrote and removed."""

    data_path: Path
    manifest_path: Path
    manifest: ArchiveManifest
    receipt_position: int


async def archive_finished_before(
    store: AuditedStore, finished_before: datetime, directory: Path
) -> ArchiveResult | None:
    """Archive every execution that finished before `finished_before` into `directory`.

    Returns:
        What was archived, or None when no execution qualified.

    Raises:
        ValidationError: `finished_before` has no offset, or `directory` is
            not a writable directory.
        ArchiveError: a projection has not folded the executions yet, or the
            log changed during the run: nothing was removed.
        RecordAltered: a chain to archive, or the written file, does not
            verify: nothing was removed.
    """
    finished_before = as_utc(finished_before, "archive cutoff")
    if not directory.is_dir():  # noqa: ASYNC240 - one stat, before any I/O
        raise errors.ValidationError(f"no directory at {directory}")
    backend = store.backend
    await backend.ensure_schema()
    chosen = sorted(
        status.stream_id
        for status in await backend.status_events()
        if _is_terminal(status.type) and status.occurred_at < finished_before
    )
    if not chosen:
        return None
    events = await backend.read_streams_as_stored(chosen)
    if not events:
        return None  # a concurrent archive removed them between the two reads
    chosen = sorted({event.stream_id for event in events})
    manifest = _manifest_for(events, finished_before, directory)
    data_path = directory / manifest.file
    manifest_path = manifest_path_for(data_path)
    try:
        # File work runs in a thread: an archive can be large, and the
        # caller's event loop keeps serving meanwhile.
        manifest = await asyncio.to_thread(
            _write, data_path, manifest_path, events, manifest
        )
        receipt_position = await _remove(store, manifest, manifest_path, events)
    except BaseException:
        # Take the files back only when the log surely holds no receipt: a
        # commit whose outcome was lost may have removed the events.
        if not await _maybe_recorded(store, data_path):
            for path in (data_path, manifest_path):
                path.unlink(missing_ok=True)
        raise
    store.forget_streams(chosen)
    return ArchiveResult(
        data_path=data_path,
        manifest_path=manifest_path,
        manifest=manifest,
        receipt_position=receipt_position,
    )


async def _maybe_recorded(store: AuditedStore, data_path: Path) -> bool:
    """Whether a receipt for the file may be in the log (True when unsure)."""
    try:
        digest = file_sha256(data_path)
        receipts = await store.backend.read_stream_as_stored(ARCHIVE_RECEIPTS_STREAM)
    except FileNotFoundError:
        return False  # nothing was written, so nothing was removed
    except Exception:  # unsure: keep the files
        return True
    return any(receipt.data.get("file_sha256") == digest for receipt in receipts)


def _is_terminal(event_type: str) -> bool:
    status = RESULTING_STATUS.get(event_type)
    return status is not None and status.is_terminal


def _manifest_for(
    events: Sequence[RecordedEvent], finished_before: datetime, directory: Path
) -> ArchiveManifest:
    """The manifest of `events` (its file digest filled in after writing)."""
    by_stream: dict[UUID, list[RecordedEvent]] = {}
    for event in events:
        by_stream.setdefault(event.stream_id, []).append(event)
    streams = []
    for stream_id, stream_events in sorted(by_stream.items()):
        stream_events.sort(key=lambda e: e.version)
        head = chains.verify_chain(stream_events)  # never archive a broken chain
        streams.append(
            ArchivedStream(
                stream_id=stream_id,
                events=len(stream_events),
                head_version=stream_events[-1].version,
                head_hash=head.hex(),
            )
        )
    created_at = datetime.now(UTC)
    name = (
        f"archive-{finished_before.astimezone(UTC):%Y%m%dT%H%M%SZ}"
        f"-{created_at:%Y%m%dT%H%M%S%fZ}"
    )
    _check_writable(directory)
    return ArchiveManifest(
        file=name + DATA_SUFFIX,
        file_sha256="0" * 64,
        created_at=created_at,
        finished_before=finished_before.astimezone(UTC),
        events=len(events),
        streams=streams,
    )


def _check_writable(directory: Path) -> None:
    probe = directory / ".eventstore-write-probe"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise errors.ValidationError(
            f"cannot write to {directory}: {exc.strerror or exc}"
        ) from exc


def _write(
    data_path: Path,
    manifest_path: Path,
    events: Sequence[RecordedEvent],
    manifest: ArchiveManifest,
) -> ArchiveManifest:
    """Write the file and its manifest, then prove them by reading them back."""
    write_events(data_path, events)
    written = manifest.model_copy(update={"file_sha256": file_sha256(data_path)})
    write_manifest(written, manifest_path)
    read_archive(data_path)
    return written


async def _remove(
    store: AuditedStore,
    written: ArchiveManifest,
    manifest_path: Path,
    events: Sequence[RecordedEvent],
) -> int:
    """Remove the archived streams and append the receipt, in one transaction."""
    stream_ids = [stream.stream_id for stream in written.streams]
    newest = max(event.checkpoint for event in events)
    receipt = ArchiveReceipt(
        file=written.file,
        file_sha256=written.file_sha256,
        manifest_sha256=file_sha256(manifest_path),
        finished_before=written.finished_before,
        events=written.events,
        streams=[
            StreamHead(
                stream_id=stream.stream_id,
                version=stream.head_version,
                hash=stream.head_hash,
            )
            for stream in written.streams
        ],
    )
    guard = execution_events_archive_guard
    async with store.backend.begin_write() as connection:
        await store.backend.exclude_appends(connection)
        await _check_projections_folded(connection, newest)
        # The guard row opens the log to this transaction's deletes and to
        # the receipt, the one system-stream row it writes (migration 0006).
        await connection.execute(sa.insert(guard).values(id=1, reason=written.file))
        removed = await _delete_events(connection, stream_ids)
        if removed != written.events:
            raise errors.ArchiveError(
                f"the log changed while archiving: {removed} events matched where "
                f"{written.events} were exported; nothing was removed"
            )
        for table, column in (
            (executions, executions.c.id),
            (execution_leases, execution_leases.c.execution_id),
        ):
            for chunk in _chunks(stream_ids):
                await connection.execute(sa.delete(table).where(column.in_(chunk)))
        await connection.execute(
            sa.insert(archived_streams),
            [
                {
                    "stream_id": stream.stream_id,
                    "version": stream.head_version,
                    "hash": bytes.fromhex(stream.head_hash),
                    "archive_file": written.file,
                }
                for stream in written.streams
            ],
        )
        position = await _append_receipt(store.backend, connection, receipt)
        await connection.execute(sa.delete(guard))
        return position


async def _check_projections_folded(
    connection: AsyncConnection, newest: Checkpoint
) -> None:
    """Refuse while a projection has not folded the archived events.

    The checkpoint rows stay locked until the archive commits, so no
    projector commits a batch (which could write an archived row back) in
    between. They are locked in key order, as a rebuild's swap and a
    starting projector lock them (docs/PROJECTIONS.md, "Lock order").
    """
    rows = await connection.execute(
        sa.select(
            projection_checkpoints.c.name,
            projection_checkpoints.c.partition,
            projection_checkpoints.c.transaction_id,
            projection_checkpoints.c.position,
        )
        .order_by(projection_checkpoints.c.name, projection_checkpoints.c.partition)
        .with_for_update()
    )
    for name, partition, transaction_id, position in rows:
        if Checkpoint.stored(transaction_id, position) < newest:
            if name.endswith(SHADOW_CHECKPOINT_SUFFIX):
                raise errors.ArchiveError(
                    f"a rebuild of {name.removesuffix(SHADOW_CHECKPOINT_SUFFIX)} is unfinished "
                    f"and has not folded position {newest.position}: finish it with "
                    "`eventstore rebuild` first; nothing was removed"
                )
            raise errors.ArchiveError(
                f"projection {name} (partition {partition}) has not folded position "
                f"{newest.position} yet: run `eventstore project --until-caught-up` "
                "first; nothing was removed"
            )


async def _delete_events(
    connection: AsyncConnection, stream_ids: Sequence[UUID]
) -> int:
    """Delete the streams' events (the guard row is in place); how many went."""
    removed = 0
    for chunk in _chunks(stream_ids):
        result = await connection.execute(
            sa.delete(execution_events).where(execution_events.c.stream_id.in_(chunk))
        )
        removed += result.rowcount
    return removed


async def _append_receipt(
    backend: Backend, connection: AsyncConnection, receipt: ArchiveReceipt
) -> int:
    """Append the receipt to its system stream inside the archive's transaction.

    Through the log's own append, decided in the database; a concurrent
    archive that took the same version is refused by the unique key,
    rolling back all.
    """
    event = NewEvent.of(receipt, metadata={"actor": ARCHIVIST})
    decision = await backend.append_in(
        connection,
        ARCHIVE_RECEIPTS_STREAM,
        [event],
        stream_type="system",
        expected_version=None,
    )
    if decision.kind != "appended":
        raise errors.ArchiveError(
            f"the receipt could not be recorded ({decision.kind}: "
            f"{decision.reason or decision.actual}); nothing was removed"
        )
    position: int = decision.positions[0]
    return position


def _chunks(ids: Sequence[UUID]) -> list[Sequence[UUID]]:
    return [ids[start : start + _ID_CHUNK] for start in range(0, len(ids), _ID_CHUNK)]
