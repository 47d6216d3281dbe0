"""The rows the backends hand to the core: appends decided, events as stored, statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from eventstore.events.checkpoint import Checkpoint

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime
    from uuid import UUID


@dataclass(frozen=True, slots=True)
class LastStatusChange:
    """The last status-changing event of one execution stream (as of a moment)."""

    stream_id: UUID
    type: str
    version: int
    position: int
    occurred_at: datetime
    recorded_at: datetime


class StreamEnd(NamedTuple):
    """A stream's last event before a place in the log: what its next event chains to."""

    version: int
    hash: bytes
    position: int
    recorded_at: datetime


class RawEventRow(NamedTuple):
    """One row of the log as stored, its JSON texts unparsed: what the chain covers.

    Whole-log verification reads these instead of `RecordedEvent`: it needs
    no model, and a metadata text shared by many events is encoded once.
    SQLite's backend returns these; PostgreSQL's returns its records, whose
    columns come in this order (`RawRow`).
    """

    position: int
    stream_id: str  # ids as the chain hashes them: lowercase, hyphenated
    version: int
    event_id: str
    type: str
    schema_version: int
    data: str
    metadata: str
    occurred_at: str  # the chain's text of it: `hashing.format_occurred_at`
    recorded_at: datetime
    hash: bytes
    transaction_id: int
    epoch: int

    @property
    def checkpoint(self) -> Checkpoint:
        """Where a read resumes after this row."""
        return raw_checkpoint(self)


class RawRow(Protocol):
    """A row of the log as stored: `RawEventRow`'s fields in its order, by index.

    What `read_rows_as_stored` returns: a `RawEventRow` from SQLite, and
    asyncpg's own record from PostgreSQL, used as it comes (a named tuple
    per row would cost verify a tenth of its time). `verify` unpacks it;
    `RawEventRow._make(row)` names its fields.
    """

    def __getitem__(self, index: int, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


def raw_checkpoint(row: RawRow) -> Checkpoint:
    """Where a read resumes after `row`: its epoch, transaction id and position."""
    return Checkpoint.of(epoch=row[12], transaction_id=row[11], position=row[0])


@dataclass(frozen=True, slots=True)
class AppendDecision:
    """What the database did with an append.

    Attributes:
        kind: ``appended``; ``duplicate`` (every event id was recorded before,
            with the same content: versions and positions are the originals);
            ``version_conflict`` (``actual`` holds the stream's version);
            ``id_conflict`` (an event id is recorded with other content or in
            another stream: ``event_id`` and ``reason`` say which and how).
    """

    kind: Literal["appended", "duplicate", "version_conflict", "id_conflict"]
    versions: tuple[int, ...] = ()
    positions: tuple[int, ...] = ()
    actual: int = 0
    event_id: UUID | None = None
    reason: str = ""
