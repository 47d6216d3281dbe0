"""The executions read model: one row per execution, folded with `eventstore.fold`."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from eventstore import (
    ExecutionState,
    ExecutionStatus,
    errors,
    fold_events,
    streams_archived_by,
)
from eventstore.projecting import construct
from eventstore.schema import executions as canonical_table

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore import RecordedEvent
    from eventstore.projecting import ExecutionsFold, ProjectionContext

NAME: Final = "executions"
# Ids per SELECT ... IN: below both drivers' limits on bound parameters.
ROWS_PER_STATEMENT: Final = 500
COLUMNS: Final = tuple(column.name for column in canonical_table.columns)


def state_to_row(state: ExecutionState) -> dict[str, Any]:
    """An `executions` row for a state."""
    fields = state.__dict__
    return {name: fields[name] for name in COLUMNS}


def row_to_state(row: Any) -> ExecutionState:
    """The state an `executions` row holds, validated (for rows read by users)."""
    return ExecutionState.model_validate(dict(row))


def _stored_state(row: Any) -> ExecutionState:
    """The state of a row this projection wrote itself: typed, so not validated."""
    fields = dict(row)
    fields["status"] = ExecutionStatus(fields["status"])
    return construct(ExecutionState, fields)


class ExecutionsProjection:
    """Keeps `executions` equal to a fold of each execution stream.

    Another table of the same shape may be targeted (`for_table`): the
    rebuild folds into a shadow table with the very same code.
    """

    name = NAME

    def __init__(
        self, backend: ProjectionContext, *, table: sa.Table = canonical_table
    ) -> None:
        self._backend = backend
        self._table = table

    @property
    def table(self) -> sa.Table:
        """The table this projection writes."""
        return self._table

    def for_table(self, table: sa.Table) -> ExecutionsProjection:
        """The same projection writing `table` (of the same columns) instead."""
        return ExecutionsProjection(self._backend, table=table)

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        """Fold a batch into the rows of its executions.

        Events at or below a row's version are skipped, so nothing is applied
        twice; the upsert only moves a row forward. System streams fold into
        no row, but an archive receipt deletes the rows of the executions it
        removed: the live table's are gone already (the archive deletes them
        with their events), a rebuild's shadow may still hold them.

        Raises:
            ProjectionError: an event cannot be folded (a poison event).
        """
        by_stream: dict[UUID, list[RecordedEvent]] = defaultdict(list)
        for event in events:
            if event.stream_type == "execution":
                by_stream[event.stream_id].append(event)
        try:
            archived = streams_archived_by(events)
            await self._fold(connection, by_stream)
        except errors.EventNotApplicable as exc:
            raise errors.ProjectionError(
                projection=NAME,
                position=exc.position,
                event_id=exc.event_id,
                reason=exc.reason,
            ) from exc
        # After the fold: a batch never holds both a receipt and the events
        # it removed (they leave the log in the receipt's transaction).
        await self._delete(connection, archived)

    def database_fold(self) -> ExecutionsFold | None:
        """The database's own fold of executions, where it has one (the rebuild's)."""
        return self._backend.executions_fold()

    async def reset(self, connection: AsyncConnection) -> None:
        """Delete every row (the rebuild replays the log afterwards)."""
        await connection.execute(sa.delete(self._table))

    async def _fold(
        self, connection: AsyncConnection, by_stream: dict[UUID, list[RecordedEvent]]
    ) -> None:
        if not by_stream:
            return
        # A stream whose batch starts with its first event folds from
        # nothing: its row, if any, is not needed (the upsert's version
        # guard keeps a row that is already further on).
        states = await self._load(
            connection,
            [
                stream_id
                for stream_id, stream in by_stream.items()
                if stream[0].version > 1
            ],
        )
        changed: list[dict[str, Any]] = []
        for stream_id, stream_events in by_stream.items():
            state = states.get(stream_id)
            pending = (
                stream_events
                if state is None
                else [e for e in stream_events if e.version > state.version]
            )
            if not pending:
                continue
            state = fold_events(pending, state)
            if state is not None:
                changed.append(state_to_row(state))
        await self._backend.upsert_rows(
            connection, self._table, changed, guard="version"
        )

    async def _delete(self, connection: AsyncConnection, ids: list[UUID]) -> None:
        key = self._table.c.id
        for start in range(0, len(ids), ROWS_PER_STATEMENT):
            chunk = ids[start : start + ROWS_PER_STATEMENT]
            await connection.execute(sa.delete(self._table).where(key.in_(chunk)))

    async def _load(
        self, connection: AsyncConnection, ids: list[UUID]
    ) -> dict[UUID, ExecutionState]:
        table = self._table
        states: dict[UUID, ExecutionState] = {}
        for start in range(0, len(ids), ROWS_PER_STATEMENT):
            rows = await connection.execute(
                sa.select(table).where(
                    table.c.id.in_(ids[start : start + ROWS_PER_STATEMENT])
                )
            )
            for row in rows.mappings():
                state = _stored_state(row)
                states[state.id] = state
        return states
