"""Slots: a projection, or one partition of it, each with a checkpoint and a leader.

A slot's checkpoint row is ``(projection name, partition index)``. Its lock
name also carries the partition count, so processes started with different
counts never share a lock; the checkpoint rows refuse such a mix (a change
of partition count means a rebuild).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from eventstore import errors
from eventstore.projecting import Partition
from eventstore.schema import projection_checkpoints as table
from projections import checkpoints

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.projecting import LeaderLocks
    from projections.base import Projection


@dataclass(frozen=True)
class Slot:
    """One unit of projection work: a projection and a partition of the log."""

    projection: Projection
    partition: Partition

    @property
    def group(self) -> str:
        """The slots it is shared with: its projection split the same number of ways."""
        return f"{self.projection.name}/{self.partition.count}"

    @property
    def lock_name(self) -> str:
        """The name of the slot's leader lock."""
        return lock_name(self.projection.name, self.partition)

    def __str__(self) -> str:
        if self.partition.count == 1:
            return self.projection.name
        return (
            f"{self.projection.name} partition {self.partition.index}"
            f"/{self.partition.count}"
        )


def lock_name(projection: str, partition: Partition) -> str:
    """The name of the leader lock of a projection's partition."""
    return f"{projection}:{partition.index}/{partition.count}"


def slots_of(projections: list[Projection], partitions: int) -> list[Slot]:
    """Every slot of the projections split `partitions` ways."""
    return [
        Slot(projection, Partition(index, partitions))
        for projection in projections
        for index in range(partitions)
    ]


async def prepare(
    connection: AsyncConnection, projection: Projection, partitions: int
) -> None:
    """Make sure the projection has one checkpoint row per partition.

    The count may change while every partition stands at the same
    checkpoint (an unpartitioned projection always does); otherwise only
    a rebuild changes it.

    Run it in a `projection_write` transaction: a slot starts only while
    no rebuild holds its projection.

    Raises:
        ConfigurationError: the partitions stand apart under another count.
    """
    # In key order, as the rebuild's swap locks them: scanned in heap order
    # instead, this deadlocked with the swap (issue 11).
    rows = await checkpoints.lock(connection, [projection.name])
    existing = {row.partition for row in rows}
    wanted = set(range(partitions))
    if existing and existing != wanted:
        # Every partition may start where all of them stand together: the
        # log up to that checkpoint is folded whichever way it is split.
        places = {row.checkpoint for row in rows}
        if len(places) != 1:
            raise errors.ConfigurationError(
                f"projection {projection.name} is split {len(existing)} ways here "
                f"and its partitions stand at different places: changing to "
                f"{partitions} means a rebuild (`eventstore rebuild`)"
            )
        place = places.pop()
        await connection.execute(
            sa.delete(table).where(table.c.name == projection.name)
        )
        for index in sorted(wanted):
            await checkpoints.ensure(connection, projection.name, index)
            if place != checkpoints.START:
                await checkpoints.advance(
                    connection,
                    projection.name,
                    expected=checkpoints.START,
                    new=place,
                    partition=index,
                )
        return
    for index in sorted(wanted):
        await checkpoints.ensure(connection, projection.name, index)


async def take_fair_share(
    locks: LeaderLocks, groups: Mapping[str, Sequence[Slot]], led: list[Slot]
) -> None:
    """Lead this process's fair share of each group's slots; give up any beyond it.

    `led` (the slots this process leads) is updated in place. The share is
    counted among the processes in the group (those that run the projection
    with the same partition count), not among every projector of the
    database: a process that runs a projection alone leads all of it.
    """
    members = await locks.members(list(groups))
    for group, group_slots in groups.items():
        fair = math.ceil(len(group_slots) / max(1, members.get(group, 1)))
        mine = [slot for slot in led if slot in group_slots]
        while len(mine) > fair:
            slot = mine.pop()
            led.remove(slot)
            await locks.release(slot.lock_name)
        for slot in group_slots:
            if len(mine) >= fair:
                break
            if slot not in mine and await locks.try_acquire(slot.lock_name):
                mine.append(slot)
                led.append(slot)


def by_group(all_slots: Sequence[Slot]) -> dict[str, list[Slot]]:
    """The slots of each group (a projection split one way), in order."""
    groups: dict[str, list[Slot]] = {}
    for slot in all_slots:
        groups.setdefault(slot.group, []).append(slot)
    return groups
