"""Verify the executions projection: every row equals a fresh fold of its stream.

And that it is not stuck behind the log: the events after its checkpoint
must be ones the fold can apply, and a projection behind the log must have
a projector leading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

from eventstore import Checkpoint, EventMetadata, RecordedEvent, errors, fold_events
from eventstore.projecting import Partition, upcast_event
from eventstore.schema import execution_events as events_table
from eventstore.schema import executions as table
from eventstore.schema import graphs, messages, projection_checkpoints, threads
from projections import checkpoints
from projections.executions import NAME, row_to_state
from projections.slots import lock_name

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import EventStore, ExecutionState

CHUNK: Final = 500
# The references an executions row holds, each a foreign key to its table.
REFERENCES: Final = (
    ("message", "message_id", messages),
    ("graph", "graph_id", graphs),
    ("thread", "thread_id", threads),
)


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
    backend = store.projection_context
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


@dataclass(frozen=True)
class Unapplicable:
    """An event after the projection's checkpoint that it cannot apply (a poison event)."""

    position: int
    event_id: UUID
    execution_id: UUID
    reason: str


@dataclass(frozen=True)
class Stalled:
    """A slot of the projection behind the log that no projector leads."""

    partition: int
    partitions: int
    behind: int  # execution events after its checkpoint


@dataclass(frozen=True)
class Backlog:
    """What lies after the projection's checkpoints, and whether it will be folded."""

    behind: int
    unapplicable: list[Unapplicable]
    stalled: list[Stalled]

    @property
    def ok(self) -> bool:
        """Whether the projection can fold what it has not folded yet."""
        return not self.unapplicable and not self.stalled


async def verify_backlog(store: EventStore, *, limit: int = 100) -> Backlog:
    """Check the events after the executions projection's checkpoints.

    Folds each stream on from its row (read only, nothing is written) to
    find the events the projector would stop at: events the fold cannot
    apply, and runs whose message, graph or thread does not exist. A slot
    with execution events left to fold and no projector leading it is
    stalled: nothing will fold them.

    Returns:
        How many execution events the checkpoints are behind (as far as
        gap-safe reads see), up to `limit` events that cannot be applied
        (the first of each stream), and the stalled slots.
    """
    backend = store.projection_context
    await backend.ensure_schema()
    async with backend.connect_read() as connection:
        rows = (
            await connection.execute(
                sa.select(
                    projection_checkpoints.c.partition,
                    projection_checkpoints.c.transaction_id,
                    projection_checkpoints.c.position,
                )
                .where(projection_checkpoints.c.name == NAME)
                .order_by(projection_checkpoints.c.partition)
            )
        ).all()
    places = [
        (
            Partition(row.partition, len(rows)),
            Checkpoint.stored(row.transaction_id, row.position),
        )
        for row in rows
    ] or [(Partition(0, 1), checkpoints.START)]
    holders = await backend.slot_holders([lock_name(NAME, p) for p, _ in places])
    behind = 0
    unapplicable: list[Unapplicable] = []
    stalled: list[Stalled] = []
    for partition, checkpoint in places:
        pending = await _check_partition(
            store, partition, checkpoint, unapplicable, limit
        )
        behind += pending
        if pending and lock_name(NAME, partition) not in holders:
            stalled.append(Stalled(partition.index, partition.count, pending))
    return Backlog(behind, unapplicable[:limit], stalled)


async def _check_partition(
    store: EventStore,
    partition: Partition,
    after: Checkpoint,
    found: list[Unapplicable],
    limit: int,
) -> int:
    """Fold the partition's backlog; return how many execution events it holds."""
    backend = store.projection_context
    states: dict[UUID, ExecutionState | None] = {}
    refused: set[UUID] = set()  # streams stopped at an event already reported
    pending = 0
    while True:
        batch = await backend.read_all_as_stored(
            after, limit=CHUNK, partition=partition
        )
        if not batch:
            return pending
        after = batch[-1].checkpoint
        events = [event for event in batch if event.stream_type == "execution"]
        pending += len(events)
        unknown = [e.stream_id for e in events if e.stream_id not in states]
        states.update(await _rows(store, unknown))
        created: list[tuple[RecordedEvent, ExecutionState]] = []
        for event in events:
            stream = event.stream_id
            state = states[stream]
            if stream in refused or len(found) >= limit:
                continue
            if state is not None and event.version <= state.version:
                continue  # folded already (the row is further than the checkpoint)
            try:
                folded = fold_events([upcast_event(event)], state)
            except (errors.EventNotApplicable, errors.ValidationError) as exc:
                refused.add(stream)
                found.append(
                    Unapplicable(event.position, event.event_id, stream, str(exc))
                )
                continue
            states[stream] = folded
            if state is None and folded is not None:
                created.append((event, folded))
        for event, reason in await _missing_references(store, created):
            refused.add(event.stream_id)
            found.append(
                Unapplicable(event.position, event.event_id, event.stream_id, reason)
            )
        found.sort(key=lambda problem: problem.position)


async def _rows(
    store: EventStore, ids: list[UUID]
) -> dict[UUID, ExecutionState | None]:
    """The projected state of each execution (None: no row yet)."""
    states: dict[UUID, ExecutionState | None] = dict.fromkeys(ids)
    async with store.projection_context.connect_read() as connection:
        for start in range(0, len(ids), CHUNK):
            result = await connection.execute(
                sa.select(table).where(table.c.id.in_(ids[start : start + CHUNK]))
            )
            for row in result.mappings():
                state = row_to_state(row)
                states[state.id] = state
    return states


async def _missing_references(
    store: EventStore, created: list[tuple[RecordedEvent, ExecutionState]]
) -> list[tuple[RecordedEvent, str]]:
    """The ExecutionCreated events naming a message, graph or thread that does not exist."""
    if not created:
        return []
    missing: list[tuple[RecordedEvent, str]] = []
    async with store.projection_context.connect_read() as connection:
        known: dict[str, set[UUID]] = {}
        for entity, field, referenced in REFERENCES:
            wanted = list({getattr(state, field) for _, state in created})
            known[entity] = set()
            for start in range(0, len(wanted), CHUNK):
                result = await connection.execute(
                    sa.select(referenced.c.id).where(
                        referenced.c.id.in_(wanted[start : start + CHUNK])
                    )
                )
                known[entity].update(result.scalars())
        for event, state in created:
            for entity, field, _ in REFERENCES:
                if getattr(state, field) not in known[entity]:
                    missing.append(
                        (event, f"{entity} {getattr(state, field)} does not exist")
                    )
                    break
    return missing
