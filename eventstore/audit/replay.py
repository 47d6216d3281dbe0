"""Audit: timelines, the state as of a position or time, hash chain verification."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from eventstore import chains, errors
from eventstore.fold import ExecutionState, fold_events
from eventstore.log import as_stream_id
from eventstore.status import SETS_STATUS, ExecutionStatus
from eventstore.times import as_utc

if TYPE_CHECKING:
    from eventstore.backends.base import Backend
    from eventstore.events.envelope import RecordedEvent

_POSITION: Final = re.compile(r"^\d+$")


class AsOf(BaseModel):
    """A moment of the log: a position, or a time on the database's clock."""

    model_config = ConfigDict(frozen=True)

    position: int | None = None
    time: datetime | None = None

    @classmethod
    def parse(cls, text: str) -> AsOf:
        """A bare integer is a position; an ISO 8601 time with an offset is a time.

        Raises:
            ValidationError: neither, or a time without an offset.
        """
        value = text.strip()
        if _POSITION.match(value):
            return cls(position=int(value))
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            raise errors.ValidationError(
                f"invalid --as-of {text!r}: a position or an ISO 8601 time with offset"
            ) from exc
        if moment.utcoffset() is None:
            raise errors.ValidationError(
                f"invalid --as-of {text!r}: the time needs an offset (e.g. +00:00 or Z)"
            )
        return cls(time=as_utc(moment, f"--as-of {text!r}"))

    def includes(self, event: RecordedEvent) -> bool:
        """Whether the event was in the log at this moment (recorded_at for times).

        Both bounds apply when both are given, as in the store-wide query;
        neither means now.
        """
        if self.position is not None and event.position > self.position:
            return False
        return self.time is None or event.recorded_at <= self.time


def prefix_as_of(events: list[RecordedEvent], moment: AsOf) -> list[RecordedEvent]:
    """The events of one stream that were in the log at `moment` (a prefix)."""
    prefix = []
    for event in events:
        if not moment.includes(event):
            break
        prefix.append(event)
    return prefix


def state_as_of(events: list[RecordedEvent], moment: AsOf) -> ExecutionState | None:
    """The execution's state folded from its events at `moment`; None before it existed."""
    return fold_events(prefix_as_of(events, moment))


async def verify_stream(backend: Backend, stream_id: UUID | str) -> bytes:
    """Verify one stream's hash chain against its stored events.

    Returns:
        The chain head: the hash of the stream's last event.

    Raises:
        ExecutionNotFound: the stream has no events.
        RecordAltered: the chain is broken: names the stream and first bad position.
    """
    stream = as_stream_id(stream_id)
    await backend.ensure_schema()
    events = await backend.read_stream_as_stored(
        stream
    )  # as stored: hashes cover the stored form
    if not events:
        raise errors.ExecutionNotFound(execution_id=stream)
    return chains.verify_chain(events)


class StatusAt(BaseModel):
    """One execution's status at a moment, and since when it held it."""

    model_config = ConfigDict(frozen=True)

    execution_id: UUID
    status: ExecutionStatus
    since: datetime = Field(description="occurred_at of the event that set it")
    version: int = Field(description="the stream version of that event")


async def statuses_as_of(
    backend: Backend, moment: AsOf | None = None
) -> list[StatusAt]:
    """Which executions were in which status at `moment` (None: now), by id.

    One indexed query over the status-changing events, not a replay of every
    stream; it answers for the executions still in the log (archived ones
    are answered by their archive file).
    """
    await backend.ensure_schema()
    moment = moment or AsOf()
    rows = await backend.status_events(position=moment.position, time=moment.time)
    return sorted(
        (
            StatusAt(
                execution_id=row.stream_id,
                status=SETS_STATUS[row.type],
                since=row.occurred_at,
                version=row.version,
            )
            for row in rows
        ),
        key=lambda status: str(status.execution_id),
    )
