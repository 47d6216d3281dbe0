"""The subjects: eventstore's `store.append` and its lifecycle service, on either backend."""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING, Literal

from bench import databases
from bench.timing import Sample, time_writers
from bench.workload import (
    BENCH_STREAM_TYPE,
    METADATA,
    STREAM_EVENT_TYPES,
    USAGE,
    Lifecycle,
    Payload,
)
from eventstore.events.envelope import NewEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from uuid import UUID

    from bench.databases import Guard, Server
    from bench.timing import AsyncTimer, AsyncWriter
    from bench.workload import Workload
    from eventstore.store import EventStore

BackendName = Literal["postgresql", "sqlite"]


@contextlib.asynccontextmanager
async def fresh_store(
    backend: BackendName,
    server: Server,
    *,
    pool_size: int,
    history: int,
    guard: Guard = "full",
) -> AsyncIterator[tuple[EventStore, Callable[[], Awaitable[float]]]]:
    """A migrated store on a throwaway database, and a probe of its mean payload size.

    On PostgreSQL, `history` events are bulk-loaded into `execution_events`
    first and the database is analyzed (see `databases.preload_history`).
    `guard` keeps all of the log's append guard, or less of it, to measure its cost.
    """
    if backend == "postgresql":
        async with (
            databases.throwaway_database(server) as dsn,
            databases.migrated_store(dsn, pool_size=pool_size) as store,
        ):
            await databases.weaken_guard_postgres(dsn, guard)
            await databases.preload_history(dsn, "execution_events", history)
            yield (
                store,
                lambda: databases.mean_size_postgres(dsn, "execution_events", "data"),
            )
    else:
        with databases.throwaway_sqlite_file() as path:
            async with databases.migrated_store(
                databases.sqlite_url(path), pool_size=pool_size
            ) as store:
                await databases.weaken_guard_sqlite(path, guard)
                yield (
                    store,
                    lambda: databases.mean_size_sqlite(
                        path, "execution_events", "data"
                    ),
                )


# --- store.append -------------------------------------------------------------------


def _append_writer(
    store: EventStore, streams: Sequence[Sequence[Payload]]
) -> AsyncWriter:
    async def write() -> None:
        for stream in streams:
            stream_id = uuid.uuid4()
            for version, (event_type, payload) in enumerate(
                zip(STREAM_EVENT_TYPES, stream, strict=True), 1
            ):
                event = NewEvent(type=event_type, data=payload, metadata=METADATA)
                # Not lifecycle events: a stream type of their own (execution
                # streams hold only the lifecycle, checked by the database).
                await store.append(
                    stream_id,
                    [event],
                    expected_version=version - 1,
                    stream_type=BENCH_STREAM_TYPE,
                )

    return write


async def store_append(
    backend: BackendName,
    server: Server,
    workload: Workload,
    *,
    timer: AsyncTimer = time_writers,
    guard: Guard = "full",
) -> Sample:
    """`store.append`: one event per append, expected_version = the previous version."""
    async with fresh_store(
        backend,
        server,
        pool_size=workload.writers,
        history=workload.history,
        guard=guard,
    ) as (store, size):
        await time_writers(
            [_append_writer(store, streams) for streams in workload.warmup().payloads]
        )
        timing = await timer(
            [_append_writer(store, streams) for streams in workload.payloads]
        )
        return Sample(timing=timing, events=workload.events, data_bytes=await size())


# --- the lifecycle service ----------------------------------------------------------------


def _lifecycle_writer(
    store: EventStore,
    *,
    message_id: UUID,
    graph_id: UUID,
    worker_id: str,
    runs: Sequence[Lifecycle],
) -> AsyncWriter:
    executions = store.executions

    async def write() -> None:
        for run in runs:
            execution_id = await executions.create(
                message_id=message_id, graph_id=graph_id, inputs=run.inputs
            )
            await executions.start(execution_id, worker_id=worker_id)
            await executions.progress(
                execution_id, step="research", detail=run.detail, metrics=USAGE
            )
            await executions.complete(execution_id, result=run.result, metrics=USAGE)

    return write


async def _lifecycle_writers(
    store: EventStore, lifecycles: Sequence[Sequence[Lifecycle]]
) -> list[AsyncWriter]:
    """One writer per message (created here, untimed), all running one graph."""
    thread = await store.threads.create(title="bench")
    graph = await store.graphs.create(
        name="bench-crew",
        version="1",
        definition={
            "nodes": ["planner", "researcher", "writer"],
            "edges": [["planner", "researcher"], ["researcher", "writer"]],
        },
    )
    writers: list[AsyncWriter] = []
    for index, runs in enumerate(lifecycles):
        message = await store.messages.create(
            thread_id=thread.id, role="user", content=f"question {index}"
        )
        writers.append(
            _lifecycle_writer(
                store,
                message_id=message.id,
                graph_id=graph.id,
                worker_id=f"worker-{index}",
                runs=runs,
            )
        )
    return writers


async def lifecycle(
    backend: BackendName,
    server: Server,
    workload: Workload,
    *,
    timer: AsyncTimer = time_writers,
    guard: Guard = "full",
) -> Sample:
    """`store.executions`: create, start, progress, complete (4 events) per execution."""
    async with fresh_store(
        backend,
        server,
        pool_size=workload.writers,
        history=workload.history,
        guard=guard,
    ) as (store, size):
        await time_writers(
            await _lifecycle_writers(store, workload.warmup().lifecycles)
        )
        timing = await timer(await _lifecycle_writers(store, workload.lifecycles))
        return Sample(timing=timing, events=workload.events, data_bytes=await size())
