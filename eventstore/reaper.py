"""The reaper: fail running executions whose lease expired, and pending ones too old.

Each is failed with an `ExecutionFailed` event (error type `Timeout`, actor
`reaper`), so the reason is on record. The candidates come from the log,
not from a projection, so a projector that lags or stopped hides nothing.
Before it fails a running execution the reaper claims its lease (see
eventstore/leases.py): a heartbeat that lands after the check wins the row
and the run is left alone, one that lands after the claim is refused. Two
reapers at once cannot fail one execution twice: the second append is
refused by the lifecycle.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from eventstore import errors
from eventstore.events.envelope import NewEvent
from eventstore.events.payloads import ErrorInfo, ExecutionFailed
from eventstore.leases import Lease, Leases
from eventstore.status import ExecutionStatus

if TYPE_CHECKING:
    from datetime import datetime, timedelta
    from uuid import UUID

    from eventstore.backends.rows import LastStatusChange
    from eventstore.fold import ExecutionState
    from eventstore.store import EventStore

REAPER: Final = "reaper"
logger: Final = logging.getLogger(__name__)
_OPENING_EVENT: Final = {
    "ExecutionCreated": ExecutionStatus.PENDING,
    "ExecutionStarted": ExecutionStatus.RUNNING,
}


@dataclass
class ReapReport:
    """What a reaping pass did."""

    stale: list[UUID] = field(default_factory=list)
    expired_pending: list[UUID] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    """An open execution that looked overdue when the pass began."""

    execution_id: UUID
    status: ExecutionStatus
    cutoff: datetime  # a sign of life before this is too old
    message: str
    claimed: bool = False  # by a reaper that did not get to fail it


async def reap(
    store: EventStore,
    *,
    stale_after: timedelta | None = None,
    pending_after: timedelta | None = None,
) -> ReapReport:
    """Fail stale running executions and, if asked, pending ones older than a limit.

    A running execution is stale when its last sign of life (its last
    heartbeat, or its start if it never heartbeated) is older than
    `stale_after` on the database's clock; a pending one expires when it
    was created more than `pending_after` ago.

    Returns:
        The executions this pass failed.
    """
    report = ReapReport()
    for candidate in await find_candidates(
        store, stale_after=stale_after, pending_after=pending_after
    ):
        if await reap_one(store, candidate):
            if candidate.status is ExecutionStatus.RUNNING:
                report.stale.append(candidate.execution_id)
            else:
                report.expired_pending.append(candidate.execution_id)
    return report


async def find_candidates(
    store: EventStore,
    *,
    stale_after: timedelta | None = None,
    pending_after: timedelta | None = None,
) -> list[Candidate]:
    """The open executions that look overdue now, by the log and the leases.

    Also forgets the leases of runs that ended (heartbeats leave one each).
    """
    backend = store.backend
    await backend.ensure_schema()
    leases = Leases(backend)
    # The clock first: a run that starts after the log is read below has
    # every sign of life after it.
    async with backend.connect_read() as connection:
        now = await leases.now(connection)
    opened = await backend.open_executions()
    lease_of = await leases.all()
    candidates: list[Candidate] = []
    for last in opened:
        status = _OPENING_EVENT[last.type]
        if status is ExecutionStatus.RUNNING and stale_after is not None:
            cutoff = now - stale_after
            lease = lease_of.get(last.stream_id)
            claimed = lease is not None and lease.reaped_at is not None
            if claimed or _last_sign(last, lease) < cutoff:
                message = (
                    f"no heartbeat for more than {stale_after.total_seconds():g} s"
                )
                candidates.append(
                    Candidate(last.stream_id, status, cutoff, message, claimed)
                )
        elif status is ExecutionStatus.PENDING and pending_after is not None:
            cutoff = now - pending_after
            if last.occurred_at < cutoff:
                message = f"pending for more than {pending_after.total_seconds():g} s"
                candidates.append(Candidate(last.stream_id, status, cutoff, message))
    if stale_after is not None:
        await leases.forget_ended(
            {last.stream_id for last in opened}, quiet_before=now - stale_after
        )
    return candidates


def _last_sign(started: LastStatusChange, lease: Lease | None) -> datetime:
    if lease is None:
        return started.occurred_at
    return max(started.occurred_at, lease.heartbeat_at)


async def reap_one(store: EventStore, candidate: Candidate) -> bool:
    """Fail one candidate if it is still overdue; whether this call failed it."""
    state = await store.executions.get(candidate.execution_id)
    if state.status is not candidate.status:
        return False  # it moved on since the pass began
    if state.status is ExecutionStatus.PENDING:
        if state.created_at >= candidate.cutoff:
            return False
        # Fail only the version seen: a start since then keeps it.
        return await _append_failure(store, state, candidate.message, retry=False)
    assert state.started_at is not None  # noqa: S101 - running means started
    assert state.worker_id is not None  # noqa: S101
    if state.started_at >= candidate.cutoff and not candidate.claimed:
        return False
    claimed = await Leases(store.backend).claim(
        state.id,
        worker_id=state.worker_id,
        quiet_since=state.started_at,
        stale_before=candidate.cutoff,
    )
    if not claimed:
        return False  # a heartbeat came in time
    return await _append_failure(store, state, candidate.message, retry=True)


async def _append_failure(
    store: EventStore, state: ExecutionState, message: str, *, retry: bool
) -> bool:
    """Append the timeout on the state's version; with `retry`, on any later running one."""
    event = NewEvent.of(
        ExecutionFailed(
            error=ErrorInfo(type="Timeout", message=message, retryable=True)
        ),
        metadata={"actor": REAPER},
    )
    while True:
        try:
            await store.append(state.id, [event], expected_version=state.version)
        except errors.InvalidTransition:
            return False  # another reaper, or the worker, ended it first
        except errors.ConcurrencyError:
            if not retry:
                return False
            # The claimed run moved on (a progress step): still fail it while
            # it runs, since no heartbeat can renew a claimed lease.
            state = await store.executions.get(state.id)
            if state.status is not ExecutionStatus.RUNNING:
                return False
        else:
            logger.info(
                "failed execution %s: %s",
                state.id,
                message,
                extra={"execution_id": str(state.id)},
            )
            return True
