"""Queries over the log for the audit: stream heads and statuses as of a moment."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from eventstore.backends.database import Database

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from eventstore.backends.rows import LastStatusChange, StreamEnd
    from eventstore.events.checkpoint import Checkpoint


class AuditQueries(Database):
    """One indexed query each, never a replay of every stream."""

    @abstractmethod
    async def stream_heads(
        self, at: Checkpoint | None = None
    ) -> dict[UUID, tuple[int, bytes]]:
        """Each execution stream's last version and hash, at `at` (None: now).

        System streams are left out: they hold the anchors themselves.
        """

    @abstractmethod
    async def status_events(
        self, *, position: int | None = None, time: datetime | None = None
    ) -> list[LastStatusChange]:
        """Each execution stream's last status-changing event, as of a moment.

        One scan of the status-history index. The moment is a position
        (events at or before it) or a time (events recorded at or before
        it); neither: now.
        """

    @abstractmethod
    async def open_executions(self) -> list[LastStatusChange]:
        """The last status-changing event of every pending or running execution.

        Read from the log, not a projection, so it is exact however far the
        projectors lag: one scan of the status-history index.
        """

    @abstractmethod
    async def log_splits(self, parts: int) -> list[Checkpoint]:
        """Checkpoints that cut the log into `parts` runs of nearly equal length.

        The log is what `read_rows_as_stored` reads now. Each checkpoint is
        the last event of a run: the next run reads after it. Fewer than
        ``parts - 1`` when the log holds fewer than `parts` events.
        """

    @abstractmethod
    async def stream_ends(
        self, stream_ids: Sequence[UUID], at: Checkpoint
    ) -> dict[UUID, StreamEnd]:
        """Each stream's last event at or before `at` in the log's order.

        Streams with no event there are left out. Every stream type counts.
        """
