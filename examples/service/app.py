"""A FastAPI service that records its agent crew's runs in the store.

    EVENTSTORE_URL=postgresql://postgres@127.0.0.1/crews \\
        .venv/bin/uvicorn examples.service.app:app

What it shows, each in one place:

- the lifespan opens the store, declares the crew (`graphs.get_or_create`:
  a restart finds the graph it made before) and, unless
  `CREW_SERVICE_PROJECTOR=external`, runs the projector in this process
  (`Projector.running()`); with `external`, run `eventstore project` as a
  process of its own beside one or more copies of this service;
- `POST /threads/{id}/messages` records the message (idempotent on the
  client's message id: a retried request is the same message) and a run
  labelled as the client asks, then works the run in a background task:
  start, steps with token metrics, complete or fail, and a cancellation
  request honoured between steps;
- reads: `GET /executions/{id}` (folded from the log: read-your-writes),
  `GET /executions?status=&label=key=value` (the projection, a page at a
  time), `GET /executions/{id}/events` (server-sent events that follow the
  run until it ends, from `executions.follow`);
- `STATUS_CODES` maps the store's errors to HTTP status codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import TYPE_CHECKING, Annotated, Any, Final
from uuid import UUID

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from eventstore import (
    EventStore,
    EventStoreError,
    ExecutionState,
    errors,
)
from projections import ExecutionsView, Projector

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CREW: Final = {"name": "support-crew", "version": "1"}
CREW_DEFINITION: Final = {"agents": ["triage", "researcher", "writer"]}
STEPS: Final = ("triage", "research", "write")

# The store's errors as HTTP answers, most specific first.
STATUS_CODES: Final[list[tuple[type[EventStoreError], int]]] = [
    (errors.ExecutionNotFound, 404),
    (errors.ReferenceNotFound, 404),
    (errors.ValidationError, 422),
    (errors.InvalidTransition, 409),
    (errors.IdempotencyConflict, 409),
    (errors.ReferenceConflict, 409),
    (errors.ConcurrencyError, 409),
    (errors.WaitTimeout, 504),
    (errors.DatabaseUnavailable, 503),
    (errors.SchemaNotMigrated, 503),
]


class NewMessage(BaseModel):
    """A user's message; the run that answers it gets `labels`."""

    content: str
    id: UUID | None = Field(default=None, description="the client's id, for retries")
    labels: dict[str, str] = Field(default_factory=dict)


class Accepted(BaseModel):
    """What `POST .../messages` started."""

    message_id: UUID
    execution_id: UUID


def create_app(
    url: str | None = None, *, projector: str | None = None, step_seconds: float = 0.01
) -> FastAPI:
    """The service on the store at `url` (default: $EVENTSTORE_URL).

    `projector`: "in-process" (the default) or "external"; default
    $CREW_SERVICE_PROJECTOR. `step_seconds`: how long the fake agents work
    on each step.
    """
    mode = projector or os.environ.get("CREW_SERVICE_PROJECTOR", "in-process")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with EventStore.open(url) as store:
            # Production runs `eventstore migrate` at deploy time (as the
            # schema's owner); the example migrates so it runs on its own.
            await store.migrate()
            app.state.store = store
            app.state.crew = (
                await store.graphs.get_or_create(**CREW, definition=CREW_DEFINITION)
            ).id
            app.state.workers = set()
            app.state.step_seconds = step_seconds
            async with contextlib.AsyncExitStack() as stack:
                if mode == "in-process":
                    await stack.enter_async_context(Projector(store).running())
                yield
                # Let runs in flight finish before the store closes.
                await asyncio.gather(*app.state.workers, return_exceptions=True)

    app = FastAPI(title="crew service", lifespan=lifespan)

    @app.exception_handler(EventStoreError)
    async def store_error(request: Request, exc: EventStoreError) -> JSONResponse:
        del request
        code = next((c for kind, c in STATUS_CODES if isinstance(exc, kind)), 500)
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, code)

    @app.post("/threads", status_code=201)
    async def create_thread(request: Request, title: str = "support") -> dict[str, Any]:
        thread = await _store(request).threads.create(title=title)
        return thread.model_dump(mode="json")

    @app.post("/threads/{thread_id}/messages", status_code=202)
    async def post_message(
        request: Request, thread_id: UUID, body: NewMessage
    ) -> Accepted:
        store = _store(request)
        message = await store.messages.create(
            thread_id=thread_id, role="user", content=body.content, id=body.id
        )
        run = await store.executions.create(
            message_id=message.id,
            graph_id=request.app.state.crew,
            inputs={"question": body.content},
            labels=body.labels,
            # A retried request finds the run of its first attempt.
            idempotency_key=f"reply-to-{message.id}",
        )
        _start_crew(request.app, run, body.content)
        return Accepted(message_id=message.id, execution_id=run)

    @app.post("/executions/{execution_id}/cancel")
    async def cancel(request: Request, execution_id: UUID) -> dict[str, Any]:
        state = await _store(request).executions.request_cancel(
            execution_id, reason="the user pressed stop"
        )
        return state.model_dump(mode="json")

    @app.get("/executions/{execution_id}")
    async def get_execution(request: Request, execution_id: UUID) -> dict[str, Any]:
        state = await _store(request).executions.get(execution_id)
        return state.model_dump(mode="json")

    @app.get("/executions")
    async def list_executions(
        request: Request,
        status: Annotated[list[str] | None, Query()] = None,
        label: Annotated[list[str] | None, Query(description="key=value")] = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> dict[str, Any]:
        labels = dict(pair.partition("=")[::2] for pair in label or [])
        page = await ExecutionsView(_store(request)).list(
            status=status, labels=labels or None, cursor=cursor, limit=limit
        )
        return page.model_dump(mode="json")

    @app.get("/executions/{execution_id}/events")
    async def follow(
        request: Request, execution_id: UUID, after_version: int = 0
    ) -> StreamingResponse:
        store = _store(request)
        await store.executions.get(execution_id)  # a 404 before the stream starts

        async def lines() -> AsyncIterator[str]:
            async for event in store.executions.follow(
                execution_id, after_version=after_version
            ):
                data = {"type": event.type, "data": event.data}
                yield f"id: {event.version}\nevent: {event.type}\ndata: {json.dumps(data)}\n\n"

        return StreamingResponse(lines(), media_type="text/event-stream")

    return app


def _store(request: Request) -> EventStore:
    store: EventStore = request.app.state.store
    return store


def _start_crew(app: FastAPI, run: UUID, question: str) -> None:
    # A task of the service's loop that outlives the request; the lifespan
    # waits for the ones in flight at shutdown.
    worker = asyncio.create_task(
        _work(app.state.store, run, question, app.state.step_seconds)
    )
    app.state.workers.add(worker)
    worker.add_done_callback(app.state.workers.discard)


async def _work(
    store: EventStore, run: UUID, question: str, step_seconds: float
) -> ExecutionState:
    """The fake crew: a few steps with token metrics; 'fail' in the question fails it."""
    executions = store.executions
    try:
        await executions.start(run, worker_id="crew-service")
    except errors.InvalidTransition:
        return await executions.get(run)  # cancelled while it waited to start
    for number, step in enumerate(STEPS, start=1):
        await asyncio.sleep(step_seconds)  # the agents at work
        if (await executions.get(run)).cancel_requested:
            return await executions.cancel(run, reason="stopped by the user")
        await executions.progress(
            run,
            step=step,
            metrics={"prompt_tokens": 100 * number, "completion_tokens": 20 * number},
        )
    if "fail" in question:
        return await executions.fail(
            run, error={"type": "ToolError", "message": "the search tool timed out"}
        )
    return await executions.complete(run, result={"answer": f"about {question!r}"})


app = create_app()
