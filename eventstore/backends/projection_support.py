"""What projectors and rebuilds need of the database: leaders, gates, lag, shadows."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from eventstore.backends.database import Database

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Sequence
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.backends.database_fold import ExecutionsFold
    from eventstore.backends.leadership import Holder, HorizonHolder, LeaderLocks
    from eventstore.backends.shadow import ShadowTables
    from eventstore.events.checkpoint import Checkpoint
    from eventstore.partitions import Partition


class ProjectionSupport(Database):
    """Leadership, the projection gate, backlog and horizon, shadow tables."""

    @abstractmethod
    def leader_locks(self) -> LeaderLocks:
        """A new set of slot locks for one projector process (ARCHITECTURE §4)."""

    @abstractmethod
    async def slot_holders(self, slots: Sequence[str]) -> dict[str, Holder]:
        """Who leads each slot now; slots without a leader are left out."""

    @abstractmethod
    def projection_write(
        self, projection: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction for a projector's work on `projection`.

        It enters the projection's gate first, the first lock of the one
        order (docs/PROJECTIONS.md, "Lock order"): then come the checkpoint
        rows, in key order, then the projection's tables.

        Raises:
            RebuildInProgress: a rebuild holds the projection; nothing was done.
        """

    @abstractmethod
    def rebuild_write(
        self, projection: str, *, lock_timeout: float, attempts: int
    ) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction that holds `projection`'s gate until it ends.

        No projector work on the projection starts meanwhile
        (`projection_write` raises RebuildInProgress); work already in
        flight is waited for, each try at most `lock_timeout` seconds.

        Raises:
            DatabaseError: the gate was not had within `attempts` tries.
        """

    @abstractmethod
    async def rebuild_holders(self, projections: Sequence[str]) -> dict[str, Holder]:
        """Who holds (or is about to hold) each projection's gate for a rebuild.

        Projections no rebuild holds are left out.
        """

    @abstractmethod
    async def backlog(
        self, after: Checkpoint, partition: Partition | None = None
    ) -> tuple[int, datetime | None]:
        """How many events (of the partition) lie after `after`, and the oldest's recorded_at."""

    @abstractmethod
    async def horizon_holder(self) -> HorizonHolder | None:
        """The oldest transaction in flight, which holds gap-safe reads back."""

    def shadow_tables(self) -> ShadowTables | None:
        """The shadow tables of a zero-downtime rebuild, if this database has them.

        None where readers and the projector cannot run beside a shadow
        build: the rebuild then replays in one transaction.
        """
        return None

    def executions_fold(self) -> ExecutionsFold | None:
        """The executions fold run by the database, for a rebuild from the start.

        None where the database does not run it: the rebuild folds every
        event here.
        """
        return None
