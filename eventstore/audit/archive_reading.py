"""Reading an archive back: the file checked against its manifest and its receipt."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore import errors
from eventstore.audit.archive_files import (
    data_path_for,
    file_sha256,
    manifest_path_for,
    read_archive,
)
from eventstore.audit.receipts import receipt_problem, tombstones
from eventstore.events.system_payloads import (
    ARCHIVE_RECEIPTS_STREAM,
    ArchiveReceipt,
    StreamHead,
)
from eventstore.fold import fold_events
from eventstore.log import upcast_event

if TYPE_CHECKING:
    from pathlib import Path
    from uuid import UUID

    from eventstore.audit.archive_files import ArchiveManifest
    from eventstore.audit.parts import AuditedStore
    from eventstore.events.envelope import RecordedEvent
    from eventstore.fold import ExecutionState


@dataclass(frozen=True)
class VerifiedArchive:
    """An archive file that matched its manifest and its receipt in the log."""

    manifest: ArchiveManifest
    events: list[RecordedEvent]
    receipt_position: int

    def history(self, execution_id: UUID) -> list[RecordedEvent]:
        """One archived execution's events, upcast as every reader sees them.

        Raises:
            ExecutionNotFound: the archive does not hold that execution.
        """
        events = [
            upcast_event(event)
            for event in self.events
            if event.stream_id == execution_id
        ]
        if not events:
            raise errors.ExecutionNotFound(execution_id=execution_id)
        return sorted(events, key=lambda event: event.version)

    def states(self) -> dict[UUID, ExecutionState]:
        """Every archived execution's final state, folded from the file."""
        streams: dict[UUID, list[RecordedEvent]] = {}
        for event in sorted(self.events, key=lambda event: event.position):
            streams.setdefault(event.stream_id, []).append(upcast_event(event))
        states = {}
        for stream_id, events in streams.items():
            state = fold_events(events)
            if state is not None:
                states[stream_id] = state
        return states


async def verify_archive(store: AuditedStore, path: Path) -> VerifiedArchive:
    """Check an archive file against its manifest and its receipt in the log.

    Raises:
        ValidationError: the file does not exist.
        RecordAltered: the file, its manifest and the receipt disagree, or
            the log holds no receipt for it.
    """
    manifest, events = await asyncio.to_thread(read_archive, path)
    manifest_digest = file_sha256(manifest_path_for(data_path_for(path)))
    await store.backend.ensure_schema()
    for recorded in await store.backend.read_stream_as_stored(ARCHIVE_RECEIPTS_STREAM):
        if recorded.type != ArchiveReceipt.event_type:
            continue
        receipt = ArchiveReceipt.model_validate(recorded.data)
        if receipt.file_sha256 != manifest.file_sha256:
            continue
        heads = [
            StreamHead(stream_id=s.stream_id, version=s.head_version, hash=s.head_hash)
            for s in manifest.streams
        ]
        if receipt.manifest_sha256 != manifest_digest or receipt.streams != heads:
            raise errors.RecordAltered(
                stream_id=ARCHIVE_RECEIPTS_STREAM,
                position=recorded.position,
                reason=f"the receipt for {manifest.file} does not match its manifest",
            )
        forged = receipt_problem(receipt, await tombstones(store.backend))
        if forged is not None:
            raise errors.RecordAltered(
                stream_id=ARCHIVE_RECEIPTS_STREAM,
                position=recorded.position,
                reason=forged,
            )
        return VerifiedArchive(
            manifest=manifest, events=events, receipt_position=recorded.position
        )
    raise errors.RecordAltered(
        stream_id=None,
        position=None,
        reason=f"the log holds no archive receipt for {manifest.file} "
        f"(sha256 {manifest.file_sha256})",
    )
