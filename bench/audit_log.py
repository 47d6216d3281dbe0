"""A large log, generated and COPY-loaded (bench/audit.py, bench/projection.py).

About N/10 executions of ~10 lifecycle events each (several outcomes, a window
of them interleaved), hash-chained, over about a month; rows built with
`eventstore.hashing` (a sample checked against `NewEvent`), COPY-loaded in
position order, a transaction per chunk.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final
from uuid import UUID

from bench.harness import GUARD, connected
from bench.workload import DETAIL_BYTES, INPUTS_BYTES, RESULT_BYTES, make_payload
from eventstore.chains import canonical_for
from eventstore.events.envelope import NewEvent
from eventstore.events.payloads import PAYLOAD_TYPES
from eventstore.hashing import GENESIS_HASH, canonical_event, canonical_json, chain_hash
from eventstore.status import SETS_STATUS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from eventstore.jsonvalues import JSONObject

COLUMNS: Final = (
    *("stream_id", "version", "stream_type", "event_id", "type", "schema_version"),
    *("data", "metadata", "occurred_at", "recorded_at", "hash"),
)
COPY_CHUNK: Final = 50_000  # rows per COPY, each in its own transaction
WINDOW: Final = 64  # executions in flight, interleaved in the global order
START: Final = datetime(2026, 10, 1, tzinfo=UTC)
MEAN_GAP_US: Final = 2_500_000  # between consecutive events: 1M events ~ a month
POOL: Final = 1024  # pre-generated JSON payloads of each kind
WORKERS, THREADS, GRAPHS = 32, 2000, 12
SAMPLE_EVERY: Final = 211  # every 211th event is checked against NewEvent
# share of executions; running: started, some progress, never finished;
# pending: created, never started
OUTCOMES: Final = {
    "completed": 0.85,
    "failed": 0.08,
    "cancelled": 0.04,
    "running": 0.02,
    "pending": 0.01,
}
ERRORS: Final = (
    ("ToolTimeout", "the search tool did not answer within 30 s", True),
    ("RateLimited", "429 from the model provider", True),
    ("ValidationError", "the model's answer did not match the output schema", False),
    ("KeyError", "'context'", False),
)
TRACEBACK: Final = 'Traceback (most recent call last):\n  File "agents/run.py", line 88, in step\n{}: {}\n'
SCHEMA_VERSIONS: Final = {
    name: model.schema_version for name, model in PAYLOAD_TYPES.items()
}

Row = tuple[UUID, int, str, UUID, str, int, str, str, datetime, datetime, bytes]
Plan = list[tuple[str, "JSONObject", str]]  # (event type, data, actor)


@dataclass(slots=True)
class _Stream:
    stream_id: UUID
    plan: Plan
    correlation_id: str
    emitted: int = 0
    previous: bytes = GENESIS_HASH
    history: list[tuple[datetime, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LogFacts:
    """What the child process wrote (statuses: executions per status at the
    middle of the recorded_at range and at its end)."""

    events: int
    executions: int
    sampled: int
    first_recorded_at: datetime
    last_recorded_at: datetime
    statuses_mid: dict[str, int]
    statuses_end: dict[str, int]
    types: dict[str, int]
    seconds: float


def middle(first: datetime, last: datetime) -> datetime:
    """The as-of moment in the middle of the recorded_at range."""
    return first + (last - first) // 2


def _metrics(rng: random.Random) -> JSONObject:
    prompt, completion = rng.randrange(50, 4000), rng.randrange(10, 1200)
    cost = round(prompt * 3e-6 + completion * 1.5e-5, 6)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": cost}


class _Generator:
    """Executions, their events and their rows, from a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.inputs = [make_payload(rng, 0, INPUTS_BYTES) for _ in range(POOL)]
        self.details = [make_payload(rng, 1, DETAIL_BYTES) for _ in range(POOL)]
        self.results = [make_payload(rng, 2, RESULT_BYTES) for _ in range(POOL)]
        self.threads = [self._uuid() for _ in range(THREADS)]
        self.graphs = [str(self._uuid()) for _ in range(GRAPHS)]
        self.retryable: deque[tuple[str, int]] = deque(maxlen=1000)
        self.streams: list[_Stream] = []
        self.types: Counter[str] = Counter()
        self.sampled = self.count = 0

    def _uuid(self) -> UUID:
        return UUID(int=self.rng.getrandbits(128), version=4)

    def _execution(self) -> _Stream:
        rng, stream_id = self.rng, self._uuid()
        worker = f"worker-{rng.randrange(WORKERS):02d}"
        attempt, retry_of = 1, None
        if self.retryable and rng.random() < 0.5:
            retry_of, attempt = self.retryable.popleft()
            attempt += 1
        thread = str(rng.choice(self.threads))
        created: JSONObject = {
            "message_id": str(self._uuid()),
            "graph_id": rng.choice(self.graphs),
            "thread_id": thread,
            "inputs": rng.choice(self.inputs),  # type: ignore[dict-item]
            "attempt": attempt,
            "retry_of": retry_of,
        }
        plan: Plan = [("ExecutionCreated", created, "api")]
        outcome = rng.choices(list(OUTCOMES), list(OUTCOMES.values()))[0]
        if outcome != "pending":
            plan.append(("ExecutionStarted", {"worker_id": worker}, worker))
            steps = rng.randint(4, 10) if outcome != "running" else rng.randint(0, 6)
            for step in range(1, steps + 1):
                detail = rng.choice(self.details)
                progress = {"step": step, "detail": detail, "metrics": _metrics(rng)}
                plan.append(("ExecutionProgressed", progress, worker))  # type: ignore[arg-type]
        if outcome == "completed":
            result = {"result": rng.choice(self.results), "metrics": _metrics(rng)}
            plan.append(("ExecutionCompleted", result, worker))  # type: ignore[arg-type]
        elif outcome == "failed":
            kind, message, retryable = rng.choice(ERRORS)
            if retryable:
                self.retryable.append((str(stream_id), attempt))
            error = {"type": kind, "message": message, "retryable": retryable}
            error["traceback"] = TRACEBACK.format(kind, message)
            failed = {"error": error, "metrics": _metrics(rng)}
            plan.append(("ExecutionFailed", failed, worker))  # type: ignore[arg-type]
        elif outcome == "cancelled":
            user, reason = f"user-{rng.randrange(500)}", "stopped by the user"
            requested: JSONObject = {"reason": reason, "requested_by": user}
            plan.append(("ExecutionCancellationRequested", requested, user))
            plan.append(("ExecutionCancelled", {"reason": reason}, worker))
        self.streams.append(_Stream(stream_id, plan, str(self._uuid())))
        return self.streams[-1]

    def rows(self, events: int) -> Iterator[Row]:
        """`events` rows in position order: a random one of the executions in
        flight moves forward; a finished one makes room for a new one."""
        rng, recorded_at = self.rng, START
        window = [self._execution() for _ in range(WINDOW)]
        for _ in range(events):
            gap = 1 + int(rng.expovariate(1 / MEAN_GAP_US))
            recorded_at += timedelta(microseconds=gap)
            index = rng.randrange(WINDOW)
            yield self._row(window[index], recorded_at)
            if window[index].emitted == len(window[index].plan):
                window[index] = self._execution()

    def _row(self, stream: _Stream, recorded_at: datetime) -> Row:
        event_type, data, actor = stream.plan[stream.emitted]
        stream.emitted += 1
        version, event_id = stream.emitted, self._uuid()
        before = timedelta(microseconds=self.rng.randrange(200, 50_000))
        occurred_at = recorded_at - before
        metadata: JSONObject = {"actor": actor, "correlation_id": stream.correlation_id}
        data_json, metadata_json = canonical_json(data), canonical_json(metadata)
        schema_version = SCHEMA_VERSIONS[event_type]
        canonical = canonical_event(
            stream_id=stream.stream_id,
            version=version,
            event_id=event_id,
            event_type=event_type,
            schema_version=schema_version,
            data_json=data_json,
            metadata_json=metadata_json,
            occurred_at=occurred_at,
        )
        if self.count % SAMPLE_EVERY == 0:
            # the canonical event holds the data, metadata and schema version
            new = NewEvent(
                type=event_type,
                data=data,
                metadata=metadata,
                event_id=event_id,
                occurred_at=occurred_at,
            )
            theirs = canonical_for(stream.stream_id, version, new)
            if theirs != canonical:
                raise RuntimeError(f"generated {canonical} != NewEvent's {theirs}")
            self.sampled += 1
        self.types[event_type] += 1
        self.count += 1
        stream.previous = chain_hash(stream.previous, canonical)
        if (status := SETS_STATUS.get(event_type)) is not None:
            stream.history.append((recorded_at, status.value))
        return (
            *(stream.stream_id, version, "execution", event_id, event_type),
            *(schema_version, data_json, metadata_json, occurred_at, recorded_at),
            stream.previous,
        )

    def statuses_at(self, moment: datetime) -> dict[str, int]:
        """Executions per status at `moment`, from each stream's own history."""
        counts: Counter[str] = Counter()
        for stream in self.streams:
            changes = [status for at, status in stream.history if at <= moment]
            if changes:
                counts[changes[-1]] += 1
        return dict(sorted(counts.items()))


async def _load(dsn: str, events: int, seed: int) -> LogFacts:
    started, generator = time.perf_counter(), _Generator(seed)
    rows, first, last = generator.rows(events), None, START
    # A bulk load of a ready-made log, as pg_restore does it: the append
    # trigger (which stamps recorded_at, checks references and the
    # lifecycle row by row) is off for the load; the generated rows are
    # already the log such appends would have written.
    async with connected(dsn) as connection:
        await connection.execute(f"ALTER TABLE execution_events DISABLE {GUARD}")
        while chunk := list(itertools.islice(rows, COPY_CHUNK)):
            await connection.copy_records_to_table(
                "execution_events", records=chunk, columns=COLUMNS
            )
            first, last = first or chunk[0][9], chunk[-1][9]
        await connection.execute(f"ALTER TABLE execution_events ENABLE {GUARD}")
    first = first or START
    executions = sum(1 for stream in generator.streams if stream.emitted)
    mid, end = (generator.statuses_at(at) for at in (middle(first, last), last))
    types, sampled = dict(generator.types.most_common()), generator.sampled
    seconds = time.perf_counter() - started
    return LogFacts(events, executions, sampled, first, last, mid, end, types, seconds)


def load_log(dsn: str, events: int, seed: int) -> LogFacts:
    """Generate and COPY the log (run in a child process: its memory stays there)."""
    return asyncio.run(_load(dsn, events, seed))
