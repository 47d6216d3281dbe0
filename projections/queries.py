"""Reads of the executions projection: by id, and filtered lists with keyset pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Final
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from eventstore import ExecutionState, ExecutionStatus, as_stream_id, errors
from eventstore.projecting import checked_moment
from eventstore.schema import executions as table
from projections.executions import row_to_state

if TYPE_CHECKING:
    from eventstore import EventStore

MAX_LIMIT: Final = 1000


class Page(BaseModel):
    """One page of executions, newest first; `next_cursor` fetches the next one."""

    model_config = ConfigDict(frozen=True)

    items: list[ExecutionState]
    next_cursor: str | None


def _encode_cursor(state: ExecutionState) -> str:
    raw = f"{state.created_at.isoformat()}|{state.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    if not isinstance(cursor, str):
        raise errors.ValidationError(
            f"invalid cursor {cursor!r}: the next_cursor of a page is required"
        )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, identifier = raw.partition("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive")
        return moment, UUID(identifier)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise errors.ValidationError(f"invalid cursor {cursor!r}") from exc


def _statuses(status: object) -> list[str]:
    # One status or any iterable of them; a bare string is one status.
    given = (
        list(status)
        if isinstance(status, Iterable) and not isinstance(status, str)
        else [status]
    )
    known = {s.value for s in ExecutionStatus}
    values = [s.value if isinstance(s, ExecutionStatus) else s for s in given]
    if not all(isinstance(v, str) and v in known for v in values):
        raise errors.ValidationError(
            f"unknown status in {status!r}: one or more of "
            f"{', '.join(sorted(known))} is required"
        )
    return [str(v) for v in values]


class ExecutionsView:
    """The `executions` table as the projector left it (eventually consistent)."""

    def __init__(self, store: EventStore) -> None:
        self._backend = store.projection_context

    async def get(self, execution_id: UUID | str) -> ExecutionState:
        """One execution's row.

        Raises:
            ExecutionNotFound: no row (unknown, or not projected yet).
            ValidationError: the id is not a UUID.
        """
        identifier = as_stream_id(execution_id)
        await self._backend.ensure_schema()
        async with self._backend.connect_read() as connection:
            row = (
                (
                    await connection.execute(
                        sa.select(table).where(table.c.id == identifier)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise errors.ExecutionNotFound(execution_id=identifier)
        return row_to_state(row)

    async def list(
        self,
        *,
        status: ExecutionStatus | str | Iterable[ExecutionStatus | str] | None = None,
        graph_id: UUID | str | None = None,
        message_id: UUID | str | None = None,
        thread_id: UUID | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Executions matching every filter given, newest first, a page at a time.

        Args:
            status: one status or several.
            graph_id: only runs of this graph.
            message_id: only runs replying to this message.
            thread_id: only runs in this thread.
            created_after: created strictly after this time.
            created_before: created strictly before this time.
            limit: page size, 1 to 1000.
            cursor: the `next_cursor` of the previous page.

        Raises:
            ValidationError: an unknown status, a bad id, time, limit or cursor.
        """
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not 1 <= limit <= MAX_LIMIT
        ):
            raise errors.ValidationError(f"limit must be between 1 and {MAX_LIMIT}")
        conditions: list[sa.ColumnElement[bool]] = []
        if status is not None:
            conditions.append(table.c.status.in_(_statuses(status)))
        for column, value in (
            (table.c.graph_id, graph_id),
            (table.c.message_id, message_id),
            (table.c.thread_id, thread_id),
        ):
            if value is not None:
                conditions.append(column == as_stream_id(value))
        if (after := checked_moment("created_after", created_after)) is not None:
            conditions.append(table.c.created_at > after)
        if (before := checked_moment("created_before", created_before)) is not None:
            conditions.append(table.c.created_at < before)
        if cursor is not None:
            created, identifier = _decode_cursor(cursor)
            conditions.append(
                sa.or_(
                    table.c.created_at < created,
                    sa.and_(table.c.created_at == created, table.c.id < identifier),
                )
            )
        query = (
            sa.select(table)
            .where(*conditions)
            .order_by(table.c.created_at.desc(), table.c.id.desc())
            .limit(limit + 1)
        )
        await self._backend.ensure_schema()
        async with self._backend.connect_read() as connection:
            rows = (await connection.execute(query)).mappings().all()
        items = [row_to_state(row) for row in rows[:limit]]
        more = len(rows) > limit
        return Page(
            items=items, next_cursor=_encode_cursor(items[-1]) if more else None
        )
