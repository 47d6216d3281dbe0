"""The console's JSON API (README, "Web console"): runs, one run's state, events and live stream, stats.

Lists, counts and statistics read the projection; one run's state and
events are read from the log, so a run is found (and current) the moment
its events are committed, before any projector folds them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from sse_starlette import EventSourceResponse
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventstore import errors
from eventstore.audit import is_execution_stream
from eventstore.console.run_params import (
    FILTERS,
    PAGING,
    check_known,
    page_params,
    run_filters,
    single,
)
from projections import ExecutionStats, ExecutionsView, projection_status

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    from starlette.requests import Request

    from eventstore import EventStore, RecordedEvent

# Seconds between comment lines on a quiet stream, so that proxies keep it open.
STREAM_PING: Final = 15
MAX_VERSION: Final = 2**31 - 1  # a stream's versions are 32-bit


class UnknownExecution(LookupError):
    """The path names no execution, or is no execution id at all (404)."""


def store_of(request: Request) -> EventStore:
    """The store the application's lifespan opened."""
    store: EventStore = request.app.state.store
    return store


async def execution_id_of(request: Request) -> UUID:
    """The path's execution id: a whole id or a unique prefix of 8+ hex digits.

    Only the prefix is looked up: whether a whole id names a run, the
    handler's one read of it says (ExecutionNotFound, a 404 too).

    Raises:
        UnknownExecution: a malformed id, or a prefix of no execution.
    """
    text: str = request.path_params["execution_id"]
    try:
        return await store_of(request).expand_id(text)
    except errors.ValidationError as exc:
        raise UnknownExecution(str(exc)) from exc


def event_json(event: RecordedEvent) -> dict[str, Any]:
    """A recorded event as the API shows it."""
    return {
        "position": event.position,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "event_id": str(event.event_id),
        "data": event.data,
        "metadata": event.metadata.model_dump(mode="json"),
        "occurred_at": event.occurred_at.isoformat(),
        "recorded_at": event.recorded_at.isoformat(),
        "hash": event.hash.hex(),
    }


async def list_executions(request: Request) -> JSONResponse:
    """`GET /api/executions`: a page of runs, newest first, and the next page's cursor."""
    params = request.query_params
    check_known(params, FILTERS | PAGING)
    page = await ExecutionsView(store_of(request)).list(
        **page_params(params), **run_filters(params)
    )
    return JSONResponse(page.model_dump(mode="json"))


async def count_executions(request: Request) -> JSONResponse:
    """`GET /api/executions/counts`: how many runs of each status match the filters."""
    params = request.query_params
    check_known(params, FILTERS)
    counts = await ExecutionsView(store_of(request)).count_by_status(
        **run_filters(params)
    )
    return JSONResponse({status.value: count for status, count in counts.items()})


async def get_execution(request: Request) -> JSONResponse:
    """`GET /api/executions/{id}`: the run's state, folded from its events now."""
    check_known(request.query_params, ())
    execution_id = await execution_id_of(request)
    state = await store_of(request).executions.get(execution_id)
    return JSONResponse(state.model_dump(mode="json"))


async def list_events(request: Request) -> JSONResponse:
    """`GET /api/executions/{id}/events`: the run's recorded events, in order."""
    check_known(request.query_params, ())
    execution_id = await execution_id_of(request)
    events = await store_of(request).executions.history(execution_id)
    if not is_execution_stream(events):  # the store's own records are no run
        raise errors.ExecutionNotFound(execution_id=execution_id)
    return JSONResponse([event_json(event) for event in events])


async def stream_events(request: Request) -> EventSourceResponse:
    """`GET /api/executions/{id}/stream`: the run's events as they are appended.

    From now on; with `?from_version=N`, the recorded ones from version N
    first. A reconnecting EventSource sends the last version it saw as
    `Last-Event-ID`, and resumes after it. Ends after a terminal event.
    """
    params = request.query_params
    check_known(params, {"from_version"})
    execution_id = await execution_id_of(request)
    store = store_of(request)
    # The run's state, read once: it proves the run exists and is where a
    # stream without a starting version starts.
    state = await store.executions.get(execution_id)
    after = _stream_start(request, state.version)

    async def events() -> AsyncIterator[dict[str, str]]:
        async for event in store.executions.follow(execution_id, after_version=after):
            data = json.dumps(event_json(event), separators=(",", ":"))
            yield {"id": str(event.version), "data": data}

    return EventSourceResponse(events(), ping=STREAM_PING)


def _stream_start(request: Request, version: int) -> int:
    """The version after which the stream starts; `version` is the run's now."""
    resumed = request.headers.get("last-event-id")
    from_version = single(request.query_params, "from_version")
    for given, name in ((resumed, "Last-Event-ID"), (from_version, "from_version")):
        if given is not None and not (
            given.isdecimal() and len(given) <= 10 and int(given) <= MAX_VERSION
        ):
            raise errors.ValidationError(
                f"invalid {name} {given[:40]!r}: a version from 0 to {MAX_VERSION}"
            )
    if resumed is not None:
        return int(resumed)
    if from_version is not None:
        return max(0, int(from_version) - 1)
    return version


async def stats(request: Request) -> JSONResponse:
    """`GET /api/stats`: `eventstore stats`'s rows, `group_by` repeated, with the filters of the run queries."""
    params = request.query_params
    check_known(params, FILTERS | {"group_by"})
    rows = await ExecutionStats(store_of(request)).summary(
        group_by=params.getlist("group_by"), **run_filters(params)
    )
    return JSONResponse([row.model_dump(mode="json") for row in rows])


async def projections(request: Request) -> JSONResponse:
    """`GET /api/projections`: what `eventstore project --status --json` prints."""
    check_known(request.query_params, ())
    status = await projection_status(store_of(request))
    return JSONResponse(status.model_dump(mode="json"))


async def healthz(request: Request) -> JSONResponse:
    """`GET /healthz`: 200 when the database answers, 503 otherwise (no token needed)."""
    try:
        revision = await store_of(request).schema_revision()
    except errors.DatabaseError as exc:
        return JSONResponse({"status": "unavailable", "error": str(exc)}, 503)
    return JSONResponse({"status": "ok", "schema_revision": revision})


ROUTES: Final = [
    Route("/api/executions", list_executions),
    Route("/api/executions/counts", count_executions),
    Route("/api/executions/{execution_id}", get_execution),
    Route("/api/executions/{execution_id}/events", list_events),
    Route("/api/executions/{execution_id}/stream", stream_events),
    Route("/api/stats", stats),
    Route("/api/projections", projections),
    Route("/healthz", healthz),
]
