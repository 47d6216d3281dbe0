"""Audit: replay any moment, verify the record, anchor it, archive what is finished.

`store.audit` (an `Audit`) is the one door to all of it, so a program can do
whatever `eventstore audit`, `verify`, `anchor` and `cleanup --archive-before`
do (docs/AUDIT.md). The modules beside this one hold the parts:

- `replay`: timelines and states as of a moment, the store-wide "as of";
- `integrity`: every hash chain of the log recomputed; `receipts`, `anchors`;
- `archiving`, `archive_reading`, `archive_files`, `exporting`: the archive
  and its files;
- `reports`: the HTML timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from eventstore import chains, errors
from eventstore.audit.anchors import (
    AnchorReport,
    create_anchor,
    verify_anchors,
)
from eventstore.audit.archive_reading import VerifiedArchive, verify_archive
from eventstore.audit.archiving import ArchiveResult, archive_finished_before
from eventstore.audit.exporting import event_line
from eventstore.audit.integrity import LogReport
from eventstore.audit.replay import (
    AsOf,
    StatusAt,
    prefix_as_of,
    state_as_of,
    statuses_as_of,
    verify_stream,
)
from eventstore.audit.reports import render_timeline
from eventstore.audit.verify_processes import (
    PROCESSES_LIMIT as VERIFY_PROCESSES_LIMIT,
)
from eventstore.audit.verify_processes import processes_for, verify_log_in_processes
from eventstore.audit.verify_runs import VerifyRun, last_verify_run, record_verify_run
from eventstore.execution_states import is_execution_stream
from eventstore.fold import fold_events
from eventstore.labels import describe_change as describe_labels
from eventstore.log import as_stream_id, upcast_event

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime
    from pathlib import Path
    from uuid import UUID

    from eventstore.audit.parts import AuditedStore
    from eventstore.events.envelope import RecordedEvent
    from eventstore.events.system_payloads import ChainAnchor
    from eventstore.fold import ExecutionState

__all__ = [
    "VERIFY_PROCESSES_LIMIT",
    "AnchorReport",
    "ArchiveResult",
    "AsOf",
    "Audit",
    "LogReport",
    "StatusAt",
    "Timeline",
    "VerifiedArchive",
    "VerifyRun",
    "describe_labels",
    "event_line",
    "is_execution_stream",
    "prefix_as_of",
    "render_timeline",
    "state_as_of",
    "statuses_as_of",
    "verify_stream",
]


@dataclass(frozen=True)
class Timeline:
    """One stream's events as of a moment, and the state they fold to.

    Attributes:
        stream_id: the stream.
        events: the events, upcast as every reader sees them, up to the moment.
        stored: the same events as stored (what the hash chain covers), when
            asked for; empty otherwise.
        state: the execution's state; None for a system stream (receipts,
            anchors), which has a timeline but no state.
        moment: the moment asked for; None: now.
    """

    stream_id: UUID
    events: list[RecordedEvent]
    state: ExecutionState | None
    stored: list[RecordedEvent] = field(default_factory=list)
    moment: AsOf | None = None

    def verify_chain(self) -> bytes:
        """Verify the hash chain of `stored`, without reading the stream again.

        Returns:
            The head: the hash of the last stored event.

        Raises:
            RecordAltered: the chain is broken.
            ValueError: the timeline was read without `stored=True`.
        """
        if not self.stored:
            raise ValueError("no stored events to verify: read with stored=True")
        return chains.verify_chain(self.stored)


class Audit:
    """Everything the audit can do with one store (`store.audit`)."""

    def __init__(self, store: AuditedStore) -> None:
        self._store = store

    async def timeline(
        self,
        stream_id: UUID | str,
        *,
        as_of: AsOf | None = None,
        stored: bool = False,
    ) -> Timeline:
        """One stream's timeline and state, now or as of a moment.

        Raises:
            ExecutionNotFound: the stream has no events.
        """
        stream = as_stream_id(stream_id)
        if not stored:
            events = await self._store.executions.history(stream)
            return _timeline(stream, events, [], as_of)
        # One read: the stored events, upcast here as the log would.
        backend = self._store.backend
        await backend.ensure_schema()
        as_stored = await backend.read_stream_as_stored(stream)  # in version order
        if not as_stored:
            raise errors.ExecutionNotFound(execution_id=stream)
        events = [upcast_event(event) for event in as_stored]
        return _timeline(stream, events, as_stored, as_of)

    async def statuses_as_of(self, moment: AsOf | None = None) -> list[StatusAt]:
        """Which executions were in which status at `moment` (None: now)."""
        return await statuses_as_of(self._store.backend, moment)

    async def verify_stream(self, stream_id: UUID | str) -> bytes:
        """Verify one stream's hash chain; returns its head.

        Raises:
            ExecutionNotFound: the stream has no events.
            RecordAltered: the chain is broken.
        """
        return await verify_stream(self._store.backend, stream_id)

    async def verify_log(
        self,
        *,
        processes: int | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> LogReport:
        """Recompute every stream's hash chain.

        Args:
            processes: how many processes share the work, each verifying
                one run of the log; None: one per core (up to 8)
                once the log holds 300,000 events, else one. Others than
                this one are spawned: a script must run under
                ``if __name__ == "__main__":``.
            on_batch: called now and then with the events verified so far.

        Raises:
            ValidationError: `processes` is not from 1 to 64.
        """
        backend = self._store.backend
        if processes is None:
            processes = await processes_for(backend)
        return await verify_log_in_processes(
            backend, self._store.settings, processes=processes, on_batch=on_batch
        )

    async def record_verify_run(self, run: VerifyRun) -> None:
        """Keep what a verification found, for `last_verify_run` (the console's /system)."""
        await record_verify_run(self._store.backend, run)

    async def last_verify_run(self) -> VerifyRun | None:
        """The newest recorded verification; None when none was recorded."""
        return await last_verify_run(self._store.backend)

    async def anchor(self, *, key: bytes | None = None) -> ChainAnchor:
        """Record a chain anchor: a digest over every stream's head, signed with `key`."""
        return await create_anchor(self._store, key=key)

    async def verify_anchors(self, *, key: bytes | None = None) -> AnchorReport:
        """Check every anchor against the log (and its signature, given `key`)."""
        return await verify_anchors(self._store.backend, key=key)

    async def archive(
        self, *, finished_before: datetime, directory: Path
    ) -> ArchiveResult | None:
        """Export the executions finished before a time, then remove them with a receipt.

        None when nothing finished before that time.
        """
        return await archive_finished_before(self._store, finished_before, directory)

    async def verify_archive(self, path: Path) -> VerifiedArchive:
        """Check an archive file against its manifest and its receipt in the log."""
        return await verify_archive(self._store, path)

    async def archived_timeline(
        self, path: Path, stream_id: UUID | str, *, as_of: AsOf | None = None
    ) -> tuple[VerifiedArchive, Timeline]:
        """One archived execution's timeline, from its verified archive file.

        Raises:
            ExecutionNotFound: the archive does not hold that execution.
        """
        verified = await self.verify_archive(path)
        stream = as_stream_id(stream_id)
        events = verified.history(stream)
        stored = sorted(
            (e for e in verified.events if e.stream_id == stream),
            key=lambda e: e.version,
        )
        return verified, _timeline(stream, events, stored, as_of)


def _timeline(
    stream: UUID,
    events: list[RecordedEvent],
    stored: list[RecordedEvent],
    as_of: AsOf | None,
) -> Timeline:
    """The timeline of a stream's events (upcast) and stored events, cut at `as_of`."""
    if as_of is not None:
        events = prefix_as_of(events, as_of)
        stored = prefix_as_of(stored, as_of)
    return Timeline(
        stream_id=stream,
        events=events,
        state=fold_events(events) if is_execution_stream(events) else None,
        stored=stored,
        moment=as_of,
    )
