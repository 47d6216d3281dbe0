"""The log the projection benchmark folds: N executions x 4 events, written once, untimed.

W writer coroutines share one store; each keeps a window of executions in
flight and moves them forward in turn, one `store.append` per event, so most
streams span more than one projector batch, as in a log in service. The events
are the lifecycle's payloads (`NewEvent.of`), referencing threads, messages
and graphs created through the store first.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from uuid import UUID, uuid4

from bench.harness import connected
from bench.workload import DETAIL_BYTES, INPUTS_BYTES, RESULT_BYTES, USAGE, make_payload
from eventstore.events.envelope import NewEvent
from eventstore.events.payloads import (
    ExecutionCompleted,
    ExecutionCreated,
    ExecutionProgressed,
    ExecutionStarted,
)

if TYPE_CHECKING:
    import asyncpg

    from eventstore import EventStore
    from eventstore.events.payloads import EventPayload

EVENTS_PER_EXECUTION: Final = 4
THREADS: Final = 20
MESSAGES_PER_THREAD: Final = 10
GRAPHS: Final = 4


@dataclass(frozen=True, slots=True)
class LogShape:
    """What to generate: executions (4 events each), concurrent writers, executions
    each writer keeps open and moves forward in turn, the payloads' seed."""

    executions: int
    writers: int = 32
    in_flight: int = 8
    seed: int = 7


@dataclass(frozen=True, slots=True)
class LogFacts:
    """The generated log as read back: events, execution streams, the generation's
    wall time, event type -> mean `octet_length(data::text)`, streams whose events
    fall in more than one batch of `batch_size` in the projector's order, and
    `pg_total_relation_size('execution_events')`."""

    events: int
    executions: int
    seconds: float
    bytes_by_type: dict[str, float]
    spanning_streams: int
    batch_size: int
    table_bytes: int


@dataclass(frozen=True, slots=True)
class _References:
    messages: list[tuple[UUID, UUID]]  # (message id, its thread id)
    graphs: list[UUID]


async def _create_references(store: EventStore) -> _References:
    messages: list[tuple[UUID, UUID]] = []
    for t in range(THREADS):
        thread = await store.threads.create(title=f"bench thread {t}")
        for m in range(MESSAGES_PER_THREAD):
            message = await store.messages.create(
                thread_id=thread.id, role="user", content=f"question {t}.{m}"
            )
            messages.append((message.id, thread.id))
    graphs = [
        (
            await store.graphs.create(
                name=f"bench-graph-{g}",
                version=1,
                definition={"nodes": ["plan", "act", "answer"], "graph": g},
            )
        ).id
        for g in range(GRAPHS)
    ]
    return _References(messages=messages, graphs=graphs)


def _payloads(
    rng: random.Random, references: _References, writer: int
) -> list[EventPayload]:
    """The four payloads of one execution."""
    message_id, thread_id = rng.choice(references.messages)
    return [
        ExecutionCreated(
            message_id=message_id,
            graph_id=rng.choice(references.graphs),
            thread_id=thread_id,
            inputs=make_payload(rng, 0, INPUTS_BYTES),
        ),
        ExecutionStarted(worker_id=f"worker-{writer:02d}"),
        ExecutionProgressed(
            step=1, detail=make_payload(rng, 1, DETAIL_BYTES), metrics=USAGE
        ),
        ExecutionCompleted(result=make_payload(rng, 2, RESULT_BYTES), metrics=USAGE),
    ]


async def _writer(
    store: EventStore,
    references: _References,
    shape: LogShape,
    writer: int,
    executions: int,
) -> None:
    rng = random.Random(shape.seed * 1000 + writer)
    metadata = {"actor": f"bench-writer-{writer:02d}"}
    # Each slot: (stream id, its four payloads, how many are appended).
    pending = executions
    slots: list[tuple[UUID, list[EventPayload], int]] = []
    while pending or slots:
        while pending and len(slots) < shape.in_flight:
            slots.append((uuid4(), _payloads(rng, references, writer), 0))
            pending -= 1
        advanced: list[tuple[UUID, list[EventPayload], int]] = []
        for stream_id, payloads, done in slots:
            # Built now, so occurred_at is the writer's clock at the append.
            event = NewEvent.of(payloads[done], metadata=metadata)
            await store.append(stream_id, [event], expected_version=done)
            if done + 1 < EVENTS_PER_EXECUTION:
                advanced.append((stream_id, payloads, done + 1))
        slots = advanced


async def generate(store: EventStore, shape: LogShape) -> float:
    """Write the log through `store`; returns the wall time it took."""
    started = time.perf_counter()
    references = await _create_references(store)
    share, extra = divmod(shape.executions, shape.writers)
    await asyncio.gather(
        *(
            _writer(store, references, shape, w, share + (1 if w < extra else 0))
            for w in range(shape.writers)
        )
    )
    return time.perf_counter() - started


SPANNING_SQL: Final = """
SELECT count(*) FROM (
    SELECT stream_id FROM (
        SELECT stream_id,
               (row_number() OVER (ORDER BY transaction_id, position) - 1) / $1 AS batch
        FROM execution_events) AS numbered
    GROUP BY stream_id HAVING min(batch) <> max(batch)) AS spanning
"""


async def describe(dsn: str, *, seconds: float, batch_size: int) -> LogFacts:
    """Read back what was generated."""
    async with connected(dsn) as connection:
        events, executions = await counts(connection)
        sizes = await connection.fetch(
            "SELECT type, avg(octet_length(data::text))::float8 AS size "
            "FROM execution_events GROUP BY type ORDER BY min(version)"
        )
        spanning = await connection.fetchval(SPANNING_SQL, batch_size)
        size = "SELECT pg_total_relation_size('execution_events')"
        table_bytes = await connection.fetchval(size)
    return LogFacts(
        events=events,
        executions=executions,
        seconds=seconds,
        bytes_by_type={row["type"]: float(row["size"]) for row in sizes},
        spanning_streams=int(spanning),
        batch_size=batch_size,
        table_bytes=int(table_bytes),
    )


async def counts(connection: asyncpg.Connection) -> tuple[int, int]:
    """How many events the log holds, and how many execution streams."""
    events = await connection.fetchval("SELECT count(*) FROM execution_events")
    streams = await connection.fetchval(
        "SELECT count(DISTINCT stream_id) FROM execution_events WHERE stream_type = 'execution'"
    )
    return int(events), int(streams)
