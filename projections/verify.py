"""Verify the executions projection: every row equals a fresh fold of its stream."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from eventstore import RecordedEvent, fold_events
from eventstore.events.envelope import EventMetadata
from eventstore.log import upcast_event
from eventstore.schema import execution_events as events_table
from eventstore.schema import executions as table
from projections import checkpoints
from projections.executions import NAME, row_to_state

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import EventStore, ExecutionState

CHUNK: Final = 500


@dataclass(frozen=True)
class Divergence:
    """A row that is not what the log says (or a row missing)."""

    execution_id: UUID
    reason: str


async def verify_executions(store: EventStore, *, limit: int = 100) -> list[Divergence]:
    """Compare every row with the fold of its stream up to the row's version.

    A row behind the log is lag, not a divergence; an execution whose
    creation the checkpoint has passed must have a row.

    Returns:
        Up to `limit` divergences, in id order; empty when the projection is right.
    """
    backend = store.backend
    await backend.ensure_schema()
    found: list[Divergence] = []
    async with backend.connect_read() as connection:
        last: UUID | None = None
        while len(found) < limit:
            query = sa.select(table).order_by(table.c.id).limit(CHUNK)
            if last is not None:
                query = query.where(table.c.id > last)
            rows = [
                row_to_state(row)
                for row in (await connection.execute(query)).mappings()
            ]
            if not rows:
                break
            last = rows[-1].id
            streams = await _streams(connection, [row.id for row in rows])
            for row in rows:
                reason = _compare(row, streams.get(row.id, []))
                if reason is not None:
                    found.append(Divergence(row.id, reason))
        checkpoint = await checkpoints.load(connection, NAME)
        missing = await connection.execute(
            sa.select(events_table.c.stream_id)
            .where(
                events_table.c.stream_type == "execution",
                events_table.c.version == 1,
                backend.at_or_before(events_table, checkpoint),
                ~sa.exists().where(table.c.id == events_table.c.stream_id),
            )
            .order_by(events_table.c.stream_id)
            .limit(limit)
        )
        found.extend(
            Divergence(
                stream_id,
                "no row, but the projection's checkpoint has passed its creation",
            )
            for stream_id in missing.scalars()
        )
    return found[:limit]


def _compare(row: ExecutionState, events: list[RecordedEvent]) -> str | None:
    prefix = [event for event in events if event.version <= row.version]
    if len(prefix) < row.version:
        return (
            f"the row is at version {row.version}, the stream has {len(events)} events"
        )
    fresh = fold_events(prefix)
    if fresh == row:
        return None
    assert fresh is not None  # noqa: S101 - prefix is not empty
    fields = [
        name
        for name in type(row).model_fields
        if getattr(row, name) != getattr(fresh, name)
    ]
    return "differs from a fresh fold in " + ", ".join(fields)


async def _streams(
    connection: AsyncConnection, ids: list[UUID]
) -> dict[UUID, list[RecordedEvent]]:
    result = await connection.execute(
        sa.select(events_table)
        .where(events_table.c.stream_id.in_(ids))
        .order_by(events_table.c.stream_id, events_table.c.version)
    )
    streams: dict[UUID, list[RecordedEvent]] = {}
    for row in result.mappings():
        event = RecordedEvent.from_log(
            position=row["position"],
            stream_id=row["stream_id"],
            version=row["version"],
            stream_type=row["stream_type"],
            event_id=row["event_id"],
            event_type=row["type"],
            schema_version=row["schema_version"],
            data=row["data"],
            metadata=EventMetadata.from_stored(row["metadata"]),
            occurred_at=row["occurred_at"],
            recorded_at=row["recorded_at"],
            transaction_id=row["transaction_id"],
            chain_hash=row["hash"],
        )
        streams.setdefault(row["stream_id"], []).append(upcast_event(event))
    return streams
