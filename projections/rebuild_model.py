"""What a rebuild plans and reports, and what it needs of a projection and its checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import sqlalchemy as sa

from eventstore.schema import SHADOW_CHECKPOINT_SUFFIX
from eventstore.schema import projection_checkpoints as checkpoint_table
from projections.base import Projection

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import Checkpoint
    from eventstore.projecting import ExecutionsFold

# Each try at the swap's locks (the gate, the live table) waits this long at
# most: readers that queue behind a waiting swap wait no longer than that.
# The tries are bounded as a whole too: meanwhile the swap holds the
# projector back, and its open transaction holds back every gap-safe reader
# of the log.
SWAP_LOCK_TIMEOUT: Final = 0.5
SWAP_ATTEMPTS: Final = 20


@runtime_checkable
class TableProjection(Projection, Protocol):
    """A projection into one table, which can be aimed at another of its shape."""

    @property
    def table(self) -> sa.Table:
        """The table the projection writes."""
        ...

    def for_table(self, table: sa.Table) -> Projection:
        """The same projection writing `table` instead."""
        ...


@runtime_checkable
class FoldsInDatabase(TableProjection, Protocol):
    """A table projection whose rows the database can fold itself from the start."""

    def database_fold(self) -> ExecutionsFold | None:
        """The database's fold of this projection's rows; None where it has none."""
        ...


@dataclass(frozen=True, slots=True)
class RebuildPlan:
    """What a rebuild would do now.

    Attributes:
        events: events in the log it would fold (the log may grow meanwhile).
        resume_from: the position a shadow left by an earlier run stands at,
            when the rebuild resumes it; None when it starts from the log's start.
        shadow: whether it builds beside the live table and swaps
            (otherwise it replays in one transaction).
    """

    events: int
    resume_from: int | None
    shadow: bool


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild did.

    Attributes:
        projection: the projection's name.
        events: events this run folded (fewer than the log when it resumed).
        resumed_from: the position the resumed shadow stood at; None when
            this run started from the log's start.
        position: the log position the projection has folded now.
        swapped: a shadow table was swapped in (False: rebuilt in place).
        swap_seconds: how long the swap's transaction held the live table.
        retired_dropped: the replaced table is gone (False: it could not be
            locked in time and is dropped by the next rebuild).
        seconds: how long the run took, start to end.
    """

    projection: str
    events: int
    resumed_from: int | None
    position: int
    swapped: bool
    swap_seconds: float = 0.0
    retired_dropped: bool = True
    seconds: float = 0.0


def shadow_checkpoint_name(projection: Projection) -> str:
    """The name of the shadow's checkpoint row."""
    return projection.name + SHADOW_CHECKPOINT_SUFFIX


async def place_checkpoints(
    connection: AsyncConnection, name: str, place: Checkpoint
) -> None:
    """Put every partition's checkpoint of a projection at `place`."""
    await connection.execute(
        sa.update(checkpoint_table)
        .where(checkpoint_table.c.name == name)
        .values(
            transaction_id=place.transaction_id,
            position=place.position,
            updated_at=datetime.now(UTC),
        )
    )
