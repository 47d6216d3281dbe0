"""Reads of the executions projection: by id, and filtered lists with keyset pages."""

from __future__ import annotations

import base64
import binascii
import contextlib
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal
from uuid import UUID

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from eventstore import ExecutionState, ExecutionStatus, as_stream_id, errors
from eventstore.schema import executions as table
from projections.executions import row_to_state
from projections.run_filters import RunFilters, conditions

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from sqlalchemy.ext.asyncio import AsyncConnection
    from typing_extensions import Unpack

    from eventstore import EventStore
    from eventstore.projecting import ProjectionContext

Order = Literal["newest", "oldest"]

MAX_LIMIT: Final = 1000


class Page(BaseModel):
    """One page of executions; `next_cursor` fetches the next one (None: the last)."""

    model_config = ConfigDict(frozen=True)

    items: list[ExecutionState]
    next_cursor: str | None


def _encode_cursor(state: ExecutionState, order: Order) -> str:
    raw = f"{state.created_at.isoformat()}|{state.id}|{order}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: object, order: Order) -> tuple[datetime, UUID]:
    """The (created_at, id) a page ended at; the cursor must be of the same order."""
    if not isinstance(cursor, str):
        raise errors.ValidationError(
            f"invalid cursor {cursor!r}: the next_cursor of a page is required"
        )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, identifier, *rest = raw.split("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None or rest not in ([], [order]):
            raise ValueError("naive, or another order")
        return moment, UUID(identifier)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise errors.ValidationError(
            f"invalid cursor {cursor!r}: the next_cursor of a page of the same order"
        ) from exc


def _checked_limit(limit: object) -> int:
    if (
        isinstance(limit, bool)
        or not isinstance(limit, int)
        or not 1 <= limit <= MAX_LIMIT
    ):
        raise errors.ValidationError(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


def page_query(
    context: ProjectionContext,
    filters: Mapping[str, object],
    *,
    order: Order,
    limit: int,
    cursor: str | None,
) -> sa.Select[Any]:
    """The SELECT of one page: `limit` + 1 rows (one more tells there is a next page).

    Raises:
        ValidationError: an unknown order or filter, a bad value or cursor.
    """
    if order not in ("newest", "oldest"):
        raise errors.ValidationError(f"invalid order {order!r}: 'newest' or 'oldest'")
    where = conditions(filters, context)
    if cursor is not None:
        created, identifier = _decode_cursor(cursor, order)
        key = sa.tuple_(table.c.created_at, table.c.id)
        end = sa.tuple_(
            sa.literal(created, table.c.created_at.type),
            sa.literal(identifier, table.c.id.type),
        )
        where.append(key < end if order == "newest" else key > end)
    direction = sa.desc if order == "newest" else sa.asc
    return (
        sa.select(table)
        .where(*where)
        .order_by(direction(table.c.created_at), direction(table.c.id))
        .limit(limit + 1)
    )


def count_query(
    context: ProjectionContext, filters: Mapping[str, object]
) -> sa.Select[Any]:
    """The SELECT of `count_by_status`: (status, count) for each status present.

    With no filter it is an index-only scan of the small one-column status
    index (revision 0012); with filters, whatever index they pick.

    Raises:
        ValidationError: an unknown filter or a bad value.
    """
    return (
        sa.select(table.c.status, sa.func.count())
        .where(*conditions(filters, context))
        .group_by(table.c.status)
    )


class ExecutionsView:
    """The `executions` table as the projector left it (eventually consistent)."""

    def __init__(self, store: EventStore) -> None:
        self._context = store.projection_context

    async def get(self, execution_id: UUID | str) -> ExecutionState:
        """One execution's row.

        Raises:
            ExecutionNotFound: no row (unknown, or not projected yet).
            ValidationError: the id is not a UUID.
        """
        identifier = as_stream_id(execution_id)
        async with self._read() as connection:
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
        order: Order = "newest",
        limit: int = 50,
        cursor: str | None = None,
        **filters: Unpack[RunFilters],
    ) -> Page:
        """Executions matching every filter given, a page at a time.

        Pages are keyset pages on (created_at, id): a run added while they
        are read is never skipped or repeated; it shows on no page already
        read, since it is newer than all of them (or, oldest first, last).

        Args:
            order: "newest" (the default) or "oldest" first, by created_at.
            limit: page size, 1 to 1000.
            cursor: the `next_cursor` of the previous page (same order).
            filters: the filters of `RunFilters`.

        Raises:
            ValidationError: an unknown filter or order, a bad value, limit or cursor.
        """
        size = _checked_limit(limit)
        query = page_query(
            self._context, filters, order=order, limit=size, cursor=cursor
        )
        async with self._read() as connection:
            rows = (await connection.execute(query)).mappings().all()
        items = [row_to_state(row) for row in rows[:size]]
        more = len(rows) > size
        return Page(
            items=items,
            next_cursor=_encode_cursor(items[-1], order) if more else None,
        )

    async def count(self, **filters: Unpack[RunFilters]) -> int:
        """How many executions match every filter given (`RunFilters`).

        Raises:
            ValidationError: an unknown filter or a bad value.
        """
        query = sa.select(sa.func.count()).select_from(table)
        query = query.where(*conditions(filters, self._context))
        async with self._read() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def count_by_status(
        self, **filters: Unpack[RunFilters]
    ) -> dict[ExecutionStatus, int]:
        """How many executions of each status match the filters; every status is a key.

        Raises:
            ValidationError: an unknown filter or a bad value.
        """
        query = count_query(self._context, filters)
        async with self._read() as connection:
            rows = await connection.execute(query)
            counted: dict[str, int] = {row[0]: row[1] for row in rows}
        return {status: int(counted.get(status.value, 0)) for status in ExecutionStatus}

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        await self._context.ensure_schema()
        async with self._context.connect_read() as connection:
            yield connection
