"""Where each projection slot stands: checkpoint, lag, leader, and what holds it back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from eventstore import EventStore

from eventstore import Checkpoint
from eventstore.projecting import Partition
from eventstore.schema import projection_checkpoints as table

SlotState = Literal["projecting", "waiting for rebuild", "no leader"]


class SlotStatus(BaseModel):
    """One projection slot (a projection, or a partition of it)."""

    model_config = ConfigDict(frozen=True)

    projection: str
    partition: int
    partitions: int
    checkpoint_position: int
    checkpoint_transaction_id: int
    lag_events: int
    lag_seconds: float
    leader: str | None
    leader_pid: int | None
    updated_at: datetime | None
    state: SlotState
    """``waiting for rebuild``: a rebuild holds the projection (its swap,
    or a replay in place), so the slot applies nothing until it is done."""
    rebuild_holder: str | None = None
    """``host:pid`` of the rebuild the slot waits for."""
    rebuild_holder_pid: int | None = None
    """Its PostgreSQL backend pid (on SQLite, its process id)."""


class HorizonStatus(BaseModel):
    """The oldest transaction in flight: no projection reads past it."""

    model_config = ConfigDict(frozen=True)

    pid: int
    database: str | None
    state: str | None
    age_seconds: float | None
    """None when PostgreSQL hides it: another role's session, seen by a role
    without pg_read_all_stats."""
    query: str | None


class ProjectionStatus(BaseModel):
    """Every slot of every projection, the log's head, and the horizon."""

    model_config = ConfigDict(frozen=True)

    head_position: int | None
    slots: list[SlotStatus]
    horizon: HorizonStatus | None


def _state(*, rebuild: bool, led: bool) -> SlotState:
    # A rebuild's hold comes first: a leader applies nothing meanwhile.
    if rebuild:
        return "waiting for rebuild"
    return "projecting" if led else "no leader"


async def projection_status(store: EventStore) -> ProjectionStatus:
    """Read every checkpoint row and measure its lag against the log."""
    backend = store.projection_context
    await backend.ensure_schema()
    async with backend.connect_read() as connection:
        rows = (
            await connection.execute(
                sa.select(table).order_by(table.c.name, table.c.partition)
            )
        ).all()
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.name] = counts.get(row.name, 0) + 1
    now = datetime.now(UTC)
    slot_rows = []
    for row in rows:
        partition = Partition(row.partition, counts[row.name])
        checkpoint = Checkpoint.stored(row.transaction_id, row.position)
        slot_rows.append((row, partition, checkpoint))
    lock_names = [f"{row.name}:{p.index}/{p.count}" for row, p, _ in slot_rows]
    holders = await backend.slot_holders(lock_names)
    rebuilds = await backend.rebuild_holders(sorted(counts))
    slots = []
    for (row, partition, checkpoint), lock_name in zip(
        slot_rows, lock_names, strict=True
    ):
        lag, oldest = await backend.backlog(checkpoint, partition)
        holder = holders.get(lock_name)
        rebuild = rebuilds.get(row.name)
        slots.append(
            SlotStatus(
                projection=row.name,
                partition=partition.index,
                partitions=partition.count,
                checkpoint_position=checkpoint.position,
                checkpoint_transaction_id=checkpoint.transaction_id,
                lag_events=lag,
                lag_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
                leader=holder.identity if holder else None,
                leader_pid=holder.pid if holder else None,
                updated_at=row.updated_at,
                state=_state(rebuild=rebuild is not None, led=holder is not None),
                rebuild_holder=rebuild.identity if rebuild else None,
                rebuild_holder_pid=rebuild.pid if rebuild else None,
            )
        )
    head = await backend.head_checkpoint()
    horizon = await backend.horizon_holder()
    return ProjectionStatus(
        head_position=head.position if head else None,
        slots=slots,
        horizon=HorizonStatus(
            pid=horizon.pid,
            database=horizon.database,
            state=horizon.state,
            age_seconds=horizon.age_seconds,
            query=horizon.query,
        )
        if horizon
        else None,
    )
