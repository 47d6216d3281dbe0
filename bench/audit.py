"""Audit on a large log: `verify_log` and the store-wide as-of against plain reads.

One throwaway PostgreSQL database holds a log of N events (default
1,000,000): about N/10 executions of ~10 lifecycle events each
(`ExecutionCreated`, `ExecutionStarted`, several `ExecutionProgressed` with
usage metrics, then `ExecutionCompleted`, `ExecutionFailed` or a
cancellation; some are left pending or running), a window of executions
interleaved in the global order, correct per-stream hash chains, and
`occurred_at` / `recorded_at` spread over about a month. The rows are built
in a child process with the package's own canonical form
(`eventstore.hashing`), a sample of them checked against `NewEvent`, and
bulk-loaded with COPY in position order, one transaction per chunk; then
`VACUUM (ANALYZE)`.

Each round then measures, in an order that shifts by one every round:

- ``sequential_read``: raw asyncpg reading every row (all columns) in global
  order, 5000 at a time, keyset on (epoch, transaction_id, position), with the
  store's own `read_all` statement; the rows are dropped (the baseline);
- ``verify_log``: `eventstore.audit.integrity.verify_log(store.backend)`, what
  `eventstore verify --log-only` runs;
- ``as_of_mid`` / ``as_of_end``: `eventstore.audit.replay.statuses_as_of` at the
  middle and at the end of the recorded_at range;
- ``replay_read_mid`` / ``replay_read_end``: raw asyncpg reading the rows
  a replay up to that moment needs (every event recorded at or before it),
  like ``sequential_read``, stopping at the first batch that passes it.

.venv/bin/python -m bench.audit --events 1000000 --rounds 3   # writes bench/AUDIT_RESULTS.md
.venv/bin/python -m bench.audit --events 20000 --rounds 1     # a quick check of the data
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar
from uuid import UUID

import asyncpg
from rich.console import Console

from bench import cpu, machine
from bench.databases import DEFAULT_ADMIN_DSN, Server, migrate, throwaway_database
from bench.workload import DETAIL_BYTES, INPUTS_BYTES, RESULT_BYTES, make_payload
from eventstore import EventStore
from eventstore.audit.integrity import BATCH, verify_log
from eventstore.audit.replay import AsOf, statuses_as_of
from eventstore.backends.postgres_audit import STATUS_EVENTS_SQL
from eventstore.backends.postgres_log import READ_ALL_SQL
from eventstore.backends.postgres_order import MAX_POSITION
from eventstore.chains import canonical_for
from eventstore.events.envelope import NewEvent
from eventstore.events.payloads import PAYLOAD_TYPES
from eventstore.hashing import (
    GENESIS_HASH,
    canonical_event,
    canonical_json,
    chain_hash,
)
from eventstore.settings import StoreSettings
from eventstore.status import SETS_STATUS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence

    from bench.machine import Environment
    from eventstore.jsonvalues import JSONObject

RESULTS_PATH: Final = Path(__file__).parent / "AUDIT_RESULTS.md"
REPOSITORY: Final = Path(__file__).parent.parent

# --- the log ----------------------------------------------------------------------

COLUMNS: Final = (
    "stream_id",
    "version",
    "stream_type",
    "event_id",
    "type",
    "schema_version",
    "data",
    "metadata",
    "occurred_at",
    "recorded_at",
    "hash",
)
COPY_CHUNK: Final = 50_000  # rows per COPY, each in its own transaction
WINDOW: Final = 64  # executions in flight, interleaved in the global order
START: Final = datetime(2026, 10, 1, tzinfo=UTC)
MEAN_GAP_US: Final = 2_500_000  # between consecutive events: 1M events ~ a month
POOL: Final = 1024  # pre-generated JSON payloads of each kind
WORKERS: Final = 32
THREADS: Final = 2000
GRAPHS: Final = 12
SAMPLE_FIRST: Final = 500  # events checked against NewEvent: the first ones ...
SAMPLE_EVERY: Final = 211  # ... and every 211th after them
# (outcome, share of executions)
OUTCOMES: Final = (
    ("completed", 0.85),
    ("failed", 0.08),
    ("cancelled", 0.04),
    ("running", 0.02),  # started, some progress, never finished
    ("pending", 0.01),  # created, never started
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

Row = tuple[
    UUID, int, str, UUID, str, int, str, str, datetime, datetime, bytes
]  # in COLUMNS order


@dataclass(slots=True)
class _Stream:
    stream_id: UUID
    plan: list[tuple[str, JSONObject, str]]  # (event type, data, actor)
    correlation_id: str
    emitted: int = 0
    previous: bytes = GENESIS_HASH
    history: list[tuple[datetime, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LogFacts:
    """What the child process wrote.

    Attributes:
        events: rows written.
        executions: streams.
        sampled: events whose data, metadata and canonical form were checked
            against `NewEvent`.
        first_recorded_at: recorded_at of the first event.
        last_recorded_at: recorded_at of the last event.
        statuses_mid: status -> executions in it at `middle(first, last)`.
        statuses_end: status -> executions in it at the end.
        types: event type -> events.
        seconds: generation and COPY, wall time.
    """

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
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cost_usd": round(prompt * 3e-6 + completion * 1.5e-5, 6),
    }


class _Generator:
    """Executions, their events and their rows, from a seed."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.inputs = [make_payload(rng, 0, INPUTS_BYTES) for _ in range(POOL)]
        self.details = [make_payload(rng, 1, DETAIL_BYTES) for _ in range(POOL)]
        self.results = [make_payload(rng, 2, RESULT_BYTES) for _ in range(POOL)]
        # The pooled payloads are shared by many events: their canonical text
        # is computed once (by id, as the pools live as long as the generator).
        self.canonical = {
            id(payload): canonical_json(payload)
            for payload in (*self.inputs, *self.details, *self.results)
        }
        self.threads = [self._uuid() for _ in range(THREADS)]
        self.graphs = [str(self._uuid()) for _ in range(GRAPHS)]
        self.retryable: deque[tuple[str, int]] = deque(maxlen=1000)
        self.streams: list[_Stream] = []
        self.types: Counter[str] = Counter()
        self.sampled = 0
        self.count = 0

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
        plan: list[tuple[str, JSONObject, str]] = [
            (
                "ExecutionCreated",
                {
                    "message_id": str(self._uuid()),
                    "graph_id": rng.choice(self.graphs),
                    "thread_id": str(thread),
                    "inputs": rng.choice(self.inputs),  # type: ignore[dict-item]
                    "attempt": attempt,
                    "retry_of": retry_of,
                },
                "api",
            )
        ]
        outcome = rng.choices(
            [name for name, _ in OUTCOMES], [share for _, share in OUTCOMES]
        )[0]
        if outcome != "pending":
            plan.append(("ExecutionStarted", {"worker_id": worker}, worker))
            steps = rng.randint(4, 10) if outcome != "running" else rng.randint(0, 6)
            plan.extend(
                (
                    "ExecutionProgressed",
                    {
                        "step": step,
                        "detail": rng.choice(self.details),  # type: ignore[dict-item]
                        "metrics": _metrics(rng),  # type: ignore[dict-item]
                    },
                    worker,
                )
                for step in range(1, steps + 1)
            )
        if outcome == "completed":
            plan.append(
                (
                    "ExecutionCompleted",
                    {
                        "result": rng.choice(self.results),  # type: ignore[dict-item]
                        "metrics": _metrics(rng),  # type: ignore[dict-item]
                    },
                    worker,
                )
            )
        elif outcome == "failed":
            kind, message, retryable = rng.choice(ERRORS)
            if retryable:
                self.retryable.append((str(stream_id), attempt))
            plan.append(
                (
                    "ExecutionFailed",
                    {
                        "error": {
                            "type": kind,
                            "message": message,
                            "traceback": "Traceback (most recent call last):\n"
                            '  File "agents/run.py", line 88, in step\n'
                            f"{kind}: {message}\n",
                            "retryable": retryable,
                        },
                        "metrics": _metrics(rng),  # type: ignore[dict-item]
                    },
                    worker,
                )
            )
        elif outcome == "cancelled":
            user = f"user-{rng.randrange(500)}"
            plan.append(
                (
                    "ExecutionCancellationRequested",
                    {"reason": "stopped by the user", "requested_by": user},
                    user,
                )
            )
            plan.append(
                ("ExecutionCancelled", {"reason": "stopped by the user"}, worker)
            )
        stream = _Stream(
            stream_id=stream_id, plan=plan, correlation_id=str(self._uuid())
        )
        self.streams.append(stream)
        return stream

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
        version = stream.emitted
        event_id = self._uuid()
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
            if (
                new.data_json != data_json
                or new.metadata_json != metadata_json
                or new.schema_version != schema_version
                or canonical_for(stream.stream_id, version, new) != canonical
            ):
                raise RuntimeError(
                    f"generated {event_type} differs from NewEvent's canonical form: "
                    f"{canonical} != {canonical_for(stream.stream_id, version, new)}"
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
            value = data[key]
            text = self.canonical.get(id(value))
            parts.append(
                f"{canonical_json(key)}:{canonical_json(value) if text is None else text}"
            )
        return "{" + ",".join(parts) + "}"

    def statuses_at(self, moment: datetime) -> dict[str, int]:
        """Executions per status at `moment`, from each stream's own history."""
        counts: Counter[str] = Counter()
        for stream in self.streams:
            status = None
            for recorded_at, changed_to in stream.history:
                if recorded_at > moment:
                    break
                status = changed_to
            if status is not None:
                counts[status] += 1
        return dict(sorted(counts.items()))


async def _load(dsn: str, events: int, seed: int) -> LogFacts:
    started = time.perf_counter()
    generator = _Generator(seed)
    connection = await asyncpg.connect(dsn)
    first: datetime | None = None
    last = START
    # A bulk load of a ready-made log, as pg_restore does it: the append
    # trigger (which stamps recorded_at, checks references and the
    # lifecycle row by row) is off for the load; the generated rows are
    # already the log such appends would have written.
    await connection.execute(
        "ALTER TABLE execution_events DISABLE TRIGGER execution_events_guard_append"
    )
    try:
        chunk: list[Row] = []
        for row in generator.rows(events):
            chunk.append(row)
            if len(chunk) == COPY_CHUNK:
                await connection.copy_records_to_table(
                    "execution_events", records=chunk, columns=COLUMNS
                )
                first = first or chunk[0][9]
                last = chunk[-1][9]
                chunk = []
        if chunk:
            await connection.copy_records_to_table(
                "execution_events", records=chunk, columns=COLUMNS
            )
            first = first or chunk[0][9]
            last = chunk[-1][9]
    finally:
        await connection.execute(
            "ALTER TABLE execution_events ENABLE TRIGGER execution_events_guard_append"
        )
        await connection.close()
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


# --- the subjects -----------------------------------------------------------------

SUBJECTS: Final = (
    "sequential_read",
    "verify_log",
    "as_of_mid",
    "replay_read_mid",
    "as_of_end",
    "replay_read_end",
)
BASELINE: Final = "sequential_read"
LABELS: Final = {
    "sequential_read": "raw asyncpg, every row in global order (baseline)",
    "verify_log": "`verify_log(store.backend)` (`verify --log-only`)",
    "as_of_mid": "`statuses_as_of(AsOf(time=middle))`",
    "replay_read_mid": "raw asyncpg, rows recorded <= middle",
    "as_of_end": "`statuses_as_of(AsOf(time=end))`",
    "replay_read_end": "raw asyncpg, rows recorded <= end",
}
# subject -> the plain read it is compared with
COMPARED_WITH: Final = {
    "verify_log": "sequential_read",
    "as_of_mid": "replay_read_mid",
    "as_of_end": "replay_read_end",
    "replay_read_mid": "sequential_read",
    "replay_read_end": "sequential_read",
}
INDEX_NAME: Final = "ix_execution_events_status_history"
REPEATED_CALLS: Final = 8
MAX_LOAD: Final = 0.3  # cores kept busy by other work, before a round
LOAD_WAIT_MAX: Final = 900.0

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Expected:
    """What each subject must find, known before the rounds."""

    events: int
    executions: int
    moments: dict[str, datetime]  # "mid", "end" -> the as-of time
    rows_until: dict[str, int]  # rows recorded at or before the moment
    statuses: dict[str, dict[str, int]]  # moment -> status -> executions


@dataclass(frozen=True, slots=True)
class Measurement:
    """One subject in one round.

    Attributes:
        rows: events read (verify, plain reads) or statuses returned (as-of).
        seconds: wall time.
        client_cpu: this process's CPU seconds.
        server_cpu: CPU seconds of the PostgreSQL processes of the database.
        machine_cpu: busy CPU seconds of the whole machine (None off Linux).
        peak_rss: bytes, `ru_maxrss` after the high-water mark was reset to
            the current RSS just before the subject started.
        rss_before: bytes, the RSS when it started.
        problem: what a check found wrong, None when the result was right.
    """

    subject: str
    round: int
    sequence: int
    rows: int
    seconds: float
    client_cpu: float
    server_cpu: float
    machine_cpu: float | None
    peak_rss: int
    rss_before: int
    problem: str | None = None

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def other_cores(self) -> float | None:
        """Cores kept busy by everything but the client and our server processes."""
        if self.machine_cpu is None or not self.seconds:
            return None
        other = self.machine_cpu - self.client_cpu - self.server_cpu
        return max(other, 0.0) / self.seconds


@dataclass(frozen=True, slots=True)
class Plan:
    """EXPLAIN (ANALYZE, BUFFERS) of the as-of statement."""

    label: str
    lines: list[str]

    @property
    def uses_index(self) -> bool:
        """Whether the status-history index appears in the plan."""
        return any(INDEX_NAME in line for line in self.lines)

    @property
    def summary(self) -> str:
        """The scan nodes, and the execution time."""
        scans = [
            line.strip().removeprefix("->").strip()
            for line in self.lines
            if "Scan" in line
        ]
        total = next(
            (line.strip() for line in self.lines if line.startswith("Execution Time")),
            "",
        )
        return "; ".join([*scans, total])


@dataclass(slots=True)
class Results:
    """Everything the report shows."""

    events: int
    rounds: int
    seed: int
    command: str
    environment: Environment
    git_head: str
    git_changes: int
    max_load: float = MAX_LOAD
    startup_peak_rss: int = 0
    log: LogFacts | None = None
    expected: Expected | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    load_seconds: float = 0.0
    vacuum_seconds: float = 0.0
    round_loads: list[tuple[int, float, float]] = field(
        default_factory=list
    )  # (round, 1-min load at its start, seconds waited for it)
    measurements: list[Measurement] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    repeated: list[float] = field(default_factory=list)  # seconds of each call
    failures: list[str] = field(default_factory=list)

    def runs(self, subject: str) -> list[Measurement]:
        """The measurements of a subject, by round."""
        return [m for m in self.measurements if m.subject == subject]

    def median_seconds(self, subject: str) -> float | None:
        """Median wall time over the rounds."""
        runs = self.runs(subject)
        return statistics.median(m.seconds for m in runs) if runs else None

    def median_rate(self, subject: str) -> float | None:
        """Median rows/s over the rounds."""
        runs = self.runs(subject)
        return statistics.median(m.rate for m in runs) if runs else None

    def time_ratio(self, subject: str, other: str) -> float | None:
        """Median seconds of `subject` over median seconds of `other`."""
        mine, theirs = self.median_seconds(subject), self.median_seconds(other)
        return None if mine is None or not theirs else mine / theirs

    def rate_ratio(self, subject: str, other: str) -> float | None:
        """Median rows/s of `subject` over median rows/s of `other`."""
        mine, theirs = self.median_rate(subject), self.median_rate(other)
        return None if mine is None or not theirs else mine / theirs

    def median_cpu(self, subject: str) -> float | None:
        """Median CPU seconds, client and server together."""
        runs = self.runs(subject)
        return (
            statistics.median(m.client_cpu + m.server_cpu for m in runs)
            if runs
            else None
        )

    def cpu_ratio(self, subject: str, other: str) -> float | None:
        """Median client+server CPU of `subject` over that of `other`: the work
        ratio, less disturbed than wall time when others share the cores."""
        mine, theirs = self.median_cpu(subject), self.median_cpu(other)
        return None if mine is None or not theirs else mine / theirs

    def round_time_ratios(self, subject: str, other: str) -> list[float]:
        """seconds(subject) / seconds(other), each round on its own."""
        theirs = {m.round: m.seconds for m in self.runs(other)}
        return [
            m.seconds / theirs[m.round]
            for m in self.runs(subject)
            if theirs.get(m.round)
        ]


def _rss() -> int:
    """The current resident set size in bytes (VmRSS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _peak_rss() -> int:
    """`ru_maxrss` of this process in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak_rss() -> None:
    """Reset the high-water mark to the current RSS (Linux >= 4.0)."""
    # Without it, ru_maxrss is the process's peak so far.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


@dataclass(frozen=True, slots=True)
class _Clocked:
    seconds: float
    client_cpu: float
    server_cpu: float
    machine_cpu: float | None
    peak_rss: int
    rss_before: int


async def _timed(
    database: str | None, work: Callable[[], Awaitable[_T]]
) -> tuple[_T, _Clocked]:
    _reset_peak_rss()
    rss_before = _rss()
    before = cpu.snapshot(database)
    wall, process = time.perf_counter(), time.process_time()
    outcome = await work()
    seconds, client = time.perf_counter() - wall, time.process_time() - process
    machine_cpu, server_cpu = cpu.used(before, cpu.snapshot(database))
    return outcome, _Clocked(
        seconds=seconds,
        client_cpu=client,
        server_cpu=server_cpu,
        machine_cpu=machine_cpu,
        peak_rss=_peak_rss(),
        rss_before=rss_before,
    )


async def read_rows(connection: asyncpg.Connection, until: datetime | None) -> int:
    """Every row (all columns) in global order, BATCH at a time, dropped.

    With `until`, stop at the first batch whose last row was recorded after
    it and count the rows recorded at or before it (recorded_at grows with
    the global order in this log).
    """
    epoch, transaction_id, position, rows = 0, 0, 0, 0
    while True:
        batch = await connection.fetch(
            READ_ALL_SQL, epoch, transaction_id, position, BATCH
        )
        if not batch:
            return rows
        last = batch[-1]
        if until is not None and last["recorded_at"] > until:
            return rows + sum(1 for row in batch if row["recorded_at"] <= until)
        rows += len(batch)
        epoch, transaction_id, position = (
            last["epoch"],
            last["transaction_id"],
            last["position"],
        )


async def _measure(
    subject: str,
    dsn: str,
    database: str | None,
    expected: Expected,
    round_number: int,
    sequence: int,
) -> Measurement:
    """Run one subject on a connection or store opened before the clock starts."""
    problem: str | None = None
    if subject in ("sequential_read", "replay_read_mid", "replay_read_end"):
        moment = subject.rsplit("_", 1)[-1]
        until = expected.moments.get(moment) if subject != BASELINE else None
        connection = await asyncpg.connect(dsn)
        try:
            rows, timing = await _timed(database, lambda: read_rows(connection, until))
        finally:
            await connection.close()
        want = expected.events if until is None else expected.rows_until[moment]
        if rows != want:
            problem = f"read {rows} rows, expected {want}"
    else:
        async with EventStore.open(dsn, settings=StoreSettings(pool_size=2)) as store:
            await store.backend.ensure_schema()  # once per process: not timed
            if subject == "verify_log":
                report, timing = await _timed(
                    database, lambda: verify_log(store.backend)
                )
                rows = report.events
                if not report.ok:
                    problem = f"verify_log found {len(report.problems)} broken streams: {report.problems[0]}"
                elif (report.events, report.streams) != (
                    expected.events,
                    expected.executions,
                ):
                    problem = (
                        f"verify_log read {report.events} events in {report.streams} "
                        f"streams, expected {expected.events} in {expected.executions}"
                    )
            else:
                moment = subject.rsplit("_", 1)[-1]
                statuses, timing = await _timed(
                    database,
                    lambda: statuses_as_of(
                        store.backend, AsOf(time=expected.moments[moment])
                    ),
                )
                rows = len(statuses)
                counts = dict(sorted(Counter(s.status.value for s in statuses).items()))
                if counts != expected.statuses[moment]:
                    problem = f"statuses {counts}, expected {expected.statuses[moment]}"
    return Measurement(
        subject=subject,
        round=round_number,
        sequence=sequence,
        rows=rows,
        seconds=timing.seconds,
        client_cpu=timing.client_cpu,
        server_cpu=timing.server_cpu,
        machine_cpu=timing.machine_cpu,
        peak_rss=timing.peak_rss,
        rss_before=timing.rss_before,
        problem=problem,
    )


def _order(round_number: int) -> list[str]:
    """The subjects of a round: the fixed order, starting one later each round."""
    shift = (round_number - 1) % len(SUBJECTS)
    return list(SUBJECTS[shift:] + SUBJECTS[:shift])


async def wait_for_low_load(console: Console, limit: float) -> tuple[float, float]:
    """Wait (15 min at most) until other work keeps under `limit` cores busy for 2 s.

    The machine's busy time, not the load average: the load average still
    counts this benchmark's own last subject for minutes after it ended.

    Returns:
        The 1-minute load average when it was quiet, and the seconds waited.
    """
    waited = await asyncio.to_thread(
        cpu.wait_until_quiet, limit=limit, max_wait=LOAD_WAIT_MAX
    )
    if waited >= LOAD_WAIT_MAX:
        console.print(
            f"[yellow]still busier than {limit} cores after {waited:.0f} s[/]"
        )
    return os.getloadavg()[0], waited


# --- the database -----------------------------------------------------------------


async def _fetch_expected(dsn: str, log: LogFacts) -> Expected:
    connection = await asyncpg.connect(dsn)
    try:
        bounds = await connection.fetchrow(
            "SELECT min(recorded_at), max(recorded_at), count(*) FROM execution_events"
        )
        assert bounds is not None  # noqa: S101 - an aggregate returns one row
        first, last, events = bounds
        if (first, last, events) != (
            log.first_recorded_at,
            log.last_recorded_at,
            log.events,
        ):
            raise RuntimeError(
                f"the table holds {events} events recorded {first} .. {last}; "
                f"the generator wrote {log.events}, {log.first_recorded_at} .. "
                f"{log.last_recorded_at}"
            )
        moments = {"mid": middle(first, last), "end": last}
        rows_until = {
            name: int(
                await connection.fetchval(
                    "SELECT count(*) FROM execution_events WHERE recorded_at <= $1",
                    moment,
                )
            )
            for name, moment in moments.items()
        }
        ordered = await connection.fetchval(
            "SELECT bool_and(ordered) FROM (SELECT recorded_at >= lag(recorded_at) "
            "OVER (ORDER BY transaction_id, position) AS ordered "
            "FROM execution_events) AS pairs"
        )
        if not ordered:
            raise RuntimeError("recorded_at does not grow with the global order")
    finally:
        await connection.close()
    return Expected(
        events=log.events,
        executions=log.executions,
        moments=moments,
        rows_until=rows_until,
        statuses={"mid": log.statuses_mid, "end": log.statuses_end},
    )


async def _sizes(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c "
            "WHERE c.oid = 'execution_events'::regclass OR c.oid IN "
            "(SELECT indexrelid FROM pg_index WHERE indrelid = 'execution_events'::regclass) "
            "ORDER BY c.relkind DESC, c.relname"
        )
        toast = await connection.fetchval(
            "SELECT coalesce(pg_total_relation_size(reltoastrelid), 0) FROM pg_class "
            "WHERE oid = 'execution_events'::regclass"
        )
    finally:
        await connection.close()
    sizes = {str(name): int(size) for name, size in rows}
    sizes["(toast)"] = int(toast)
    return sizes


async def explain(dsn: str, moments: dict[str, datetime]) -> list[Plan]:
    """The as-of statement's plans: as the store runs it (a custom plan for its
    parameters), the generic plan a prepared statement may switch to, and,
    for comparison, the plan with sequential scans disabled."""
    plans = []
    connection = await asyncpg.connect(dsn)
    try:
        for name, moment in moments.items():
            rows = await connection.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + STATUS_EVENTS_SQL, MAX_POSITION, moment
            )
            plans.append(
                Plan(f"{name}: as the store runs it", [row[0] for row in rows])
            )
        await connection.execute(
            f"PREPARE as_of(bigint, timestamptz) AS {STATUS_EVENTS_SQL}"
        )
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        rows = await connection.fetch(  # EXECUTE takes no parameters: literals
            f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE as_of({MAX_POSITION}, "
            f"'{moments['mid'].isoformat()}')"
        )
        plans.append(Plan("mid: generic plan", [row[0] for row in rows]))
        await connection.execute("RESET plan_cache_mode")
        await connection.execute("SET enable_seqscan = off")
        for name, moment in moments.items():
            rows = await connection.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + STATUS_EVENTS_SQL, MAX_POSITION, moment
            )
            plans.append(
                Plan(
                    f"{name}: diagnostic, enable_seqscan = off",
                    [row[0] for row in rows],
                )
            )
    finally:
        await connection.close()
    return plans


async def repeated_as_of(dsn: str, moment: datetime) -> list[float]:
    """Seconds of each of REPEATED_CALLS as-of calls on one store with one
    connection: asyncpg keeps the prepared statement, and after five custom
    plans PostgreSQL may settle on a generic plan (as a long-lived process would)."""
    seconds = []
    async with EventStore.open(dsn, settings=StoreSettings(pool_size=1)) as store:
        await store.backend.ensure_schema()
        for _ in range(REPEATED_CALLS):
            started = time.perf_counter()
            await statuses_as_of(store.backend, AsOf(time=moment))
            seconds.append(time.perf_counter() - started)
    return seconds


# --- the run ----------------------------------------------------------------------


def _line(m: Measurement) -> str:
    other = m.other_cores
    return (
        f"round {m.round} {m.subject:<16} {m.rows:>9,} rows {m.seconds:8.2f} s "
        f"{m.rate:>10,.0f} rows/s client {m.client_cpu:6.2f} s "
        f"server {m.server_cpu:6.2f} s other {'-' if other is None else f'{other:.2f}'} "
        f"cores peak RSS {m.peak_rss / 2**20:,.0f} MiB"
        + (f" PROBLEM: {m.problem}" if m.problem else "")
    )


async def run(results: Results, server: Server, console: Console) -> None:
    """Create, load and check the log, measure the rounds, explain, drop."""
    async with throwaway_database(server) as dsn:
        database = cpu.CURRENT_DATABASE.get()
        console.print(f"database {database}; migrating")
        await migrate(dsn)
        console.print(
            f"generating and loading {results.events:,} events (child process)"
        )
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("spawn")
        ) as executor:
            log = await loop.run_in_executor(
                executor, load_log, dsn, results.events, results.seed
            )
        results.load_seconds = time.perf_counter() - started
        results.log = log
        console.print(
            f"loaded {log.events:,} events of {log.executions:,} executions in "
            f"{results.load_seconds:.1f} s ({log.sampled:,} checked against NewEvent)"
        )
        started = time.perf_counter()
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("VACUUM (ANALYZE) execution_events")
            await connection.execute("CHECKPOINT")
        finally:
            await connection.close()
        results.vacuum_seconds = time.perf_counter() - started
        expected = await _fetch_expected(dsn, log)
        results.expected = expected
        results.sizes = await _sizes(dsn)

        console.print("warm-up (untimed): every subject but verify_log once")
        for subject in SUBJECTS:
            if subject == "verify_log":
                continue
            warm = await _measure(subject, dsn, database, expected, 0, 0)
            console.print(f"[dim]{_line(warm)}[/]")
            if warm.problem:
                results.failures.append(f"warm-up {subject}: {warm.problem}")

        for round_number in range(1, results.rounds + 1):
            load, waited = await wait_for_low_load(console, results.max_load)
            results.round_loads.append((round_number, load, waited))
            console.rule(
                f"round {round_number}/{results.rounds} (1-min load {load:.2f}, "
                f"waited {waited:.0f} s)"
            )
            for sequence, subject in enumerate(_order(round_number), 1):
                measured = await _measure(
                    subject, dsn, database, expected, round_number, sequence
                )
                results.measurements.append(measured)
                console.print(_line(measured))
                if measured.problem:
                    results.failures.append(
                        f"round {round_number} {subject}: {measured.problem}"
                    )
        console.print(
            f"diagnostic: {REPEATED_CALLS} as-of calls (middle) on one store connection"
        )
        await wait_for_low_load(console, results.max_load)
        results.repeated = await repeated_as_of(dsn, expected.moments["mid"])
        console.print(", ".join(f"{seconds:.2f} s" for seconds in results.repeated))
        console.print("EXPLAIN (ANALYZE, BUFFERS) of the as-of statement")
        results.plans = await explain(dsn, expected.moments)
        for plan in results.plans:
            console.print(
                f"{plan.label}: index {'used' if plan.uses_index else 'NOT used'}: "
                f"{plan.summary}"
            )


# --- the report -------------------------------------------------------------------


def _git(*arguments: str) -> str:
    try:
        return subprocess.run(  # noqa: S603 - a constant command
            ["git", *arguments],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            check=True,
            cwd=REPOSITORY,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""


def _mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def render(results: Results) -> str:
    """bench/AUDIT_RESULTS.md."""
    env, log, expected = results.environment, results.log, results.expected
    finished = env.finished_at.isoformat(timespec="seconds") if env.finished_at else "-"
    lines = [
        f"# Audit on a {results.events:,}-event log: `verify_log` and the store-wide as-of",
        "",
        f"Generated by `{results.command}` (bench/audit.py); the figures are measured, none are edited.",
        "",
        "## Machine and code",
        "",
        f"- Date: {env.started_at.isoformat(timespec='seconds')} to {finished} (UTC)",
        f"- nproc: {env.nproc} ({env.cpu}), memory {env.memory}; the client and "
        "PostgreSQL share these cores, and the machine is shared with other work "
        "(test runs): see the load averages and the `other cores` column",
        f"- Python {env.python}, {env.system}",
        f"- {env.postgres}",
        "- Server settings: "
        + ", ".join(f"{k}={v}" for k, v in env.postgres_settings.items()),
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in env.packages.items()),
        f"- Commit: `{results.git_head}` (`git rev-parse --short HEAD`). The working "
        f"tree had {results.git_changes} modified or untracked paths "
        "(`git status --short | wc -l`) while this ran: other people edit it, so "
        "the measured code may include uncommitted changes.",
        f"- Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in env.load_before)}; "
        f"after: {', '.join(f'{x:.2f}' for x in env.load_after)}",
        "",
    ]
    if log is not None and expected is not None:
        lines += [
            "## The log",
            "",
            f"- {log.events:,} events of {log.executions:,} executions, written by a "
            f"child process in {results.load_seconds:.0f} s (rows built with "
            "`eventstore.hashing.canonical_json` / `canonical_event` / `chain_hash`, "
            f"{log.sampled:,} of them checked against `NewEvent`; COPY in chunks of "
            f"{COPY_CHUNK:,}, one transaction each, in position order), then "
            f"`VACUUM (ANALYZE) execution_events` + `CHECKPOINT` ({results.vacuum_seconds:.0f} s).",
            f"- {WINDOW} executions in flight at a time, interleaved: a random one of "
            "them writes the next event. Outcomes: "
            + ", ".join(f"{name} {share:.0%}" for name, share in OUTCOMES)
            + " (pending/running ones, and the executions still in flight at the "
            "end, stay unfinished); 4-10 progress events with usage metrics per "
            "finished run; failed retryable runs are retried (`attempt`, `retry_of`).",
            "- Event types: "
            + ", ".join(f"{name} {count:,}" for name, count in log.types.items()),
            f"- recorded_at from {log.first_recorded_at.isoformat()} to "
            f"{log.last_recorded_at.isoformat()}, growing with the position "
            "(checked); occurred_at 0.2-50 ms before it.",
            f"- As-of moments: middle {expected.moments['mid'].isoformat()} "
            f"({expected.rows_until['mid']:,} events recorded by then), end "
            f"{expected.moments['end'].isoformat()} ({expected.rows_until['end']:,}).",
            f"- Statuses at the middle: {expected.statuses['mid']}; at the end: "
            f"{expected.statuses['end']} (from the generator; every as-of run is "
            "checked against them, every verify run against the event and stream "
            "counts).",
            "- Sizes: "
            + ", ".join(f"{name} {_mib(size)}" for name, size in results.sizes.items()),
            "",
        ]
    lines += [
        "## Method",
        "",
        f"- {results.rounds} rounds; each runs all six subjects, in an order that "
        "shifts by one every round. Before a round, the machine must have been "
        f"quiet for 2 s in a row (under {results.max_load} cores busy, from "
        "/proc/stat; waited for 15 min at most); the 1-minute load average then and "
        "the wait are recorded below. An untimed warm-up ran every subject but "
        "`verify_log` once.",
        f"- Plain reads: raw asyncpg on a connection opened before the clock, the "
        f"store's own `read_all` statement (every column, `ORDER BY epoch, transaction_id, "
        f"position LIMIT {BATCH}`, keyset on the triple), rows dropped. The replay reads "
        "stop at the first batch whose last row is past the moment (recorded_at "
        "grows with the global order here) and count the rows at or before it.",
        "- Store subjects: `EventStore.open(url)` and the store's one-time schema "
        "check (`backend.ensure_schema()`) before the clock, a fresh store each "
        "time (as the CLI does), so the statements are planned for their "
        "parameters.",
        "- Peak RSS: `resource.getrusage(RUSAGE_SELF).ru_maxrss` after the "
        "subject, the high-water mark reset to the current RSS just before it "
        "(`echo 5 > /proc/self/clear_refs`); the log was generated in a child "
        "process, so its memory is not in these figures. Process peak before any "
        f"measurement (imports, store): {_mib(results.startup_peak_rss)}.",
        "- CPU: client = this process, server = the PostgreSQL processes of the "
        "database, other = the rest of the machine's busy time (cores).",
        "",
        f"## Medians of {results.rounds} rounds",
        "",
        "| subject | rows | median s | median rows/s | compared with | time ratio (medians) | per-round time ratios | median client CPU s | median server CPU s | CPU ratio (client+server, medians) | max peak RSS |",
        "|---|---:|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for subject in SUBJECTS:
        runs = results.runs(subject)
        if not runs:
            lines.append(f"| {LABELS[subject]} | failed | | | | | | | | | |")
            continue
        other = COMPARED_WITH.get(subject)
        ratio = results.time_ratio(subject, other) if other else None
        per_round = (
            ", ".join(f"{r:.2f}" for r in results.round_time_ratios(subject, other))
            if other
            else "-"
        )
        lines.append(
            f"| {LABELS[subject]} | {runs[0].rows:,} | "
            f"{_fmt(results.median_seconds(subject), '.2f')} | "
            f"{_fmt(results.median_rate(subject), ',.0f')} | "
            f"{other or '-'} | {_fmt(ratio, '.2f')} | {per_round} | "
            f"{statistics.median(m.client_cpu for m in runs):.2f} | "
            f"{statistics.median(m.server_cpu for m in runs):.2f} | "
            f"{_fmt(results.cpu_ratio(subject, other) if other else None, '.2f')} | "
            f"{_mib(max(m.peak_rss for m in runs))} |"
        )
    verify_ratio = results.rate_ratio("verify_log", BASELINE)
    lines += [
        "",
        "In short:",
        "",
        f"- `verify_log`: {_fmt(results.median_rate('verify_log'), ',.0f')} events/s, "
        f"{_fmt(verify_ratio, '.3f')} of the plain sequential read's "
        f"{_fmt(results.median_rate(BASELINE), ',.0f')} events/s"
        + (f" ({1 / verify_ratio:.1f}x slower)" if verify_ratio else "")
        + f"; in CPU (client + server) it costs "
        f"{_fmt(results.cpu_ratio('verify_log', BASELINE), '.1f')}x the read"
        + f"; peak RSS during verify {', '.join(_mib(m.peak_rss) for m in results.runs('verify_log'))} "
        f"(RSS when it started: {', '.join(_mib(m.rss_before) for m in results.runs('verify_log'))}).",
    ]
    for moment in ("mid", "end"):
        ratio = results.time_ratio(f"as_of_{moment}", f"replay_read_{moment}")
        lines.append(
            f"- as-of at the {'middle' if moment == 'mid' else 'end'}: "
            f"{_fmt(results.median_seconds(f'as_of_{moment}'), '.2f')} s against "
            f"{_fmt(results.median_seconds(f'replay_read_{moment}'), '.2f')} s for "
            f"reading the {expected.rows_until[moment] if expected else 0:,} rows a "
            f"replay needs: ratio {_fmt(ratio, '.2f')}"
            + (f" ({1 / ratio:.1f}x faster)" if ratio and ratio < 1 else "")
            + (f" ({ratio:.1f}x slower)" if ratio and ratio >= 1 else "")
            + "; CPU ratio "
            + _fmt(results.cpu_ratio(f"as_of_{moment}", f"replay_read_{moment}"), ".2f")
            + "."
        )
    lines += [
        "",
        "## Rounds",
        "",
        "| round | 1-min load when quiet | waited s |",
        "|---:|---:|---:|",
        *(
            f"| {r} | {load:.2f} | {waited:.0f}"
            + (" (gave up: never quiet)" if waited >= LOAD_WAIT_MAX else "")
            + " |"
            for r, load, waited in results.round_loads
        ),
        "",
        "| round | # | subject | rows | s | rows/s | client CPU s | server CPU s | other cores | RSS before | peak RSS | check |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in sorted(results.measurements, key=lambda m: (m.round, m.sequence)):
        cores = m.other_cores
        lines.append(
            f"| {m.round} | {m.sequence} | {m.subject} | {m.rows:,} | {m.seconds:.2f} | "
            f"{m.rate:,.0f} | {m.client_cpu:.2f} | {m.server_cpu:.2f} | "
            f"{'-' if cores is None else f'{cores:.2f}'} | {_mib(m.rss_before)} | "
            f"{_mib(m.peak_rss)} | {m.problem or 'ok'} |"
        )
    lines += [
        "",
        "## Repeated as-of calls on one connection (diagnostic)",
        "",
        f"After the rounds, one store with `pool_size=1` ran `statuses_as_of` at the "
        f"middle {REPEATED_CALLS} times in a row (asyncpg keeps the prepared "
        "statement; from the sixth execution on PostgreSQL may use a generic plan, "
        "see the plans below): "
        + ", ".join(f"{seconds:.2f} s" for seconds in results.repeated)
        + ".",
        "",
        "## Plans of the as-of statement",
        "",
        "`EXPLAIN (ANALYZE, BUFFERS)` of `STATUS_EVENTS_SQL` "
        "(eventstore/backends/postgres.py) after the rounds, on a fresh connection, "
        f"with the moments above and position <= {MAX_POSITION} (no position bound):",
        "",
    ]
    for plan in results.plans:
        lines.append(
            f"- **{plan.label}**: `{INDEX_NAME}` "
            f"{'used' if plan.uses_index else '**not used**'}: {plan.summary}"
        )
    for plan in results.plans:
        lines += ["", f"{plan.label}:", "", "```", *plan.lines, "```"]
    if results.failures:
        lines += ["", "## Failures", "", *(f"- {f}" for f in results.failures)]
    return "\n".join(lines) + "\n"


# --- command line -----------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.audit",
        description="verify_log and the store-wide as-of on a large generated log, "
        "against plain asyncpg reads of the same rows; medians to bench/AUDIT_RESULTS.md.",
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="events in the log (1000000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (3)")
    parser.add_argument(
        "--max-load",
        type=float,
        default=MAX_LOAD,
        help="wait before a round until other work keeps fewer cores busy (0.3)",
    )
    parser.add_argument("--seed", type=int, default=11, help="of the generator (11)")
    parser.add_argument(
        "--dsn",
        default=os.environ.get("BENCH_PG_DSN", DEFAULT_ADMIN_DSN),
        help="PostgreSQL DSN of a database to CREATE DATABASE from ($BENCH_PG_DSN)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_PATH,
        help="where to write the report (bench/AUDIT_RESULTS.md)",
    )
    args = parser.parse_args(argv)
    if args.events < 1 or args.rounds < 1:
        parser.error("--events and --rounds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and write the report."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(arguments)
    server = Server(args.dsn)
    console = Console(stderr=True)
    results = Results(
        events=args.events,
        rounds=args.rounds,
        seed=args.seed,
        command=" ".join(["python -m bench.audit", *arguments]),
        environment=machine.collect(server),
        git_head=_git("rev-parse", "--short", "HEAD").strip() or "unknown",
        git_changes=len(_git("status", "--short").splitlines()),
        max_load=args.max_load,
        startup_peak_rss=_peak_rss(),
    )
    try:
        asyncio.run(run(results, server, console))
    except Exception as exc:
        results.failures.append(f"{type(exc).__name__}: {exc}")
        console.print(f"[red]{type(exc).__name__}: {exc}[/]")
    results.environment.finish()
    args.output.write_text(render(results), encoding="utf-8")
    console.print(f"wrote {args.output}")
    if results.failures:
        for failure in results.failures:
            console.print(f"[red]{failure}[/]")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
