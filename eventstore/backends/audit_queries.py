"""Queries over the log for the audit: stream heads and statuses as of a moment."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from eventstore.backends.database import Database

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from eventstore.backends.rows import LastStatusChange
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
