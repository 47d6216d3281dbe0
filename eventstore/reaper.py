"""The reaper: fail running executions whose lease expired, and pending ones too old.

Each is failed through the lifecycle service, with an `ExecutionFailed`
event (error type `Timeout`, actor `reaper`), so the reason is on record.
Two reapers running at once cannot fail one execution twice: the second
decides again on the new head and finds it failed already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa

from eventstore import errors
from eventstore.events.payloads import ErrorInfo
from eventstore.leases import Leases
from eventstore.schema import execution_leases, executions
from eventstore.status import ExecutionStatus

if TYPE_CHECKING:
    from datetime import datetime, timedelta
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncConnection

    from eventstore.store import EventStore

REAPER: Final = "reaper"


@dataclass
class ReapReport:
    """What a reaping pass did."""

    stale: list[UUID] = field(default_factory=list)
    expired_pending: list[UUID] = field(default_factory=list)


async def reap(
    store: EventStore,
    *,
    stale_after: timedelta | None = None,
    pending_after: timedelta | None = None,
) -> ReapReport:
    """Fail stale running executions and, if asked, pending ones older than a limit.

    A running execution is stale when its last sign of life (its last
    heartbeat, or its start if it never heartbeated) is older than
    `stale_after` on the database's clock. Candidates come from the lease
    table and the executions projection; each is confirmed on a fresh fold
    of its stream before it is failed.

    Returns:
        The executions this pass failed.
    """
    backend = store.backend
    await backend.ensure_schema()
    leases = Leases(backend)
    report = ReapReport()
    async with backend.connect_read() as connection:
        now = await leases.now(connection)
        quiet_leases = sa.select(execution_leases.c.execution_id)
        never_beat = sa.select(executions.c.id).where(
            executions.c.status == ExecutionStatus.RUNNING.value,
            ~sa.exists().where(execution_leases.c.execution_id == executions.c.id),
        )
        old_pending = sa.select(executions.c.id).where(
            executions.c.status == ExecutionStatus.PENDING.value
        )
        stale = (
            await _ids(
                connection,
                quiet_leases.where(execution_leases.c.heartbeat_at < now - stale_after),
                never_beat.where(executions.c.started_at < now - stale_after),
            )
            if stale_after is not None
            else []
        )
        pending = (
            await _ids(
                connection,
                old_pending.where(executions.c.created_at < now - pending_after),
            )
            if pending_after is not None
            else []
        )
    if stale_after is not None:
        message = f"no heartbeat for more than {stale_after.total_seconds():g} s"
        for execution_id in stale:
            if await _fail_if_still(
                store,
                leases,
                execution_id,
                ExecutionStatus.RUNNING,
                now - stale_after,
                message,
            ):
                report.stale.append(execution_id)
    if pending_after is not None:
        message = f"pending for more than {pending_after.total_seconds():g} s"
        for execution_id in pending:
            if await _fail_if_still(
                store,
                leases,
                execution_id,
                ExecutionStatus.PENDING,
                now - pending_after,
                message,
            ):
                report.expired_pending.append(execution_id)
    return report


async def _ids(connection: AsyncConnection, *queries: sa.Select[Any]) -> list[UUID]:
    found: list[UUID] = []
    for query in queries:
        found.extend((await connection.execute(query)).scalars())
    return found


async def _fail_if_still(
    store: EventStore,
    leases: Leases,
    execution_id: UUID,
    status: ExecutionStatus,
    cutoff: datetime,
    message: str,
) -> bool:
    state = await store.executions.get(execution_id)
    if state.status is not status:
        await leases.release(execution_id)  # it ended on its own
        return False
    lease = await leases.get(execution_id)
    last_sign = max(
        moment
        for moment in (
            state.created_at if status is ExecutionStatus.PENDING else state.started_at,
            lease.heartbeat_at if lease is not None else None,
        )
        if moment is not None
    )
    if last_sign >= cutoff:
        return False  # it heartbeated after all
    try:
        await store.executions.fail(
            execution_id,
            error=ErrorInfo(type="Timeout", message=message, retryable=True),
            metadata={"actor": REAPER},
        )
    except errors.InvalidTransition:
        return False  # another reaper, or the worker, ended it first
    await leases.release(execution_id)
    return True
