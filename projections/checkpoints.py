"""Projection checkpoints, moved forward by compare-and-set in the projection's transaction.

Whoever locks several checkpoint rows takes them in key order, (name,
partition), with `lock`: the second step of the one lock order
(docs/PROJECTIONS.md, "Lock order"). A statement's own scan order is not
that order: once the table has statistics the planner scans it
sequentially, and rows stand in the heap in the order they were last
updated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, NamedTuple

import sqlalchemy as sa

from eventstore import Checkpoint, errors
from eventstore.schema import projection_checkpoints as table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

START: Final = Checkpoint(0, 0)
"""Where a projection that has folded nothing stands."""


def _row(name: str, partition: int) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.name == name, table.c.partition == partition)


async def ensure(connection: AsyncConnection, name: str, partition: int = 0) -> None:
    """Create the checkpoint row at START unless it exists."""
    insert = sa.insert(table).from_select(
        ["name", "partition", "transaction_id", "position", "updated_at"],
        sa.select(
            sa.literal(name),
            sa.literal(partition),
            sa.literal(START.transaction_id, table.c.transaction_id.type),
            sa.literal(START.position, sa.BigInteger),
            sa.literal(datetime.now(UTC), table.c.updated_at.type),
        ).where(~sa.exists().where(_row(name, partition))),
    )
    try:
        async with connection.begin_nested():
            await connection.execute(insert)
    except sa.exc.IntegrityError:
        # Another process created the row meanwhile: this insert waited on
        # its key until that transaction committed (projectors starting
        # together). The row exists, as wanted; only the savepoint is undone.
        pass


class LockedCheckpoint(NamedTuple):
    """A checkpoint row locked by `lock`."""

    name: str
    partition: int
    checkpoint: Checkpoint


async def lock(
    connection: AsyncConnection, names: Sequence[str] | None = None
) -> list[LockedCheckpoint]:
    """Lock the checkpoint rows of `names` (None: every row) until the transaction ends.

    Rows are locked one by one in key order (the sort runs below the lock),
    the order every transaction takes them in, so two such transactions
    never wait for each other in a cycle. SQLite ignores FOR UPDATE: its
    write transactions already run one at a time.
    """
    query = sa.select(
        table.c.name, table.c.partition, table.c.transaction_id, table.c.position
    )
    if names is not None:
        query = query.where(table.c.name.in_(sorted(set(names))))
    rows = await connection.execute(
        query.order_by(table.c.name, table.c.partition).with_for_update()
    )
    return [
        LockedCheckpoint(
            row.name,
            int(row.partition),
            Checkpoint.stored(row.transaction_id, row.position),
        )
        for row in rows
    ]


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
    return Checkpoint.stored(row.transaction_id, row.position)


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
