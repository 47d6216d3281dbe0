"""The interface of a fold run by the database itself, for a rebuild from the start."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.events.checkpoint import Checkpoint
    from eventstore.events.envelope import RecordedEvent


class FoldedStreams(NamedTuple):
    """One part of a fold in the database.

    Attributes:
        rows: `executions` rows of the streams folded, as of the fold's
            checkpoint, for `ExecutionsFold.write`.
        events: the events of the log these streams hold (system streams,
            which fold into no row, included).
        unfolded: executions left to the reference fold (`eventstore.fold`).
    """

    rows: list[tuple[Any, ...]]
    events: int
    unfolded: list[UUID]


class ExecutionsFold(ABC):
    """The executions fold, set-based in the database (ARCHITECTURE §5).

    It folds only what it can prove the reference fold would fold the same
    way, and hands every other stream back: the caller folds those with
    the reference, which also names their poison events.
    """

    @abstractmethod
    def fold(self, until: Checkpoint, *, part: int) -> AsyncIterator[FoldedStreams]:
        """Every stream of the log up to `until` (gap-safe), `part` streams at a time."""

    @abstractmethod
    async def write(
        self, connection: AsyncConnection, table: str, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        """Add folded rows to an empty table of `executions`' columns, in the caller's transaction."""

    @abstractmethod
    async def read_streams(
        self, stream_ids: Sequence[UUID], until: Checkpoint
    ) -> list[RecordedEvent]:
        """The events of some streams up to `until`, in the log's order, as stored."""
