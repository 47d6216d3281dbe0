"""Whole-log integrity: every stream's hash chain recomputed from the stored rows."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final
from uuid import UUID

from eventstore import chains, errors, hashing
from eventstore.audit.receipts import tombstoned
from eventstore.backends.rows import raw_checkpoint

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventstore.backends.base import Backend
    from eventstore.backends.rows import RawRow, StreamEnd
    from eventstore.events.checkpoint import Checkpoint

BATCH: Final = 5000
MAX_PROBLEMS: Final = 100
_CHUNK: Final = 500  # rows checked between two turns of the event loop
METADATA_TEXTS: Final = 10_000  # canonical metadata remembered across batches
_GENESIS: Final = (0, hashing.GENESIS_HASH, 0, datetime.min.replace(tzinfo=UTC))
# How long verify waits for the transactions in flight when it starts (any
# session of the cluster) to end, so it reads every event committed before
# it; then it verifies what it can read and says so.
HORIZON_WAIT: Final = 30.0
logger: Final = logging.getLogger(__name__)


@dataclass
class LogReport:
    """What `verify_log` read and found (at most the first problem of each stream)."""

    events: int = 0
    streams: int = 0
    problems: list[errors.RecordAltered] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every chain verified."""
        return not self.problems


async def verify_log(
    backend: Backend, *, on_batch: Callable[[int], None] | None = None
) -> LogReport:
    """Recompute every stream's hash chain, reading the log once in global order.

    Global order keeps each stream's versions in order (an append only sees
    committed heads), so one pass with a head per stream is enough. Rows are
    checked as stored (no models), and the next batch is read while this
    one is checked.

    Args:
        backend: the store's backend.
        on_batch: called with the events verified so far, after each batch.

    Returns:
        The counts and the first break of each broken stream (at most 100).
    """
    await backend.ensure_schema()
    await reads_see_what_committed_before(backend)
    return await verify_run(backend, on_batch=on_batch)


async def verify_run(
    backend: Backend,
    *,
    after: Checkpoint | None = None,
    until: Checkpoint | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> LogReport:
    """Verify the events after `after` up to `until` (inclusive), one run of the log.

    `verify_processes` gives each process one run of `log_splits`. A
    stream that began before the run chains its first event here to its
    last event there (`stream_ends`), so every link is checked once, by
    one run, and the streams are counted by the run they begin in.
    """
    await backend.ensure_schema()
    chains = _Chains()
    looked_up: set[str] = set()  # streams whose end before the run is known

    async def read_after(
        checkpoint: Checkpoint | None,
    ) -> tuple[Sequence[RawRow], dict[str, StreamEnd], set[str]]:
        rows = await backend.read_rows_as_stored(checkpoint, limit=BATCH, until=until)
        if after is None:
            return rows, {}, set()
        first_versions: dict[str, int] = {}
        for row in rows:
            stream_id = row[1]  # RawEventRow's order
            if stream_id not in looked_up:
                first_versions.setdefault(stream_id, row[2])
        looked_up.update(first_versions)
        if not first_versions:
            return rows, {}, set()
        stream_ids = [UUID(stream_id) for stream_id in first_versions]
        ends = {
            str(stream_id): end
            for stream_id, end in (await backend.stream_ends(stream_ids, after)).items()
        }
        # A stream that went on from before the cut but has no end there:
        # events removed behind the archive's back (a break), or by an
        # archive that committed after these rows were read.
        missing = [
            UUID(stream_id)
            for stream_id, version in first_versions.items()
            if version > 1 and stream_id not in ends
        ]
        archived = await tombstoned(backend, missing) if missing else set()
        return rows, ends, {str(stream_id) for stream_id in archived}

    reading = asyncio.ensure_future(read_after(after))
    try:
        while True:
            rows, ends, archived = await reading
            if not rows:
                break
            reading = asyncio.ensure_future(read_after(raw_checkpoint(rows[-1])))
            chains.begun_before(ends)
            chains.archived_meanwhile(archived)
            for start in range(0, len(rows), _CHUNK):
                chains.check(rows[start : start + _CHUNK])
                await asyncio.sleep(0)  # let the next batch's rows come in
            if on_batch is not None:
                on_batch(chains.report.events)
    finally:
        reading.cancel()
        # Not awaited itself: the caller's own cancellation must reach it.
        await asyncio.wait([reading])
        if not reading.cancelled():
            reading.exception()  # retrieved: the error raised is the first one
    return chains.finish()


def _well_typed(end: StreamEnd) -> bool:
    return (
        type(end.version) is int
        and type(end.hash) is bytes
        and type(end.position) is int
        and isinstance(end.recorded_at, datetime)
    )


async def reads_see_what_committed_before(backend: Backend) -> None:
    """Wait until gap-safe reads see every event committed before now.

    They stay below the transaction horizon, which any transaction still
    running anywhere in the cluster holds back: without this wait, events
    appended just before verify could go unread, and unverified.
    """
    mark = await backend.horizon_mark()
    deadline = time.monotonic() + HORIZON_WAIT
    delay = 0.01
    while not await backend.horizon_reached(mark):
        if time.monotonic() > deadline:
            logger.warning(
                "verify: a transaction has run for over %.0f s; events of "
                "transactions still in flight are left for the next verify",
                HORIZON_WAIT,
            )
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


class _Chains:
    """The head of every stream seen so far, and what broke."""

    def __init__(self) -> None:
        self.report = LogReport()
        # version, hash, position, recorded_at of each stream's head
        # Streams by their ids' text, as the rows hold them (RawEventRow).
        self._heads: dict[str, tuple[int, bytes, int, datetime]] = {}
        self._broken: set[str] = set()
        self._begun_before: set[str] = set()  # counted by an earlier run
        self._unchecked: set[str] = set()  # archived while this run read them
        # Events of one request share their metadata text: encode it once.
        self._metadata: dict[str, bytes] = {}

    def begun_before(self, ends: dict[str, StreamEnd]) -> None:
        """Streams that began before this run: their next event chains to these."""
        for stream_id, end in ends.items():
            self._begun_before.add(stream_id)
            if _well_typed(end):
                self._heads[stream_id] = end
                continue
            # Tampered with (SQLite keeps any type in any column): the run
            # before this one reports that event; nothing here chains to it.
            self._broken.add(stream_id)
            if len(self.report.problems) < MAX_PROBLEMS:
                self.report.problems.append(
                    errors.RecordAltered(
                        stream_id=UUID(stream_id),
                        position=end.position if type(end.position) is int else None,
                        reason="the event before this run is malformed: "
                        f"version {end.version!r}, hash of type {type(end.hash).__name__}",
                    )
                )

    def archived_meanwhile(self, stream_ids: set[str]) -> None:
        """Streams that began before this run and were archived while it read them.

        Their events before the run are gone, so their rows here cannot be
        chained to them: they are counted, not checked. The archive checked
        each chain before removing it, and `verify` checks its receipts
        against the tombstones.
        """
        self._unchecked |= stream_ids
        self._begun_before |= stream_ids

    def check(self, rows: Sequence[RawRow]) -> None:
        """Check rows that follow the ones checked before, in global order."""
        # The hot loop of verify: fields unpacked once, lookups held in locals.
        report, heads, broken = self.report, self._heads, self._broken
        unchecked, known_metadata = self._unchecked, self._metadata
        report.events += len(rows)
        for row in rows:
            (
                position,
                stream_id,
                version,
                event_id,
                event_type,
                schema_version,
                data,
                metadata,
                occurred_at,
                recorded_at,
                stored_hash,
                _,
                _,
            ) = row
            if stream_id in broken or stream_id in unchecked:
                continue
            last_version, previous, last_position, last_recorded_at = heads.get(
                stream_id, _GENESIS
            )
            if version != last_version + 1:
                reason = chains.unexpected_version(version, last_version + 1)
            elif position < last_position:  # transaction order, not position order
                reason = chains.out_of_order(version)
            else:
                try:
                    canonical = hashing.canonical_event_bytes(
                        stream_id=stream_id,
                        version=version,
                        event_id=event_id,
                        event_type=event_type,
                        schema_version=schema_version,
                        data_json=hashing.canonical_bytes(data),
                        metadata_json=known_metadata.get(metadata)
                        or self._canonical_metadata(metadata),
                        occurred_at=occurred_at,
                    )
                except errors.EventStoreError as exc:  # a stored text that is not JSON
                    reason = f"version {version} is not canonical JSON: {exc}"
                else:
                    if hashlib.sha256(previous + canonical).digest() != stored_hash:
                        reason = chains.content_changed(version)
                    elif recorded_at < last_recorded_at:  # the database stamps it
                        reason = chains.recorded_before(version)
                    else:
                        heads[stream_id] = (version, stored_hash, position, recorded_at)
                        continue
            self._break(stream_id, position, reason)

    def finish(self) -> LogReport:
        """The report, with the number of streams seen."""
        seen = self._heads.keys() | self._broken
        self.report.streams = len(seen - self._begun_before)
        return self.report

    def _canonical_metadata(self, stored: str) -> bytes:
        canonical = hashing.canonical_bytes(stored)
        if len(self._metadata) >= METADATA_TEXTS:
            # Not least recently used: a request's events come close together.
            self._metadata.clear()
        self._metadata[stored] = canonical
        return canonical

    def _break(self, stream_id: str, position: int, reason: str) -> None:
        self._broken.add(stream_id)
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(
                errors.RecordAltered(
                    stream_id=UUID(stream_id), position=position, reason=reason
                )
            )
