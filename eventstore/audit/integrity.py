"""Whole-log integrity: every stream's hash chain recomputed from the stored rows."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from eventstore import chains, errors, hashing
from eventstore.audit.receipts import tombstoned
from eventstore.cache import BoundedCache

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from uuid import UUID

    from eventstore.backends.base import Backend
    from eventstore.backends.rows import RawEventRow, StreamEnd
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
    looked_up: set[UUID] = set()  # streams whose end before the run is known

    async def read_after(
        checkpoint: Checkpoint | None,
    ) -> tuple[list[RawEventRow], dict[UUID, StreamEnd], set[UUID]]:
        rows = await backend.read_rows_as_stored(checkpoint, limit=BATCH, until=until)
        if after is None:
            return rows, {}, set()
        first_versions: dict[UUID, int] = {}
        for row in rows:
            if row.stream_id not in looked_up:
                first_versions.setdefault(row.stream_id, row.version)
        looked_up.update(first_versions)
        if not first_versions:
            return rows, {}, set()
        ends = await backend.stream_ends(list(first_versions), after)
        # A stream that went on from before the cut but has no end there:
        # events removed behind the archive's back (a break), or by an
        # archive that committed after these rows were read.
        missing = [s for s, v in first_versions.items() if v > 1 and s not in ends]
        return rows, ends, await tombstoned(backend, missing) if missing else set()

    reading = asyncio.ensure_future(read_after(after))
    try:
        while True:
            rows, ends, archived = await reading
            if not rows:
                break
            reading = asyncio.ensure_future(read_after(rows[-1].checkpoint))
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
        self._heads: dict[UUID, tuple[int, bytes, int, datetime]] = {}
        self._broken: set[UUID] = set()
        self._begun_before: set[UUID] = set()  # counted by an earlier run
        self._unchecked: set[UUID] = set()  # archived while this run read them
        # Events of one request share their metadata text: encode it once.
        self._metadata: BoundedCache[str, bytes] = BoundedCache(METADATA_TEXTS)

    def begun_before(self, ends: dict[UUID, StreamEnd]) -> None:
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
                        stream_id=stream_id,
                        position=end.position if type(end.position) is int else None,
                        reason="the event before this run is malformed: "
                        f"version {end.version!r}, hash of type {type(end.hash).__name__}",
                    )
                )

    def archived_meanwhile(self, stream_ids: set[UUID]) -> None:
        """Streams that began before this run and were archived while it read them.

        Their events before the run are gone, so their rows here cannot be
        chained to them: they are counted, not checked. The archive checked
        each chain before removing it, and `verify` checks its receipts
        against the tombstones.
        """
        self._unchecked |= stream_ids
        self._begun_before |= stream_ids

    def check(self, rows: Sequence[RawEventRow]) -> None:
        """Check rows that follow the ones checked before, in global order."""
        report, heads, broken = self.report, self._heads, self._broken
        unchecked = self._unchecked
        for row in rows:
            report.events += 1
            if row.stream_id in broken or row.stream_id in unchecked:
                continue
            version, previous, position, recorded_at = heads.get(
                row.stream_id, _GENESIS
            )
            if row.version != version + 1:
                self._break(row, chains.unexpected_version(row.version, version + 1))
                continue
            if row.position < position:  # in transaction order, not position order
                self._break(row, chains.out_of_order(row.version))
                continue
            try:
                computed = self._hash(previous, row)
            except errors.EventStoreError as exc:  # a stored text that is not JSON
                self._break(row, f"version {row.version} is not canonical JSON: {exc}")
                continue
            if computed != row.hash:
                self._break(row, chains.content_changed(row.version))
                continue
            if row.recorded_at < recorded_at:  # stamped by the database: backdated
                self._break(row, chains.recorded_before(row.version))
                continue
            heads[row.stream_id] = (
                row.version,
                row.hash,
                row.position,
                row.recorded_at,
            )

    def finish(self) -> LogReport:
        """The report, with the number of streams seen."""
        seen = self._heads.keys() | self._broken
        self.report.streams = len(seen - self._begun_before)
        return self.report

    def _hash(self, previous: bytes, row: RawEventRow) -> bytes:
        metadata = self._metadata.get(row.metadata)
        if metadata is None:
            metadata = hashing.canonical_bytes(row.metadata)
            self._metadata.put(row.metadata, metadata)
        canonical = hashing.canonical_event_bytes(
            stream_id=row.stream_id,
            version=row.version,
            event_id=row.event_id,
            event_type=row.type,
            schema_version=row.schema_version,
            data_json=hashing.canonical_bytes(row.data),
            metadata_json=metadata,
            occurred_at=row.occurred_at,
        )
        return hashlib.sha256(previous + canonical).digest()

    def _break(self, row: RawEventRow, reason: str) -> None:
        self._broken.add(row.stream_id)
        if len(self.report.problems) < MAX_PROBLEMS:
            self.report.problems.append(
                errors.RecordAltered(
                    stream_id=row.stream_id, position=row.position, reason=reason
                )
            )
