"""Projection checkpoints, moved forward by compare-and-set in the projection's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from eventstore import Checkpoint, errors
from eventstore.schema import projection_checkpoints as table

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

START: Final = Checkpoint(0, 0)
"""Where a projection that has folded nothing stands."""


def _row(name: str, partition: int) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.name == name, table.c.partition == partition)


async def ensure(connection: AsyncConnection, name: str, partition: int = 0) -> None:
    """Create the checkpoint row at START unless it exists."""
    await connection.execute(
        sa.insert(table).from_select(
            ["name", "partition", "transaction_id", "position", "updated_at"],
            sa.select(
                sa.literal(name),
                sa.literal(partition),
                sa.literal(START.transaction_id, table.c.transaction_id.type),
                sa.literal(START.position, sa.BigInteger),
                sa.literal(datetime.now(UTC), table.c.updated_at.type),
            ).where(~sa.exists().where(_row(name, partition))),
        )
    )


async def load(
    connection: AsyncConnection, name: str, partition: int = 0
) -> Checkpoint:
    """How far a projection has folded the log (START when it has not begun)."""
    row = (
        await connection.execute(
            sa.select(table.c.transaction_id, table.c.position).where(
                _row(name, partition)
            )
        )
    ).first()
    if row is None:
        return START
    return Checkpoint(int(row.transaction_id or 0), int(row.position))


async def advance(
    connection: AsyncConnection,
    name: str,
    *,
    expected: Checkpoint,
    new: Checkpoint,
    partition: int = 0,
) -> None:
    """Move a checkpoint from `expected` to `new`, or fail if it is elsewhere.

    Run it first in the transaction that writes the batch's rows: the update
    locks the row, so of two projectors applying the same batch one waits,
    then fails here, and its transaction rolls back.

    Raises:
        CheckpointConflict: the checkpoint is no longer at `expected`.
        ValueError: `new` is not after `expected` (a programming error).
    """
    if new <= expected:
        raise ValueError(f"checkpoints only move forward: {expected} -> {new}")
    updated = await connection.execute(
        sa.update(table)
        .where(
            _row(name, partition),
            table.c.position == expected.position,
            table.c.transaction_id == expected.transaction_id,
        )
        .values(
            transaction_id=new.transaction_id,
            position=new.position,
            updated_at=datetime.now(UTC),
        )
    )
    if updated.rowcount != 1:
        raise errors.CheckpointConflict(projection=name, partition=partition)


async def reset(connection: AsyncConnection, name: str, partition: int = 0) -> None:
    """Put a projection's checkpoint back at START (a rebuild replays from there)."""
    await connection.execute(
        sa.update(table)
        .where(_row(name, partition))
        .values(transaction_id=START.transaction_id, position=START.position)
    )
