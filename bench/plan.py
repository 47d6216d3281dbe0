"""What to measure: the subjects, the settings, and the interleaved order of a run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal

from bench import baselines, subjects
from bench.workload import Workload

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.databases import Guard, Server
    from bench.timing import Sample


@dataclass(frozen=True, slots=True)
class Subject:
    """Something that appends the workload and is timed.

    Attributes:
        key: a short name (CLI and tables).
        label: what it is, for the report.
        backend: the database it writes to.
        baseline: the key of the subject it is compared with; None for a baseline.
        target: the ratio to its baseline it should reach at the most writers.
        run: runs one measurement (setup, warm-up, timed section, teardown).
        empty_log: start from an empty log even when the run preloads history.
        guard_of: for a diagnostic run with less of the log's append guard
            (migrations 0006, 0008), the key of the fully guarded subject it
            is paired with in the report.
    """

    key: str
    label: str
    backend: Literal["postgresql", "sqlite"]
    baseline: str | None
    target: float | None
    run: Callable[[Server, Workload], Sample]
    empty_log: bool = False
    guard_of: str | None = None


def _store_append(
    backend: Literal["postgresql", "sqlite"], *, guard: Guard = "full"
) -> Callable[[Server, Workload], Sample]:
    return lambda server, workload: asyncio.run(
        subjects.store_append(backend, server, workload, guard=guard)
    )


def _lifecycle(
    backend: Literal["postgresql", "sqlite"], *, guard: Guard = "full"
) -> Callable[[Server, Workload], Sample]:
    return lambda server, workload: asyncio.run(
        subjects.lifecycle(backend, server, workload, guard=guard)
    )


SUBJECTS: Final = (
    Subject(
        "raw_asyncpg",
        "raw asyncpg: one INSERT per event into an equivalent table",
        "postgresql",
        None,
        None,
        lambda server, workload: asyncio.run(baselines.raw_asyncpg(server, workload)),
    ),
    Subject(
        "store_append",
        "eventstore `store.append`, one event per append",
        "postgresql",
        "raw_asyncpg",
        0.7,
        _store_append("postgresql"),
    ),
    Subject(
        "lifecycle",
        "eventstore `store.executions`: create, start, progress, complete",
        "postgresql",
        "raw_asyncpg",
        0.5,
        _lifecycle("postgresql"),
    ),
    Subject(
        "eventsourcing",
        "eventsourcing 9 `PostgresApplicationRecorder.insert_events`, one event per call",
        "postgresql",
        "raw_asyncpg",
        None,
        baselines.eventsourcing,
    ),
    Subject(
        "store_append_empty_log",
        "`store_append` on a brand-new, empty, never analyzed log",
        "postgresql",
        "raw_asyncpg",
        None,
        _store_append("postgresql"),
        empty_log=True,
    ),
    Subject(
        "lifecycle_empty_log",
        "`lifecycle` on a brand-new, empty, never analyzed log",
        "postgresql",
        "raw_asyncpg",
        None,
        _lifecycle("postgresql"),
        empty_log=True,
    ),
    Subject(
        "store_append_unguarded",
        "`store_append` with the log's append guard switched off (its cost)",
        "postgresql",
        "raw_asyncpg",
        None,
        _store_append("postgresql", guard="off"),
        guard_of="store_append",
    ),
    Subject(
        "lifecycle_unguarded",
        "`lifecycle` with the log's append guard switched off (its cost)",
        "postgresql",
        "raw_asyncpg",
        None,
        _lifecycle("postgresql", guard="off"),
        guard_of="lifecycle",
    ),
    Subject(
        "lifecycle_without_lifecycle_check",
        "`lifecycle` with the guard's lifecycle check skipped, its other checks kept",
        "postgresql",
        "raw_asyncpg",
        None,
        _lifecycle("postgresql", guard="without_lifecycle"),
        guard_of="lifecycle",
    ),
    Subject(
        "raw_aiosqlite",
        "raw aiosqlite: BEGIN IMMEDIATE; INSERT; COMMIT per event (WAL)",
        "sqlite",
        None,
        None,
        lambda server, workload: asyncio.run(baselines.raw_aiosqlite(server, workload)),
    ),
    Subject(
        "store_append_sqlite",
        "eventstore `store.append` on SQLite, one event per append",
        "sqlite",
        "raw_aiosqlite",
        None,
        _store_append("sqlite"),
    ),
    Subject(
        "lifecycle_sqlite",
        "eventstore `store.executions` on SQLite",
        "sqlite",
        "raw_aiosqlite",
        None,
        _lifecycle("sqlite"),
    ),
    Subject(
        "store_append_sqlite_unguarded",
        "`store_append_sqlite` with the log's guard triggers dropped (their cost)",
        "sqlite",
        "raw_aiosqlite",
        None,
        _store_append("sqlite", guard="off"),
        guard_of="store_append_sqlite",
    ),
    Subject(
        "lifecycle_sqlite_unguarded",
        "`lifecycle_sqlite` with the log's guard triggers dropped (their cost)",
        "sqlite",
        "raw_aiosqlite",
        None,
        _lifecycle("sqlite", guard="off"),
        guard_of="lifecycle_sqlite",
    ),
    Subject(
        "lifecycle_sqlite_without_lifecycle_check",
        "`lifecycle_sqlite` with the lifecycle guard trigger dropped, the others kept",
        "sqlite",
        "raw_aiosqlite",
        None,
        _lifecycle("sqlite", guard="without_lifecycle"),
        guard_of="lifecycle_sqlite",
    ),
)
BY_KEY: Final = {subject.key: subject for subject in SUBJECTS}
# The empty-log and unguarded variants are diagnostics, run on request (--subjects).
DEFAULT_SUBJECTS: Final = tuple(
    subject.key
    for subject in SUBJECTS
    if not subject.empty_log and subject.guard_of is None
)


@dataclass(frozen=True, slots=True)
class Config:
    """The settings of one benchmark run (see `python -m bench --help`)."""

    server: Server
    runs: int = 3
    writers: tuple[int, ...] = (8, 32)
    events: int = 12000
    sqlite_events: int = 3000
    events_per_writer: int | None = None
    history: int = 20000
    max_other_cores: float = 0.25
    retries: int = 2
    quiet_wait: float = 120.0
    subjects: tuple[str, ...] = DEFAULT_SUBJECTS
    warmup: bool = True
    profile: bool = True

    def workload(
        self, subject: Subject, writers: int, *, scale: float = 1.0
    ) -> Workload:
        """The workload of one measurement (`scale` < 1 for the warm-up round)."""
        if self.events_per_writer is not None:
            per_writer = self.events_per_writer
        else:
            total = (
                self.events if subject.backend == "postgresql" else self.sqlite_events
            )
            per_writer = max(total // writers, 1)
        history = (
            0 if subject.empty_log or subject.backend == "sqlite" else self.history
        )
        return Workload.sized(
            writers, events_per_writer=max(int(per_writer * scale), 1), history=history
        )

    def schedule(
        self, rounds: int | None = None
    ) -> list[tuple[int, int, Subject, int]]:
        """(round, sequence, subject, writers): all pairs once per round.

        Every round runs every (subject, writer count) pair once, so the
        subjects interleave (A B C D, A B C D ...); each round starts one
        pair later than the previous one, so no subject always runs first.
        """
        pairs = [
            (BY_KEY[key], writers) for writers in self.writers for key in self.subjects
        ]
        planned: list[tuple[int, int, Subject, int]] = []
        for number in range(1, (rounds or self.runs) + 1):
            shift = (number - 1) % len(pairs)
            ordered = pairs[shift:] + pairs[:shift]
            planned.extend(
                (number, sequence, subject, writers)
                for sequence, (subject, writers) in enumerate(ordered, 1)
            )
        return planned
