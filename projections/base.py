"""The Projection protocol: a read model that the projector keeps up to date."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import RecordedEvent


class Projection(Protocol):
    """A read model folded from the log.

    The projector calls `apply` with each batch of events in global order,
    inside the transaction that also advances the projection's checkpoint, so
    a batch is applied entirely or not at all. Batches hold the store's
    system streams too: a projection keyed by stream forgets the streams an
    archive receipt names (`eventstore.streams_archived_by`). `apply` should
    still be idempotent per row (skip what a row has already folded), a
    second guard against applying anything twice.
    """

    @property
    def name(self) -> str:
        """Names the projection's checkpoint; unique per database."""
        ...

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        """Fold a batch of events into the read model.

        Raises:
            ProjectionError: an event cannot be applied (a poison event).
        """
        ...

    async def reset(self, connection: AsyncConnection) -> None:
        """Empty the read model, before a rebuild replays the log into it."""
        ...
