"""The lifecycle service on both backends: the transition table of ARCHITECTURE §3."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from eventstore import (
    ErrorInfo,
    EventStore,
    ExecutionNotFound,
    ExecutionStatus,
    IdempotencyConflict,
    InvalidTransition,
    ReferenceNotFound,
    ValidationError,
    WaitTimeout,
)
from tests.helpers import References, count_events, execution_in

if TYPE_CHECKING:
    from uuid import UUID

ONE_MS = timedelta(milliseconds=1)
Command = Callable[[EventStore, "UUID"], Awaitable[object]]

COMMANDS: dict[str, Command] = {
    "ExecutionStarted": lambda s, i: s.executions.start(i, worker_id="w-2"),
    "ExecutionProgressed": lambda s, i: s.executions.progress(i, step="plan"),
    "ExecutionCompleted": lambda s, i: s.executions.complete(i, result=1),
    "ExecutionFailed": lambda s, i: s.executions.fail(
        i, error=ErrorInfo(type="E", message="m")
    ),
    "ExecutionCancellationRequested": lambda s, i: s.executions.request_cancel(i),
    "ExecutionCancelled": lambda s, i: s.executions.cancel(i),
}

# ARCHITECTURE §3: event type -> statuses it is allowed in, and the resulting status.
ALLOWED: dict[str, set[ExecutionStatus]] = {
    "ExecutionStarted": {ExecutionStatus.PENDING},
    "ExecutionProgressed": {ExecutionStatus.RUNNING},
    "ExecutionCompleted": {ExecutionStatus.RUNNING},
    "ExecutionFailed": {ExecutionStatus.PENDING, ExecutionStatus.RUNNING},
    "ExecutionCancellationRequested": {
        ExecutionStatus.PENDING,
        ExecutionStatus.RUNNING,
    },
    "ExecutionCancelled": {ExecutionStatus.PENDING, ExecutionStatus.RUNNING},
}
RESULT: dict[tuple[str, ExecutionStatus], ExecutionStatus] = {
    ("ExecutionStarted", ExecutionStatus.PENDING): ExecutionStatus.RUNNING,
    ("ExecutionProgressed", ExecutionStatus.RUNNING): ExecutionStatus.RUNNING,
    ("ExecutionCompleted", ExecutionStatus.RUNNING): ExecutionStatus.COMPLETED,
    ("ExecutionFailed", ExecutionStatus.PENDING): ExecutionStatus.FAILED,
    ("ExecutionFailed", ExecutionStatus.RUNNING): ExecutionStatus.FAILED,
    # A pending execution is cancelled at once; a running one only records the request.
    (
        "ExecutionCancellationRequested",
        ExecutionStatus.PENDING,
    ): ExecutionStatus.CANCELLED,
    (
        "ExecutionCancellationRequested",
        ExecutionStatus.RUNNING,
    ): ExecutionStatus.RUNNING,
    ("ExecutionCancelled", ExecutionStatus.PENDING): ExecutionStatus.CANCELLED,
    ("ExecutionCancelled", ExecutionStatus.RUNNING): ExecutionStatus.CANCELLED,
}


@pytest.mark.parametrize("status", list(ExecutionStatus))
@pytest.mark.parametrize("event_type", list(COMMANDS))
async def test_every_transition_of_the_table(
    store: EventStore, refs: References, status: ExecutionStatus, event_type: str
) -> None:
    execution_id = await execution_in(store, refs, status)
    before = await store.executions.get(execution_id)
    events_before = await count_events(store)
    if status in ALLOWED[event_type]:
        state = await COMMANDS[event_type](store, execution_id)
        expected = RESULT[(event_type, status)]
        assert state == await store.executions.get(execution_id)
        assert (await store.executions.get(execution_id)).status is expected
        history = await store.executions.history(execution_id)
        assert history[before.version].type == event_type
    else:
        with pytest.raises(InvalidTransition) as caught:
            await COMMANDS[event_type](store, execution_id)
        assert caught.value.execution_id == execution_id
        assert caught.value.status == status.value
        assert caught.value.event_type == event_type
        for name in (str(execution_id), status.value, event_type):
            assert name in str(caught.value)
        assert await count_events(store) == events_before
        assert await store.executions.get(execution_id) == before


async def test_a_full_run_folds_metrics_and_durations(
    store: EventStore, refs: References, url: str
) -> None:
    executions = store.executions
    execution_id = await executions.create(
        message_id=refs.message.id, graph_id=refs.graph.id, inputs={"q": "why?"}
    )
    pending = await executions.get(execution_id)
    assert pending.status is ExecutionStatus.PENDING
    assert pending.queue_ms is None
    assert pending.run_ms is None
    assert pending.total_ms is None
    assert pending.thread_id == refs.thread.id
    assert pending.attempt == 1
    assert pending.retry_of is None
    running = await executions.start(execution_id, worker_id="worker-7")
    assert running.worker_id == "worker-7"
    assert running.queue_ms is not None
    assert running.run_ms is None
    await executions.progress(
        execution_id,
        step="research",
        detail={"pages": 3},
        metrics={"prompt_tokens": 100, "completion_tokens": 20, "cost_usd": 0.25},
    )
    await executions.progress(
        execution_id,
        step=2,
        metrics={"prompt_tokens": 50, "cost_usd": 0.5, "tool_calls": 2},
    )
    done = await executions.complete(
        execution_id, result={"summary": "ok"}, metrics={"completion_tokens": 5}
    )
    assert done.status is ExecutionStatus.COMPLETED
    assert done.steps_completed == 2
    assert done.metrics == {
        "prompt_tokens": 150,
        "completion_tokens": 25,
        "cost_usd": 0.75,
        "tool_calls": 2,
    }
    assert done.result == {"summary": "ok"}
    assert done.finished_at is not None
    assert done.started_at is not None
    assert done.run_ms == (done.finished_at - done.started_at) // ONE_MS
    assert done.total_ms == (done.finished_at - done.created_at) // ONE_MS
    assert done.queue_ms == (done.started_at - done.created_at) // ONE_MS
    assert done.version == 5
    assert not done.cancel_requested
    # Another process folds the same state from the log alone.
    async with EventStore.open(url) as other:
        assert await other.executions.get(execution_id) == done


async def test_failing_records_the_error_from_an_exception_or_a_mapping(
    store: EventStore, refs: References
) -> None:
    first = await execution_in(store, refs, ExecutionStatus.RUNNING)
    try:
        raise RuntimeError("model quota exceeded")
    except RuntimeError as exc:
        failed = await store.executions.fail(
            first, error=exc, metrics={"prompt_tokens": 3}
        )
    assert failed.status is ExecutionStatus.FAILED
    assert failed.error is not None
    assert failed.error["type"] == "RuntimeError"
    assert failed.error["message"] == "model quota exceeded"
    assert "Traceback" in failed.error["traceback"]
    assert failed.metrics == {"prompt_tokens": 3}
    second = await execution_in(store, refs, ExecutionStatus.PENDING)
    failed = await store.executions.fail(
        second, error={"type": "Timeout", "message": "no worker", "retryable": True}
    )
    assert failed.error == {
        "type": "Timeout",
        "message": "no worker",
        "traceback": None,
        "retryable": True,
    }
    assert failed.run_ms is None  # never started
    assert failed.total_ms is not None


async def test_cancelling_a_pending_execution_appends_both_events_at_once(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.PENDING)
    state = await store.executions.request_cancel(execution_id, reason="user left")
    assert state.status is ExecutionStatus.CANCELLED
    assert state.cancel_requested
    history = await store.executions.history(execution_id)
    assert [e.type for e in history] == [
        "ExecutionCreated",
        "ExecutionCancellationRequested",
        "ExecutionCancelled",
    ]
    request, cancelled = history[1:]
    assert request.data["reason"] == "user left"
    assert cancelled.data["reason"] == "user left"
    # One append: same transaction on PostgreSQL, same recorded_at on both.
    assert request.transaction_id == cancelled.transaction_id
    assert request.recorded_at == cancelled.recorded_at


async def test_a_running_execution_records_the_request_for_its_worker(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    state = await store.executions.request_cancel(
        execution_id, reason="too slow", requested_by="alice"
    )
    assert state.status is ExecutionStatus.RUNNING
    assert state.cancel_requested
    assert state.cancel_requested_at is not None
    history = await store.executions.history(execution_id)
    assert history[-1].data == {"reason": "too slow", "requested_by": "alice"}
    cancelled = await store.executions.cancel(execution_id, reason="acknowledged")
    assert cancelled.status is ExecutionStatus.CANCELLED
    assert cancelled.run_ms is not None


async def test_an_outcome_before_the_acknowledgement_stands(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await store.executions.request_cancel(execution_id)
    done = await store.executions.complete(execution_id, result="finished anyway")
    assert done.status is ExecutionStatus.COMPLETED
    assert done.cancel_requested
    with pytest.raises(InvalidTransition):
        await store.executions.cancel(execution_id)


async def test_requested_by_defaults_to_the_metadata_actor(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    await store.executions.request_cancel(
        execution_id, metadata={"actor": "ops-bot", "correlation_id": uuid.uuid4()}
    )
    last = (await store.executions.history(execution_id))[-1]
    assert last.data["requested_by"] == "ops-bot"
    assert last.metadata.actor == "ops-bot"
    assert last.metadata.correlation_id is not None


async def test_retry_creates_the_next_attempt_once(
    store: EventStore, refs: References
) -> None:
    failed = await execution_in(store, refs, ExecutionStatus.FAILED)
    retry_id = await store.executions.retry(failed)
    assert retry_id != failed
    retried = await store.executions.get(retry_id)
    original = await store.executions.get(failed)
    assert retried.status is ExecutionStatus.PENDING
    assert retried.attempt == 2
    assert retried.retry_of == failed
    assert (retried.message_id, retried.graph_id, retried.inputs) == (
        original.message_id,
        original.graph_id,
        original.inputs,
    )
    events = await count_events(store)
    assert await store.executions.retry(failed) == retry_id
    assert await count_events(store) == events
    await store.executions.fail(retry_id, error={"type": "E", "message": "again"})
    third = await store.executions.get(await store.executions.retry(retry_id))
    assert third.attempt == 3
    assert third.retry_of == retry_id


@pytest.mark.parametrize(
    "status",
    [ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.COMPLETED],
)
async def test_only_failed_executions_can_be_retried(
    store: EventStore, refs: References, status: ExecutionStatus
) -> None:
    execution_id = await execution_in(store, refs, status)
    events = await count_events(store)
    with pytest.raises(InvalidTransition, match=status.value):
        await store.executions.retry(execution_id)
    assert await count_events(store) == events


async def test_the_same_idempotency_key_returns_the_same_execution(
    store: EventStore, refs: References
) -> None:
    create = store.executions.create
    first = await create(
        message_id=refs.message.id,
        graph_id=refs.graph.id,
        inputs=[1],
        idempotency_key="msg-42",
    )
    events = await count_events(store)
    second = await create(
        message_id=refs.message.id,
        graph_id=refs.graph.id,
        inputs=[1],
        idempotency_key="msg-42",
    )
    assert first == second
    assert await count_events(store) == events
    other = await create(
        message_id=refs.message.id,
        graph_id=refs.graph.id,
        inputs=[1],
        idempotency_key="msg-43",
    )
    assert other != first
    with pytest.raises(IdempotencyConflict):
        await create(
            message_id=refs.message.id,
            graph_id=refs.graph.id,
            inputs=[2],
            idempotency_key="msg-42",
        )
    assert await count_events(store) == events + 1


async def test_unknown_references_are_refused_and_nothing_is_written(
    store: EventStore, refs: References
) -> None:
    missing = uuid.uuid4()
    with pytest.raises(ReferenceNotFound) as caught:
        await store.executions.create(message_id=missing, graph_id=refs.graph.id)
    assert caught.value.entity == "message"
    assert caught.value.entity_id == missing
    assert isinstance(caught.value, LookupError)
    with pytest.raises(ReferenceNotFound, match="graph"):
        await store.executions.create(message_id=refs.message.id, graph_id=missing)
    with pytest.raises(ReferenceNotFound, match="thread"):
        await store.messages.create(thread_id=missing, role="user", content="x")
    assert await count_events(store) == 0


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            lambda s, i: s.executions.progress(
                i, step="s", metrics={"prompt_tokens": "many"}
            ),
            "prompt_tokens",
        ),
        (
            lambda s, i: s.executions.progress(
                i, step="s", metrics={"cost_usd": float("nan")}
            ),
            "finite",
        ),
        (
            lambda s, i: s.executions.progress(
                i, step="s", metrics={"prompt_tokens": -5}
            ),
            "negative",
        ),
        (
            lambda s, i: s.executions.progress(i, step="s", metrics={"flag": True}),
            "flag",
        ),
        (lambda s, i: s.executions.progress(i, step=None), "step"),
        (
            lambda s, i: s.executions.progress(i, step="s", detail={1, 2}),
            "not a JSON value",
        ),
        (lambda s, i: s.executions.complete(i, result=object()), "not a JSON value"),
        (lambda s, i: s.executions.fail(i, error={"message": "no type"}), "type"),
        (lambda s, i: s.executions.fail(i, error="a string"), "ErrorInfo"),
        (lambda s, i: s.executions.start(i, worker_id=""), "worker_id"),
        (
            lambda s, i: s.executions.start(i, worker_id="w", metadata={"actor": 1}),
            "actor",
        ),
        (
            lambda s, i: s.executions.start(i, worker_id="w", metadata={"k": b"bytes"}),
            "not a JSON value",
        ),
        (lambda s, i: s.executions.get("not-a-uuid"), "UUID"),
    ],
)
async def test_bad_payloads_and_metadata_are_refused_and_nothing_is_written(
    store: EventStore, refs: References, command: Command, message: str
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    events = await count_events(store)
    with pytest.raises(ValidationError, match=message) as caught:
        await command(store, execution_id)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)
    assert await count_events(store) == events


async def test_bad_inputs_on_create_are_refused(
    store: EventStore, refs: References
) -> None:
    with pytest.raises(ValidationError, match="NUL"):
        await store.executions.create(
            message_id=refs.message.id,
            graph_id=refs.graph.id,
            inputs={"text": "a\x00b"},
        )
    with pytest.raises(ValidationError, match="idempotency_key"):
        await store.executions.create(
            message_id=refs.message.id, graph_id=refs.graph.id, idempotency_key=""
        )
    assert await count_events(store) == 0


async def test_unknown_executions(store: EventStore) -> None:
    missing = uuid.uuid4()
    for call in (
        store.executions.get(missing),
        store.executions.history(missing),
        store.executions.start(missing, worker_id="w"),
        store.executions.wait(missing, timeout=0.1),
        store.executions.retry(missing),
    ):
        with pytest.raises(ExecutionNotFound) as caught:
            await call
        assert caught.value.execution_id == missing
        assert isinstance(caught.value, LookupError)


async def test_wait_returns_the_terminal_state_or_times_out(
    store: EventStore, refs: References
) -> None:
    import asyncio

    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    with pytest.raises(WaitTimeout) as caught:
        await store.executions.wait(execution_id, timeout=0.05)
    assert caught.value.execution_id == execution_id
    assert caught.value.status == "running"
    assert isinstance(caught.value, TimeoutError)

    waiter = asyncio.create_task(store.executions.wait(execution_id, timeout=30))
    await asyncio.sleep(0)
    assert not waiter.done()
    done = await store.executions.complete(execution_id, result="yes")
    assert await waiter == done


async def test_history_lists_every_event_in_order(
    store: EventStore, refs: References
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.COMPLETED)
    history = await store.executions.history(execution_id)
    assert [e.type for e in history] == [
        "ExecutionCreated",
        "ExecutionStarted",
        "ExecutionCompleted",
    ]
    assert [e.version for e in history] == [1, 2, 3]
    assert history[1].payload().model_dump() == {"worker_id": "worker-1"}


async def test_the_state_a_command_returns_equals_a_fresh_fold_elsewhere(
    store: EventStore, refs: References, url: str
) -> None:
    execution_id = await execution_in(store, refs, ExecutionStatus.RUNNING)
    # 2.0**63 is written as 9223372036854776000 (its shortest digits), which
    # every reader reads back as that integer: the command returns it so too.
    returned = await store.executions.complete(
        execution_id,
        result={"huge": 1.5e300, "one": 1.0, "big": 10**30, "float": 2.0**63},
        metrics={"cost_usd": 1e-7, "prompt_tokens": 2**60},
    )
    assert returned.result is not None
    assert returned.result["float"] == 9223372036854776000
    async with EventStore.open(url) as other:
        assert await other.executions.get(execution_id) == returned
