"""The lifecycle service (`store.executions`): decides transitions, never builds SQL.

Each command says which event the execution's state allows; the states,
their memory and the retry on a lost race are `eventstore.execution_states`.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from eventstore import arguments, errors
from eventstore.events import payloads
from eventstore.events.envelope import NewEvent, RecordedEvent, coerce_metadata
from eventstore.execution_states import ExecutionStates, MetadataArg
from eventstore.following import Watcher
from eventstore.labels import changed_labels, check_count
from eventstore.leases import Leases
from eventstore.log import as_stream_id
from eventstore.references import execution_context
from eventstore.status import ExecutionStatus
from eventstore.telemetry import instrumented

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping, Sequence

    from eventstore.backends.base import Backend
    from eventstore.fold import ExecutionState
    from eventstore.log import EventLog
    from eventstore.references import Graphs, Messages
    from eventstore.wakeups import Wakeups

# Ids derived from idempotency keys and retries live in this namespace, so the
# same key always names the same execution.
ID_NAMESPACE: Final = UUID("5b0c7c36-2f4e-4c1e-9a55-6c3f0f3d1a70")


@instrumented  # metrics and spans per command, with the otel extra
class ExecutionService:
    """Create, drive and read executions; every step is an event in their stream."""

    def __init__(
        self,
        *,
        log: EventLog,
        backend: Backend,
        messages: Messages,
        graphs: Graphs,
        retries: int,
        poll_interval: float,
        wakeups: Wakeups,
    ) -> None:
        self._states = ExecutionStates(log, retries=retries)
        self._backend = backend
        self._messages = messages
        self._graphs = graphs
        self._leases = Leases(backend)
        self._watcher = Watcher(
            log=log, states=self._states, wakeups=wakeups, poll_interval=poll_interval
        )

    async def create(
        self,
        *,
        message_id: UUID | str,
        graph_id: UUID | str,
        inputs: Any = None,
        labels: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        metadata: MetadataArg = None,
    ) -> UUID:
        """Create a pending execution of a graph in reply to a message.

        Args:
            message_id: the message it replies to.
            graph_id: the graph it runs.
            inputs: any JSON value.
            labels: up to 32 labels to find it by (README, "The lifecycle": keys and values).
            idempotency_key: the same key always returns the same execution.
            metadata: actor, correlation_id, causation_id and free keys.

        Returns:
            The new execution's id.

        Raises:
            ReferenceNotFound: the message or the graph does not exist.
            ValidationError: bad inputs, labels or metadata.
            IdempotencyConflict: the key was used for other content.
        """
        if idempotency_key is not None:
            arguments.checked_text("idempotency_key", idempotency_key)
        message = as_stream_id(message_id)
        graph = as_stream_id(graph_id)
        meta = coerce_metadata(metadata)
        thread = await execution_context(
            self._backend,
            self._messages,
            self._graphs,
            message_id=message,
            graph_id=graph,
        )
        created = payloads.build(
            payloads.ExecutionCreated,
            message_id=message,
            graph_id=graph,
            thread_id=thread,
            inputs=inputs,
            labels={} if labels is None else labels,
        )
        if idempotency_key is None:
            execution_id, event_id = uuid.uuid4(), uuid.uuid4()
        else:
            execution_id = uuid.uuid5(ID_NAMESPACE, f"execution:{idempotency_key}")
            event_id = uuid.uuid5(ID_NAMESPACE, f"created:{idempotency_key}")
        await self._states.create(
            execution_id, NewEvent.of(created, metadata=meta, event_id=event_id)
        )
        return execution_id

    async def start(
        self, execution_id: UUID | str, *, worker_id: str, metadata: MetadataArg = None
    ) -> ExecutionState:
        """A worker picked the execution up: pending -> running.

        Raises:
            ExecutionNotFound: no such execution.
            InvalidTransition: it is not pending.
            ConcurrencyError: it kept changing under us.
        """
        started = payloads.build(payloads.ExecutionStarted, worker_id=worker_id)
        return await self._states.command(execution_id, metadata, lambda _: [started])

    async def progress(
        self,
        execution_id: UUID | str,
        *,
        step: str | int,
        detail: Any = None,
        metrics: Mapping[str, float] | None = None,
        metadata: MetadataArg = None,
    ) -> ExecutionState:
        """A step finished; `metrics` are usage deltas (summed by the fold).

        Raises:
            ExecutionNotFound: no such execution.
            InvalidTransition: it is not running.
            ValidationError: a bad step, detail or metric.
        """
        event = payloads.build(
            payloads.ExecutionProgressed,
            step=step,
            detail=detail,
            metrics=dict(arguments.checked_mapping("metrics", metrics)),
        )
        return await self._states.command(execution_id, metadata, lambda _: [event])

    async def complete(
        self,
        execution_id: UUID | str,
        *,
        result: Any = None,
        metrics: Mapping[str, float] | None = None,
        metadata: MetadataArg = None,
    ) -> ExecutionState:
        """The run finished: running -> completed.

        Raises:
            ExecutionNotFound: no such execution.
            InvalidTransition: it is not running.
        """
        event = payloads.build(
            payloads.ExecutionCompleted,
            result=result,
            metrics=dict(arguments.checked_mapping("metrics", metrics)),
        )
        return await self._states.command(execution_id, metadata, lambda _: [event])

    async def fail(
        self,
        execution_id: UUID | str,
        *,
        error: payloads.ErrorArg,
        metrics: Mapping[str, float] | None = None,
        metadata: MetadataArg = None,
    ) -> ExecutionState:
        """The run failed: pending or running -> failed.

        Args:
            execution_id: the execution.
            error: an ErrorInfo, a mapping of its keys, or an exception.
            metrics: usage deltas.
            metadata: actor and ids.

        Raises:
            ExecutionNotFound: no such execution.
            InvalidTransition: it already ended.
        """
        event = payloads.build(
            payloads.ExecutionFailed,
            error=payloads.ErrorInfo.coerce(error),
            metrics=dict(arguments.checked_mapping("metrics", metrics)),
        )
        return await self._states.command(execution_id, metadata, lambda _: [event])

    async def request_cancel(
        self,
        execution_id: UUID | str,
        *,
        reason: str | None = None,
        requested_by: str | None = None,
        metadata: MetadataArg = None,
    ) -> ExecutionState:
        """Ask for cancellation.

        A pending execution is cancelled at once (one atomic append of the
        request and the cancellation); a running one records the request for
        its worker to acknowledge with `cancel`.

        Raises:
            ExecutionNotFound: no such execution.
            InvalidTransition: it already ended.
        """
        meta = coerce_metadata(metadata)
        request = payloads.build(
            payloads.ExecutionCancellationRequested,
            reason=reason,
            requested_by=requested_by if requested_by is not None else meta.actor,
        )
        cancelled = payloads.build(payloads.ExecutionCancelled, reason=reason)

        def decide(state: ExecutionState) -> list[payloads.EventPayload]:
            if state.status is ExecutionStatus.PENDING:
                return [request, cancelled]
            return [request]

        return await self._states.command(execution_id, meta, decide)

    async def label(
        self,
        execution_id: UUID | str,
        *,
        set: Mapping[str, str] | None = None,
        remove: Sequence[str] | None = None,
        metadata: MetadataArg = None,
    ) -> ExecutionState:
        """Set and remove labels, in any status (it changes none).

        Keys in `remove` that the execution does not have are no error.

        Raises:
            ExecutionNotFound: no such execution.
            ValidationError: a bad key or value, nothing to change, or more
                than 32 labels after the change; nothing was written.
        """
        event = payloads.build(
            payloads.ExecutionLabelled,
            set={} if set is None else set,
            remove=[] if remove is None else remove,
        )

        def decide(state: ExecutionState) -> list[payloads.EventPayload]:
            check_count(changed_labels(state.labels, event.set, event.remove))
            return [event]

        return await self._states.command(execution_id, metadata, decide)

    async def cancel(
        self,
        execution_id: UUID | str,
        *,
        reason: str | None = None,
        metadata: MetadataArg = None,
    ) -> ExecutionState:
        """The worker's acknowledgement: pending or running -> cancelled.

        Raises:
            ExecutionNotFound: no such execution.
            InvalidTransition: it already ended.
        """
        event = payloads.build(payloads.ExecutionCancelled, reason=reason)
        return await self._states.command(execution_id, metadata, lambda _: [event])

    async def retry(
        self, execution_id: UUID | str, *, metadata: MetadataArg = None
    ) -> UUID:
        """Run a failed execution again.

        Creates a new execution for the same message, graph, inputs and labels, with
        `attempt` one higher and `retry_of` naming the failed one. Retrying
        the same failed execution again returns the same new id.

        Raises:
            ExecutionNotFound: no such execution.
            InvalidTransition: it is not failed.
        """
        failed = await self.get(execution_id)
        if failed.status is not ExecutionStatus.FAILED:
            raise errors.InvalidTransition(
                execution_id=failed.id,
                status=failed.status.value,
                event_type="ExecutionCreated",
            )
        created = payloads.build(
            payloads.ExecutionCreated,
            message_id=failed.message_id,
            graph_id=failed.graph_id,
            thread_id=failed.thread_id,
            inputs=failed.inputs,
            attempt=failed.attempt + 1,
            retry_of=failed.id,
            labels=failed.labels,
        )
        new_id = uuid.uuid5(ID_NAMESPACE, f"retry:{failed.id}")
        event_id = uuid.uuid5(ID_NAMESPACE, f"retry-created:{failed.id}")
        await self._states.create(
            new_id, NewEvent.of(created, metadata=metadata, event_id=event_id)
        )
        return new_id

    async def heartbeat(
        self, execution_id: UUID | str, *, worker_id: str
    ) -> ExecutionState:
        """Renew the liveness lease of a running execution (a row, not an event).

        Returns the current state, so the worker also learns of a
        cancellation request (`cancel_requested`).

        Raises:
            ExecutionNotFound: no such execution.
            InvalidTransition: it is not running (event type ``heartbeat``),
                or the reaper has claimed its stale lease and is failing it.
            ValidationError: an empty worker id.
        """
        arguments.checked_text(
            "worker_id", worker_id, max_length=payloads.WORKER_ID_MAX
        )
        state = await self.get(execution_id)
        if state.status is not ExecutionStatus.RUNNING:
            raise errors.InvalidTransition(
                execution_id=state.id, status=state.status.value, event_type="heartbeat"
            )
        if not await self._leases.beat(state.id, worker_id):
            raise errors.InvalidTransition(
                execution_id=state.id,
                status=state.status.value,
                event_type="heartbeat",
                reason="the reaper found its lease stale and is failing it",
            )
        return state

    async def get(self, execution_id: UUID | str) -> ExecutionState:
        """The execution's current state, folded from its stream now.

        Raises:
            ExecutionNotFound: no such execution.
            ValidationError: the id is not a UUID.
        """
        return await self._states.get(execution_id)

    async def history(self, execution_id: UUID | str) -> list[RecordedEvent]:
        """Every event of the execution, in order.

        Raises:
            ExecutionNotFound: no such execution.
        """
        return await self._states.history(execution_id)

    def forget(self, execution_ids: Sequence[UUID]) -> None:
        """Drop remembered states of executions the archive removed."""
        self._states.forget(execution_ids)

    async def wait(
        self, execution_id: UUID | str, *, timeout: float | None = None
    ) -> ExecutionState:
        """The state once the execution is completed, failed or cancelled.

        `timeout` is in seconds (>= 0); None or infinity waits for ever.

        Raises:
            ExecutionNotFound: no such execution.
            WaitTimeout: it is still active after `timeout` seconds.
            ValidationError: a timeout that is not a number >= 0.
        """
        return await self._watcher.wait(execution_id, timeout=timeout)

    def follow(
        self, execution_id: UUID | str, *, after_version: int = 0
    ) -> AsyncIterator[RecordedEvent]:
        """The execution's events after `after_version` as they are appended, to its end.

        Reads only this stream; woken like `wait`. Ends after the event that
        completes, fails or cancels the run (at once if that is at or before
        `after_version`); bound it with `asyncio.timeout` where needed.

        Raises:
            ExecutionNotFound: no such execution.
            ValidationError: the id is not a UUID, or a bad `after_version`.
        """
        return self._watcher.follow(execution_id, after_version=after_version)
