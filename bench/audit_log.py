"""A large log, generated and COPY-loaded (bench/audit.py; projection_scale.py --copy-log).

About N/10 executions of ~10 lifecycle events each, several outcomes, a window
of executions interleaved in the global order, correct hash chains, about a
month of timestamps; rows built with `eventstore.hashing` (a sample checked
against `NewEvent`), COPY-loaded in position order, a transaction per chunk.
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
SAMPLE_FIRST: Final = 500  # events checked against NewEvent: the first ones ...
SAMPLE_EVERY: Final = 211  # ... and every 211th after them
# (outcome, share of executions); running: started, some progress, never
# finished; pending: created, never started
OUTCOMES: Final = (
    ("completed", 0.85),
    ("failed", 0.08),
    ("cancelled", 0.04),
    ("running", 0.02),
    ("pending", 0.01),
)
ERRORS: Final = (
    ("ToolTimeout", "the search tool did not answer within 30 s", True),
    ("RateLimited", "429 from the model provider", True),
    ("ValidationError", "the model's answer did not match the output schema", False),
    ("KeyError", "'context'", False),
)
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
    """What the child process wrote: rows, streams, events checked against
    `NewEvent`, the recorded_at range, executions per status at the middle of
    that range and at its end, events per type, and the wall time."""

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


def _metrics(rng: random.Random) -> dict[str, int | float]:
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
        # The pooled payloads are shared by many events: their canonical text
        # is computed once (by id, as the pools live as long as the generator).
        pooled = (*self.inputs, *self.details, *self.results)
        self.canonical = {id(payload): canonical_json(payload) for payload in pooled}
        self.threads = [self._uuid() for _ in range(THREADS)]
        self.graphs = [str(self._uuid()) for _ in range(GRAPHS)]
        self.retryable: deque[tuple[str, int]] = deque(maxlen=1000)
        self.streams: list[_Stream] = []
        self.types: Counter[str] = Counter()
        self.sampled = self.count = 0

    def _uuid(self) -> UUID:
        return UUID(int=self.rng.getrandbits(128), version=4)

    def _execution(self) -> _Stream:
        rng = self.rng
        stream_id = self._uuid()
        worker = f"worker-{rng.randrange(WORKERS):02d}"
        attempt, retry_of = 1, None
        if self.retryable and rng.random() < 0.5:
            retry_of, previous_attempt = self.retryable.popleft()
            attempt = previous_attempt + 1
        thread = rng.choice(self.threads)
        created: JSONObject = {
            "message_id": str(self._uuid()),
            "graph_id": rng.choice(self.graphs),
            "thread_id": str(thread),
            "inputs": rng.choice(self.inputs),  # type: ignore[dict-item]
            "attempt": attempt,
            "retry_of": retry_of,
        }
        plan: Plan = [("ExecutionCreated", created, "api")]
        outcome = rng.choices(
            [name for name, _ in OUTCOMES], [share for _, share in OUTCOMES]
        )[0]
        if outcome != "pending":
            plan.append(("ExecutionStarted", {"worker_id": worker}, worker))
            steps = rng.randint(4, 10) if outcome != "running" else rng.randint(0, 6)
            for step in range(1, steps + 1):
                detail = rng.choice(self.details)
                progressed = {"step": step, "detail": detail, "metrics": _metrics(rng)}
                plan.append(("ExecutionProgressed", progressed, worker))  # type: ignore[arg-type]
        if outcome == "completed":
            completed = {"result": rng.choice(self.results), "metrics": _metrics(rng)}
            plan.append(("ExecutionCompleted", completed, worker))  # type: ignore[arg-type]
        elif outcome == "failed":
            kind, message, retryable = rng.choice(ERRORS)
            if retryable:
                self.retryable.append((str(stream_id), attempt))
            traceback = f'Traceback (most recent call last):\n  File "agents/run.py", line 88, in step\n{kind}: {message}\n'
            error = {
                "type": kind,
                "message": message,
                "traceback": traceback,
                "retryable": retryable,
            }
            failed = {"error": error, "metrics": _metrics(rng)}
            plan.append(("ExecutionFailed", failed, worker))  # type: ignore[arg-type]
        elif outcome == "cancelled":
            user, reason = f"user-{rng.randrange(500)}", "stopped by the user"
            plan.append(
                (
                    "ExecutionCancellationRequested",
                    {"reason": reason, "requested_by": user},
                    user,
                )
            )
            plan.append(("ExecutionCancelled", {"reason": reason}, worker))
        self.streams.append(_Stream(stream_id, plan, str(self._uuid())))
        return self.streams[-1]

    def rows(self, events: int) -> Iterator[Row]:
        """`events` rows in position order: a random one of the executions in
        flight moves forward; a finished one makes room for a new one."""
        rng = self.rng
        window = [self._execution() for _ in range(WINDOW)]
        recorded_at = START
        for _ in range(events):
            recorded_at += timedelta(
                microseconds=1 + int(rng.expovariate(1 / MEAN_GAP_US))
            )
            index = rng.randrange(WINDOW)
            stream = window[index]
            yield self._row(stream, recorded_at)
            if stream.emitted == len(stream.plan):
                window[index] = self._execution()

    def _row(self, stream: _Stream, recorded_at: datetime) -> Row:
        event_type, data, actor = stream.plan[stream.emitted]
        stream.emitted += 1
        version, event_id = stream.emitted, self._uuid()
        occurred_at = recorded_at - timedelta(
            microseconds=self.rng.randrange(200, 50_000)
        )
        metadata: JSONObject = {"actor": actor, "correlation_id": stream.correlation_id}
        data_json, metadata_json = self._data_json(data), canonical_json(metadata)
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
        if self.count < SAMPLE_FIRST or self.count % SAMPLE_EVERY == 0:
            new = NewEvent(
                type=event_type,
                data=data,
                metadata=metadata,
                event_id=event_id,
                occurred_at=occurred_at,
            )
            theirs = canonical_for(stream.stream_id, version, new)
            if (new.data_json, new.metadata_json, new.schema_version, theirs) != (
                data_json,
                metadata_json,
                schema_version,
                canonical,
            ):
                raise RuntimeError(
                    f"generated {event_type} differs from NewEvent's canonical form: {canonical} != {theirs}"
                )
            self.sampled += 1
        self.types[event_type] += 1
        self.count += 1
        stream.previous = chain_hash(stream.previous, canonical)
        status = SETS_STATUS.get(event_type)
        if status is not None:
            stream.history.append((recorded_at, status.value))
        return (
            stream.stream_id,
            version,
            "execution",
            event_id,
            event_type,
            schema_version,
            data_json,
            metadata_json,
            occurred_at,
            recorded_at,
            stream.previous,
        )

    def _data_json(self, data: JSONObject) -> str:
        """`canonical_json(data)`, with the pooled payloads' text reused: the
        top-level keys are ASCII, so plain sorting is the canonical order (the
        NewEvent sample and verify_log check the result)."""
        parts = []
        for key in sorted(data):
            text = self.canonical.get(id(data[key])) or canonical_json(data[key])
            parts.append(f"{canonical_json(key)}:{text}")
        return "{" + ",".join(parts) + "}"

    def statuses_at(self, moment: datetime) -> dict[str, int]:
        """Executions per status at `moment`, from each stream's own history."""
        counts: Counter[str] = Counter()
        for stream in self.streams:
            changes = [status for at, status in stream.history if at <= moment]
            if changes:
                counts[changes[-1]] += 1
        return dict(sorted(counts.items()))


async def _load(dsn: str, events: int, seed: int) -> LogFacts:
    started = time.perf_counter()
    generator = _Generator(seed)
    rows, first, last = generator.rows(events), None, START
    # A bulk load of a ready-made log, as pg_restore does it: the append
    # trigger (which stamps recorded_at, checks references and the
    # lifecycle row by row) is off for the load; the generated rows are
    # already the log such appends would have written.
    async with connected(dsn) as connection:
        await connection.execute(f"ALTER TABLE execution_events DISABLE {GUARD}")
        try:
            while chunk := list(itertools.islice(rows, COPY_CHUNK)):
                await connection.copy_records_to_table(
                    "execution_events", records=chunk, columns=COLUMNS
                )
                first, last = first or chunk[0][9], chunk[-1][9]
        finally:
            await connection.execute(f"ALTER TABLE execution_events ENABLE {GUARD}")
    first = first or START
    return LogFacts(
        events=events,
        executions=sum(1 for stream in generator.streams if stream.emitted),
        sampled=generator.sampled,
        first_recorded_at=first,
        last_recorded_at=last,
        statuses_mid=generator.statuses_at(middle(first, last)),
        statuses_end=generator.statuses_at(last),
        types=dict(generator.types.most_common()),
        seconds=time.perf_counter() - started,
    )


def load_log(dsn: str, events: int, seed: int) -> LogFacts:
    """Generate and COPY the log (run in a child process: its memory stays there)."""
    return asyncio.run(_load(dsn, events, seed))
